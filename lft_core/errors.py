"""The one exception users see. Anything a user can fix raises LftError; bugs stay ordinary exceptions."""


class LftError(Exception):
    """A problem the user can fix. The message says what we got, what we expected, and what to do."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (libraries raise multi-line walls of text), or its type."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit].rstrip() if text else type(exc).__name__


class StopRequested(Exception):
    """The user asked the run to stop (Stop button, SIGTERM, Ctrl-C); it ends at the next step or batch."""
