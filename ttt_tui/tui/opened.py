"""``ttt-tui open DIR``: the dashboard on a saved run, read from its run log; a run still being written is
followed live (the log is polled; new blocks reach the screen within a second), and the header says whether its
writer is alive, finished or gone. Only reads: nothing in the folder is written."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

from ..engine import EngineControl
from ..report import LOSSES_CSV, REPORT_JSON, REPORT_TXT
from ..runlog import RunLogReader, writer_alive
from ..settings import RunSettings
from ..windows import DEFAULT_WINDOW_S

POLL_S = 0.25


class LogFollower(EngineControl):
    """The engine's interface over a run log: a thread polls it into the store until the run ends (its end
    record) or its writer is gone. ``space`` pauses following."""

    def __init__(self, reader: RunLogReader, source, backend, store):
        super().__init__(source, backend, store)
        self.reader = reader
        self.damaged = reader.damaged  # the reader's own list: what it finds reaches the screen
        self._stop = threading.Event()
        self._go = threading.Event()
        self._go.set()

    def start(self) -> None:
        self.started_at = time.time()
        self.status.state = "running"
        threading.Thread(target=self._follow, name="ttt-tui-follow", daemon=True).start()

    def _paused(self, paused: bool) -> None:
        self._go.clear() if paused else self._go.set()

    def _request_stop(self) -> None:
        self._stop.set()
        self._go.set()

    def _follow(self) -> None:
        st = self.status
        try:
            while not self._stop.is_set():
                self._go.wait()
                self.reader.poll(self.store)
                status = self.reader.status()
                st.audio_s = float(status.get("audio_s", st.audio_s))
                st.compute_s = float(status.get("wall_s", 0.0)) or st.compute_s
                end = self.reader.end()
                if end is not None:
                    self.reader.poll(self.store)  # what came with the end
                    st.state, st.stop_reason, st.error = end["state"], end.get("stop_reason"), end.get("error")
                    st.audio_s = float(end.get("audio_s", st.audio_s))
                    return
                if not writer_alive(self.reader.header, status):
                    self.reader.poll(self.store)
                    st.state = "killed"
                    st.stop_reason = "the writer is gone without closing its log (killed? a lost node?)"
                    return
                self._stop.wait(POLL_S)
            st.state = "stopped"
        except Exception as e:  # a log that went bad under us: say so, keep what was read
            st.state, st.error = "error", f"{type(e).__name__}: {e}"
        finally:
            self.ended_at = time.time()
            self._done.set()


class OpenedRun:
    """What the dashboard asks of a session, for a run read from its log."""

    def __init__(self, folder: str | Path):
        self.reader = RunLogReader(folder)
        h = self.reader.header
        self.out_dir = self.reader.folder
        self.settings = RunSettings(
            mic=h.get("input") == "microphone",
            input=f"{h.get('input')} (opened)",
            window=float(h.get("window_s") or DEFAULT_WINDOW_S),
        )
        self.source = SimpleNamespace(duration_s=h.get("input_duration_s"), level_db=-120.0, dropped_blocks=0)
        details = h.get("model_details") or {}
        self.backend = SimpleNamespace(
            name=h.get("model", "?"),
            device=h.get("device", "?"),
            notes=lambda: list(h.get("notes") or []),
            audit=lambda: list(h.get("audit") or []),
            describe=lambda: details,
        )
        self.store = self.reader.new_store()
        self.engine = LogFollower(self.reader, self.source, self.backend, self.store)
        self.report_paths: dict | None = None
        self.read_only = True

    def write_report(self) -> dict:
        """Readers only read: the run's own report files, as its writer (or ``ttt-tui report``) left them."""
        names = (REPORT_TXT, REPORT_JSON, LOSSES_CSV)
        return {n: self.out_dir / n for n in names if (self.out_dir / n).exists()}

    def exit_code(self) -> int:
        return 0

    def _on_signal(self, signum, frame) -> None:
        self.engine.stop("signal")
