"""Following a run log while it is written: the one rule by which every reader (the dashboard of a run it
started, ``ttt-tui open`` of a run elsewhere) reads new blocks and tells that the run has ended: its end record,
or its writer gone (``runlog.writer_alive``: the pid on this host, the heartbeat from elsewhere)."""

from __future__ import annotations

import threading
import time

from ..record.runlog import RunLogReader, writer_alive
from ..record.store import LossStore
from .engine import EngineControl, EngineStatus

POLL_S = 0.25


class LogFollow:
    """One log into one store and one status: ``step`` reads what is new and returns True once the run ended."""

    def __init__(self, reader: RunLogReader, store: LossStore, status: EngineStatus):
        self.reader, self.store, self.status = reader, store, status
        self.ended = False
        self.last_status: dict = {}  # the log's status row, as the last step read it

    def step(self) -> bool:
        if self.ended:
            return True
        st = self.status
        with self.reader.snapshot():  # blocks and end of one moment: a run marked ended has every block
            self.reader.poll(self.store)
            status = self.last_status = self.reader.status()
            end = self.reader.end()
        if status:
            st.audio_s = max(st.audio_s, float(status.get("audio_s", 0.0)))
        if end is not None:
            st.state, st.audio_s = end.state, end.audio_s
            st.stop_reason = st.stop_reason or end.stop_reason
            st.error = st.error or end.error
            if end.compute_s:
                st.compute_s = end.compute_s
            self.ended = True
        elif not writer_alive(self.reader.header, status):
            self.reader.poll(self.store)  # what it committed before it went
            st.state = "killed"
            st.stop_reason = st.stop_reason or "the writer is gone without closing its log (killed? a lost node?)"
            self.ended = True
        return self.ended


class LogFollower(EngineControl):
    """The engine's interface over a run log someone else writes (``ttt-tui open``): a thread follows it into
    the store until the run ends. ``space`` pauses following."""

    shares_gil = False

    def __init__(self, reader: RunLogReader, store: LossStore):
        super().__init__(None, None, store)
        self.reader = reader
        self.damaged = reader.damaged  # the reader's own list: what it finds reaches the screen
        self.follow = LogFollow(reader, store, self.status)
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
                if self.follow.step():
                    return
                st.compute_s = float(self.follow.last_status.get("wall_s", 0.0)) or st.compute_s
                self._stop.wait(POLL_S)
            st.state = "stopped"
        except Exception as e:  # a log that went bad under us: say so, keep what was read
            st.state, st.error = "error", f"{type(e).__name__}: {e}"
        finally:
            self.ended_at = time.time()
            self._done.set()
