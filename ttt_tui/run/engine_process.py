"""The engine in a child process, for the dashboard.

The default model's inference is bound by Python-side op dispatch, so in one process it shares the GIL with
the Textual app: on 2 cores the UI cost a quarter of the inference speed (bench/RESULTS.md). In a child
process each has its own interpreter. The child builds the model and the source from the run's settings
(this process builds neither: a Moshi checkpoint loads once), writes the run log's header (``session.
describe_run``), runs the same ``Engine`` and writes the log. A receiver thread here follows that log into the
store the UI reads, by the rule ``ttt-tui open`` follows a run with (``follow.LogFollow``): the dashboard shows
what the log holds. A queue carries only what is not data: the child's status (state, audio seconds,
microphone level) and, should the log fail mid-run (a full disk), the blocks from then on, so that the
dashboard and its report still get everything. Same interface as ``Engine``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from dataclasses import asdict

from .engine import EngineControl

STATUS_EVERY_S = 0.1
POLL_S = 0.1  # how often the parent reads the log: new blocks reach the screen within this


class _NoStore:
    """The child keeps nothing in memory: the log is its record (and the parent's)."""

    def extend(self, blocks: dict) -> None:
        pass

    def extend_signals(self, blocks: dict) -> None:
        pass

    def extend_outer(self, block) -> None:
        pass


class _LogOrQueue:
    """The child's log writer: blocks go into the run log; if the log cannot be written (no log asked for, a
    full disk), they go over the queue instead, from that block on, and ``error`` says why."""

    def __init__(self, log, q):
        self.log, self.q = log, q
        self.error: str | None = None

    def _put(self, kind: str, write, blocks: dict) -> None:
        if self.log is not None:
            try:
                write(blocks)
                return
            except Exception as e:
                self.error = f"the run log stopped: {type(e).__name__}: {e}; the dashboard's report has everything"
                self.log = None
        if blocks is not None and len(blocks):
            self.q.put((kind, blocks))

    def extend(self, blocks: dict) -> None:
        self._put("losses", self.log and self.log.extend, blocks)

    def extend_signals(self, blocks: dict) -> None:
        self._put("signals", self.log and self.log.extend_signals, blocks)

    def extend_outer(self, block) -> None:
        self._put("outer", self.log and self.log.extend_outer, block)

    def status(self, state: str, audio_s: float) -> None:
        if self.log is not None:
            try:
                self.log.status(state, audio_s)
            except Exception:
                pass  # the next block's write says it, if the log is gone

    def close(self, end: dict) -> None:
        if self.log is not None:
            self.log.close(end)


def _child_main(settings: dict, started: str, q, pause_ev, stop_ev, parent_pid: int) -> None:
    # The parent owns the terminal and the signals (ctrl+c, SIGHUP, SIGTERM reach the whole process group):
    # it stops us through stop_ev, after it has what we sent.
    for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            signal.signal(sig, signal.SIG_IGN)
    import traceback
    from datetime import datetime

    from ..errors import InputError
    from ..record.runlog import RunLogWriter
    from .engine import Engine
    from .factory import make_backend, make_source
    from .session import describe_run
    from .settings import RunSettings

    try:
        settings = RunSettings(**settings)
        backend = make_backend(settings)
        source = make_source(settings, backend)
        header = describe_run(settings, backend, source, datetime.fromisoformat(started))
        log = _LogOrQueue(RunLogWriter(settings.out, header), q)  # the inference process writes the run log
    except InputError as e:  # bad input, a model that does not load: one line, exit 2
        from ..errors import MISSING_HINT, MissingInput

        hint = MISSING_HINT if isinstance(e, MissingInput) else ""
        q.put(("failed", {"error": f"{e}{hint}", "detail": None}))
        _leave(q)
    except Exception as e:
        q.put(("failed", {"error": f"{type(e).__name__}: {e}", "detail": traceback.format_exc()}))
        _leave(q)
    q.put(("log", True))  # the parent may open the log now
    eng = Engine(source, backend, _NoStore(), out_dir=settings.out, log=log)
    eng.start()
    paused = False
    while not eng.wait(STATUS_EVERY_S):
        if stop_ev.is_set():  # the parent says why, in its own report; the log says stopped
            eng.stop("stopped")
        elif os.getppid() != parent_pid:  # the dashboard is gone: the log is all that is left of the run
            eng.stop("the dashboard's process ended (killed?): its inference process stopped")
        if pause_ev.is_set() != paused:
            paused = pause_ev.is_set()
            eng.pause() if paused else eng.resume()
        q.put(("status", _status(eng, log)))
    q.put(("status", _status(eng, log)))
    _leave(q)


def _leave(q) -> None:
    """Say done, flush the queue, and exit without interpreter teardown: nothing here needs cleaning up,
    and torch's thread pools aborted the child at teardown now and then ("terminate called without an
    active exception", 3 runs in 8)."""
    q.put(("done", None))
    q.close()
    q.join_thread()
    os._exit(0)


def _status(eng, log: _LogOrQueue) -> dict:
    st = asdict(eng.status)
    st["log_error"] = log.error or eng.log_error
    st["live"] = eng.live()  # the microphone's level, dropped blocks: what the source says while it reads
    return st


class ProcessEngine(EngineControl):
    """``Engine``'s interface, with the model and the source in a spawned child process. ``start`` spawns it;
    ``wait_ready`` waits until it has made the run log (its model loaded), or failed (``failure``); then
    ``header`` and ``store`` are the log's."""

    shares_gil = False

    def __init__(self, settings, started: str):
        super().__init__(None, None, None)
        self.settings = settings  # a RunSettings: the child builds its backend and source from it
        self.started = started
        self.header = None  # the run log's ``RunHeader``, once the child made the log
        self.failure: dict | None = None  # the child could not start: {"error", "detail" (None: bad input)}
        self._ready = threading.Event()
        self._live: dict = {}
        self._ctx = mp.get_context("spawn")  # no fork of a process that holds OpenMP and Textual threads
        self._q = self._ctx.Queue()
        self._pause = self._ctx.Event()
        self._stop = self._ctx.Event()
        self._proc = None
        self.log_error: str | None = None
        self._reader = None  # the run log's reader, once the child has made the log
        self._follow = None

    def start(self) -> None:
        self.started_at = time.time()
        self.status.state = "starting"
        self._proc = self._ctx.Process(
            target=_child_main,
            args=(self.settings.to_dict(), self.started, self._q, self._pause, self._stop, os.getpid()),
            name="ttt-tui-inference",
            daemon=True,
        )
        self._proc.start()
        threading.Thread(target=self._receive, name="ttt-tui-receiver", daemon=True).start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """True once the log is open here (header and store set), or the run ended before (``failure``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._ready.is_set() and not self._done.is_set():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            self._ready.wait(0.05 if left is None else min(0.05, left))
        return True

    def live(self) -> dict:
        return dict(self._live)

    def _paused(self, paused: bool) -> None:
        if self._pause is not None:  # None: closed, the run is over
            self._pause.set() if paused else self._pause.clear()

    def _request_stop(self) -> None:
        if self._stop is not None:
            self._stop.set()
            self._pause.clear()

    def abandon(self) -> None:
        """The child is still loading its model and cannot stop: end it (nothing of the run is lost)."""
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()

    def close(self) -> None:
        """Drop the queue and events once the child and the receiver are done: their named semaphores are
        unlinked as they are collected. The console script leaves with ``os._exit``, which skips
        multiprocessing's own clean-up, and its resource tracker then warned of 13 leaked semaphores on every
        dashboard quit."""
        if not self._done.is_set() or (self._proc is not None and self._proc.is_alive()):
            return  # still in use: leave them to the interpreter
        self._q.close()
        self._q.join_thread()
        self._q = self._pause = self._stop = None

    def wait(self, timeout: float | None = None) -> bool:
        ok = super().wait(timeout)
        if ok and self._proc is not None:
            self._proc.join(timeout=2)
        return ok

    def _open_log(self) -> None:
        from ..record.runlog import RunLogReader
        from .follow import LogFollow

        self._reader = RunLogReader(self.settings.out)
        self.header = self._reader.header
        self.store = self._reader.new_store()
        self.damaged = self._reader.damaged
        self._follow = LogFollow(self._reader, self.store, self.status)

    def _read_log(self) -> bool:
        """The blocks the child committed since the last read; True once the log says the run ended."""
        if self._follow is None:
            return False
        try:
            return self._follow.step()
        except Exception as e:  # the log went bad under us: keep what was read, say so
            self.log_error = f"the run log could not be read: {e}"
            self._follow = None
            return False

    def _receive(self) -> None:
        st = self.status
        read_at, gone_at = 0.0, None
        try:
            while True:
                if time.monotonic() - read_at >= POLL_S:
                    read_at = time.monotonic()
                    if self._read_log() and self._follow.ended and st.state != "killed":
                        return  # its end record: the log is the record
                try:
                    kind, payload = self._q.get(timeout=POLL_S)
                except queue.Empty:
                    if self._proc is not None and not self._proc.is_alive():
                        gone_at = gone_at or time.monotonic()
                        # what it sent last may still be on its way (not after a stop: abandon() killed it)
                        if not self._stop.is_set() and time.monotonic() - gone_at < 1.0:
                            continue
                        if self._read_log() and st.state != "killed":  # its log says how the run ended
                            return
                        if self._stop.is_set() and st.state not in ("finished", "error"):
                            st.state = "stopped"  # stopped while loading, and ended by abandon()
                        elif st.state not in ("finished", "stopped", "error"):
                            st.state, st.error = "error", f"inference process died (exit code {self._proc.exitcode})"
                            st.error_detail = st.error
                        return
                    continue
                if kind == "log":
                    try:
                        self._open_log()
                    except Exception as e:
                        st.state, st.error = "error", f"the run log could not be read: {e}"
                        self.failure = {"error": st.error, "detail": st.error}
                        self._request_stop()
                        return
                    self._ready.set()
                elif kind == "failed":
                    self.failure = payload
                    st.state, st.error, st.error_detail = "error", payload["error"], payload["detail"]
                    return
                elif kind in ("losses", "signals", "outer"):  # the log could not take them
                    self._read_log()  # first what the log has, so that the rows stay in order
                    if self.store is not None:
                        if kind == "losses":
                            self.store.extend(payload)
                        elif kind == "signals":
                            self.store.extend_signals(payload)
                        else:
                            self.store.extend_outer(payload)
                elif kind == "status":
                    self._live = payload.pop("live", None) or self._live
                    self.log_error = payload.pop("log_error", None) or self.log_error
                    reason = st.stop_reason
                    ended = self._follow is not None and self._follow.ended
                    for k, v in payload.items():
                        if not (ended and k in ("state", "audio_s")):  # the end record has the last word
                            setattr(st, k, v)
                    if reason is not None:  # the parent knows why it stopped the child
                        st.stop_reason = reason
                    if self._pause.is_set() and st.state == "running":
                        st.state = "paused"
                elif kind == "done":
                    self._read_log()  # the last blocks, committed before the child said done
                    return
        finally:
            if self._reader is not None:
                self._reader.close()
                if self._proc is not None:
                    self._proc.join(2.0)  # it said done and leaves at once (os._exit)
                if self._proc is not None and not self._proc.is_alive():  # the writer is gone too
                    from ..record.runlog import settle

                    settle(self.settings.out)  # no -wal/-shm left in the folder
            self.ended_at = time.time()
            self._done.set()
