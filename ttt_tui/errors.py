"""Errors that reach the user as one line and an exit code (documented in the README)."""

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2


class InputError(Exception):
    """Bad usage or bad input: the message says what is wrong and what to do. Exit code 2."""
