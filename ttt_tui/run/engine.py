"""The streaming engine: one background thread runs source -> model -> store.

Readers (the TUI, the headless progress line, the report) only read the store and the engine's status; the
thread never waits for them. Pause, resume and stop are events the loop checks between blocks (a thread
cannot be killed). An exception in the model ends the run with an error event; what was stored stays.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass

from ..backends.base import Backend
from ..errors import InputError
from ..record.schema import RunEnd, source_counters
from ..record.store import LossStore


@dataclass
class EngineStatus:
    state: str = "ready"
    audio_s: float = 0.0  # audio processed so far
    compute_s: float = 0.0  # time spent in the model (excludes pauses)
    error: str | None = None
    error_detail: str | None = None
    stop_reason: str | None = None

    @property
    def realtime_factor(self) -> float:
        return self.audio_s / self.compute_s if self.compute_s > 0 else 0.0


class EngineControl:
    """What the UI and the session use of an engine, whatever runs the model (this thread class, or the
    child process of ``engine_process``): status, pause/resume/stop, wait. Subclasses set ``_paused(bool)``
    and ``_request_stop()``, and set ``_done`` when the run has ended."""

    def __init__(self, source, backend: Backend | None, store: LossStore | None = None):
        """``source``, ``backend``: the run's parts where this process runs the model (None where another
        process does: the store then comes from the run log)."""
        self.source = source
        self.backend = backend
        if store is None and backend is not None:
            store = LossStore(
                backend.layer_ids, backend.frame_rate, signal_names=backend.signal_names, outer=backend.outer_loss
            )
        self.store = store
        self.status = EngineStatus()
        self.damaged: list[dict] = []  # blocks of the run log a reader could not use (``runlog``), named
        self._done = threading.Event()
        self.started_at: float | None = None
        self.ended_at: float | None = None

    def _paused(self, paused: bool) -> None:
        raise NotImplementedError

    def _request_stop(self) -> None:
        raise NotImplementedError

    def pause(self) -> None:
        if self.status.state == "running":
            self._paused(True)
            self.status.state = "paused"

    def resume(self) -> None:
        if self.status.state == "paused":
            self.status.state = "running"
            self._paused(False)

    def toggle_pause(self) -> None:
        self.pause() if self.status.state == "running" else self.resume()

    def stop(self, reason: str = "stopped") -> None:
        if self.status.stop_reason is None and not self._done.is_set():
            self.status.stop_reason = reason
        self._request_stop()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def stop_and_wait(self, reason: str, loading_s: float = 1.0, running_s: float = 10.0) -> bool:
        """Stop, and wait for the run to end: up to ``running_s`` while blocks are being processed (the current
        one ends and is kept), only ``loading_s`` while the model is still loading (loading cannot be
        interrupted; nothing is lost by leaving it: ``abandon``). True if the run ended."""
        self.stop(reason)
        if self.wait(loading_s if self.status.audio_s == 0 else running_s):
            return True
        if self.status.audio_s == 0:
            self.abandon()
        return self.done

    def abandon(self) -> None:
        """Leave a run that cannot stop (a thread cannot be killed; the process engine kills its child)."""
        return None

    def close(self) -> None:
        """Release what the engine holds beyond the run (the process engine's semaphores), once it has ended."""
        return None

    def live(self) -> dict:
        """What the source says while it reads (the microphone's level, dropped blocks), for the screen."""
        src = self.source
        if src is None:
            return {}
        return {
            k: getattr(src, k)
            for k in ("level_db", "dropped_blocks", "peak_level_db")
            if getattr(src, k, None) is not None
        }

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def end_record(self, source: dict, unfinished: str = "stopped") -> RunEnd:
        """The run log's end record from this engine's status; ``source``: what the source counted
        (``record.schema.source_counters``); ``unfinished``: the state said for a run that has not ended."""
        st = self.status
        return RunEnd(
            state=st.state if st.state in ("finished", "stopped", "error") else unfinished,
            stop_reason=st.stop_reason,
            error=st.error,
            audio_s=st.audio_s,
            wall_s=round(self.wall_s, 3),
            compute_s=round(st.compute_s, 3),
            realtime_factor=round(st.realtime_factor, 2),
            source=source,
            log_error=getattr(self, "log_error", None),
        )

    @property
    def wall_s(self) -> float:
        if self.started_at is None:
            return 0.0
        return (self.ended_at or time.time()) - self.started_at


class Engine(EngineControl):
    """``out_dir``: where the backend writes what it produced (``Backend.write_outputs``) when the run ends,
    however it ends. ``log``: the run log (``runlog.RunLogWriter``), appended block by block beside the store,
    closed with how the run ended."""

    shares_gil = True  # its thread runs the model in this process: a UI here paces its redraws

    def __init__(self, source, backend: Backend, store: LossStore | None = None, out_dir=None, log=None):
        super().__init__(source, backend, store)
        self.out_dir = out_dir
        self.log = log
        self.log_error: str | None = None
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.started_at = time.time()
        self.status.state = "running"
        self._thread = threading.Thread(target=self._run, name="ttt-tui-engine", daemon=True)
        self._thread.start()

    def _paused(self, paused: bool) -> None:
        self._running.clear() if paused else self._running.set()

    def _request_stop(self) -> None:
        self._stop.set()
        self._running.set()
        close = getattr(self.source, "close", None)  # a microphone waiting for its next block
        if close is not None:
            close()

    def _take(self):
        """What the backend recorded since the last call, into the store: (losses, signals, outer loss)."""
        blocks, signals, outer = self.backend.take_losses(), self.backend.take_signals(), self.backend.take_outer()
        self.store.extend(blocks)
        self.store.extend_signals(signals)
        self.store.extend_outer(outer)
        return blocks, signals, outer

    def _log_block(self, blocks, signals, outer, st) -> None:
        """Into the run log; a log that cannot be written (a full disk) stops logging, not the run: the store
        and the final report still have everything."""
        try:
            self.log.extend(blocks)
            self.log.extend_signals(signals)
            if outer is not None:
                self.log.extend_outer(outer)
            self.log.status(st.state, st.audio_s)
        except Exception as e:
            self.log_error = f"the run log stopped at {st.audio_s:.1f} s: {type(e).__name__}: {e}"
            self.log = None

    # -- the loop ------------------------------------------------------------------------------------------
    def _run(self) -> None:
        st = self.status
        rate = self.backend.sample_rate
        try:
            self.backend.prepare_thread()
            self.backend.reset()
            for samples in self.source.blocks():
                while not self._running.is_set() and not self._stop.is_set():
                    self._running.wait(0.1)
                if self._stop.is_set():
                    break
                t0 = time.perf_counter()
                self.backend.process(samples)
                blocks, signals, outer = self._take()
                st.compute_s += time.perf_counter() - t0
                st.audio_s += len(samples) / rate
                if self.log is not None:  # committed block by block: a killed run keeps all but the last
                    self._log_block(blocks, signals, outer, st)
            st.state = "stopped" if self._stop.is_set() else "finished"
        except InputError as e:  # the audio went bad mid-stream (damaged file, device lost)
            st.state, st.error = "error", str(e)
        except Exception as e:  # an exception in the model: report it and keep what was seen
            st.state, st.error = "error", f"{type(e).__name__}: {e}"
            st.error_detail = traceback.format_exc()
        finally:
            try:  # what the last block left on the device
                blocks, signals, outer = self._take()
                if self.log is not None:
                    self._log_block(blocks, signals, outer, st)
            except Exception:
                pass
            if self.out_dir is not None:
                try:
                    self.backend.write_outputs(self.out_dir)
                except Exception as e:  # the report still gets written
                    st.error = st.error or f"could not write the model's outputs: {type(e).__name__}: {e}"
            self.ended_at = time.time()
            if self.log is not None:
                try:
                    self.log.close(self.end_record(source_counters(self.source)))
                except Exception as e:  # the report is still written from the store
                    st.error = st.error or f"could not close the run log: {type(e).__name__}: {e}"
            self._done.set()
