"""The one exception users see. Anything a user can fix raises LftError; bugs stay ordinary exceptions."""


class LftError(Exception):
    """A problem the user can fix. The message says what we got, what we expected, and what to do."""
