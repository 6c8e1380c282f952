"""The dashboard's run: the model and the source live in a child process (``engine_process``), which writes the
run log; this process builds neither, and reads everything it shows and reports from that log."""

from __future__ import annotations

import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from ..errors import InputError
from ..record.files import prepare_out_dir
from ..record.runlog import LoggedRun, read_run
from ..report import default_out_dir
from .engine_process import ProcessEngine
from .session import RunBase
from .settings import RunSettings


class ChildFailed(RuntimeError):
    """The inference process failed before its first block for another reason than bad input."""


class LiveRun(RunBase):
    """``start`` spawns the inference process and waits until it has made the run log (its model loaded):
    then ``header`` (the log's ``RunHeader``) and ``store`` are set, and the dashboard can draw."""

    read_only = False

    def __init__(self, settings: RunSettings):
        self.started = datetime.now()
        name = "microphone" if settings.mic else settings.input
        self.out_dir = Path(settings.out) if settings.out else default_out_dir(name)
        self._lock = prepare_out_dir(self.out_dir, force=settings.force)  # held for the run
        self.settings = replace(settings, out=str(self.out_dir))
        self.engine = ProcessEngine(self.settings, self.started.isoformat(timespec="seconds"))
        self.header = None
        self.store = None
        self.signal_received: int | None = None
        self.report_paths: dict | None = None

    def start(self, waiting=None) -> None:
        """Start the inference process; return once its log is open here. ``waiting(seconds)`` is called about
        every second meanwhile (a line on the terminal while a large model loads). Bad input or a model that
        cannot load: ``InputError`` (one line, exit 2); anything else: ``ChildFailed``. Either way nothing is
        left in the folder and its lock is released."""
        self.engine.start()
        t0 = datetime.now()
        while not self.engine.wait_ready(1.0):
            if waiting is not None:
                waiting((datetime.now() - t0).total_seconds())
        if self.engine.failure is not None or self.engine.store is None:
            failure = self.engine.failure or {"error": self.engine.status.error or "the inference process ended"}
            self.engine.wait(5)
            self.release()
            if failure.get("detail") is None:
                raise InputError(failure["error"])
            raise ChildFailed(failure["error"])
        self.header, self.store = self.engine.header, self.engine.store

    def release(self) -> None:
        """The report folder's lock, held since the start: released when the run's report is written."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        self.engine.close()

    def logged_run(self) -> LoggedRun:
        """The run's record: its log, read back once the child has ended; while it runs (an `r` press), or if
        the log could not be kept whole, what this process followed of it, with the status as its end."""
        st = self.engine.status
        logged = None
        if self.engine.done and not self.engine.log_error:
            try:
                logged = read_run(self.out_dir)
            except InputError as e:
                print(f"ttt-tui: {e}; the report is written from what the dashboard read", file=sys.stderr)
        if logged is not None and logged.end is not None:
            reason = st.stop_reason
            if reason and logged.end.state == "stopped":  # the child stopped because we said so: we know why
                logged.end = replace(logged.end, stop_reason=reason)
            return logged
        dropped = {k: v for k, v in self.engine.live().items() if k == "dropped_blocks"}
        end = self.engine.end_record(dropped, unfinished="running")
        if logged is not None:  # ended without its end record (stopped while loading: ended by ``abandon``)
            logged.end = end
            return logged
        return LoggedRun(self.out_dir, self.header, self.store, end, damaged=list(self.engine.damaged))
