"""The one exception users see. Anything a user can fix raises LftError; bugs stay ordinary exceptions."""


class LftError(Exception):
    """A problem the user can fix. The message says what we got, what we expected, and what to do."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message as one line, or its type. Libraries raise multi-line walls of text, and some wrap
    one sentence over lines (peft does): the first paragraph is joined into one line, then cut at the last
    sentence's end within `limit` characters, never mid-word without saying so."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    paragraph = []
    for line in text.splitlines():
        if not line.strip():
            break
        paragraph.append(line.strip())
    joined = " ".join(paragraph)
    if len(joined) <= limit:
        return joined
    cut = joined[:limit]
    end = max(cut.rfind(". "), cut.rfind("; "))
    return cut[:end + 1] if end > limit // 3 else cut.rsplit(" ", 1)[0] + " …"


class StopRequested(Exception):
    """The user asked the run to stop (Stop button, SIGTERM, Ctrl-C); it ends at the next step or batch."""
