"""``ttt-tui open DIR``: the dashboard on a saved run, read from its run log; a run still being written is
followed live (``follow.LogFollower``: new blocks reach the screen within a second), and the header says
whether its writer is alive, finished or gone. Only reads: nothing in the folder is written."""

from __future__ import annotations

from pathlib import Path

from ..analysis.windows import DEFAULT_WINDOW_S
from ..record.runlog import RunLogReader
from ..report import LOSSES_CSV, REPORT_JSON, REPORT_TXT
from ..run.follow import LogFollower
from ..run.settings import RunSettings


class OpenedRun:
    """What the dashboard asks of a run, for a run read from its log."""

    read_only = True

    def __init__(self, folder: str | Path):
        self.reader = RunLogReader(folder)
        self.header = h = self.reader.header
        self.out_dir = self.reader.folder
        self.settings = RunSettings(
            mic=h.fields.get("input") == "microphone",
            input=f"{h.fields.get('input')} (opened)",
            window=h.window_s or DEFAULT_WINDOW_S,
        )
        self.store = self.reader.new_store()
        self.engine = LogFollower(self.reader, self.store)
        self.report_paths: dict | None = None

    def write_report(self) -> dict:
        """Readers only read: the run's own report files, as its writer (or ``ttt-tui report``) left them."""
        names = (REPORT_TXT, REPORT_JSON, LOSSES_CSV)
        return {n: self.out_dir / n for n in names if (self.out_dir / n).exists()}

    def exit_code(self) -> int:
        return 0

    def _on_signal(self, signum, frame) -> None:
        self.engine.stop("signal")
