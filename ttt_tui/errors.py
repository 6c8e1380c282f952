"""Errors that reach the user as one line and an exit code (documented in the README)."""

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_SOME_FAILED = 3  # ttt-tui eval: some files of the data set failed; the rest is evaluated


class InputError(Exception):
    """Bad usage or bad input: the message says what is wrong and what to do. Exit code 2."""


class MissingInput(InputError):
    """The audio file does not exist. A single run adds what to give instead (``MISSING_HINT``); a data set
    lists it as failed."""


MISSING_HINT = " (give the path of an audio file, --sample or --mic)"
