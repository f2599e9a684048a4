"""Errors in what a user gave (a file, a folder, an argument). The `descore` command prints any
`DeScoreInputError` as one line naming the file (and row) and exits with status 2."""


class DeScoreInputError(ValueError):
    """A bad input file, folder or argument; the message names it and says what was expected."""


class CheckpointError(DeScoreInputError):
    """A DeScore checkpoint that cannot be read: its file, and what is wrong with it."""


class OutputFolderError(DeScoreInputError):
    """An output folder that holds files this library did not write, or that it cannot read back."""


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first line of `error`'s message (at most `limit` characters), or its type's name when it has
    none: what a one-line error can quote of a library's multi-line message."""
    lines = str(error).strip().splitlines()
    return lines[0][:limit] if lines else type(error).__name__


class ServerError(RuntimeError):
    """A DeScore server that cannot be reached or that failed (not a problem with what was sent): its URL,
    and what happened after the bounded retries."""
