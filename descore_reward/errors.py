"""Errors in what a user gave (a file, a folder, an argument). The `descore` command prints any
`DeScoreInputError` as one line naming the file (and row) and exits with status 2."""


class DeScoreInputError(ValueError):
    """A bad input file, folder or argument; the message names it and says what was expected."""


class CheckpointError(DeScoreInputError):
    """A DeScore checkpoint that cannot be read: its file, and what is wrong with it."""


class OutputFolderError(DeScoreInputError):
    """An output folder that holds files this library did not write, or that it cannot read back."""
