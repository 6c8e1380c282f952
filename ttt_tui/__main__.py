"""``python -m ttt_tui``: the same as the ``ttt-tui`` command."""

from .cli import console

console()
