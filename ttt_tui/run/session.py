"""A run in this process (headless, and each file of ``eval``): build source, backend, store and engine from
the run's settings, write the run log as it goes, and write the report from that log (with what was seen, also
after an interruption or an error). The dashboard's run is ``live.LiveRun``: its model runs in a child process
that does what this module does."""

from __future__ import annotations

import platform
import signal
import sys
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from .. import __version__
from ..errors import EXIT_INTERNAL, EXIT_OK, EXIT_USAGE
from ..record.files import prepare_out_dir
from ..record.runlog import LoggedRun, read_run
from ..record.schema import RunHeader, source_counters
from ..report import default_out_dir, write_run_report
from .engine import Engine
from .factory import make_backend, make_source
from .settings import RunSettings

SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
if hasattr(signal, "SIGHUP"):
    SIGNAL_EXIT[signal.SIGHUP] = 129


class RunBase:
    """What a run offers its front end, whichever process runs its model: signals, the report (written from
    ``logged_run``), the exit code. Subclasses set ``engine``, ``out_dir`` and ``settings``."""

    signal_received: int | None = None
    report_paths: dict | None = None

    def _on_signal(self, signum, frame) -> None:
        if self.signal_received is None:
            self.signal_received = signum
        self.engine.stop(signal.Signals(signum).name)

    def logged_run(self) -> LoggedRun:
        raise NotImplementedError

    def write_report(self) -> dict:
        self.report_paths = write_run_report(
            self.logged_run(), self.out_dir, plots=not self.settings.no_plots, tensorboard=self.settings.tensorboard
        )
        return self.report_paths

    def exit_code(self) -> int:
        return exit_code(self.engine.status, self.signal_received)


class Session(RunBase):
    def __init__(self, settings, backend=None):
        """``settings``: a ``RunSettings`` (or the command line's namespace, turned into one); ``backend``: a
        model already built (a data set's files share one); by default built from the settings."""
        if not isinstance(settings, RunSettings):
            settings = RunSettings.from_args(settings)
        self.backend = backend if backend is not None else make_backend(settings)
        self.source = make_source(settings, self.backend)
        self.started = datetime.now()
        name = "microphone" if settings.mic else settings.input
        self.out_dir = Path(settings.out) if settings.out else default_out_dir(name)
        self._lock = prepare_out_dir(self.out_dir, force=settings.force)  # held for the run
        # the engine writes the model's outputs and the run log there
        self.settings = replace(settings, out=str(self.out_dir))
        self.engine = Engine(self.source, self.backend, out_dir=self.out_dir)
        self.store = self.engine.store
        self.signal_received: int | None = None
        self.report_paths: dict | None = None
        self.progress_windows: dict = {}  # per layer, the headless progress line's LayerWindows
        self._header: dict | None = None

    def release(self) -> None:
        """The report folder's lock, held since the start: released when the run's report is written."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        self.engine.close()

    def log_header(self) -> dict:
        """What the run log says of the run before its first block (``record.RunHeader``); described once."""
        if self._header is None:
            self._header = describe_run(self.settings, self.backend, self.source, self.started)
        return self._header

    @property
    def header(self) -> RunHeader:
        return RunHeader.from_dict(self.log_header())

    def open_log(self) -> None:
        """The run log, written by this process's engine (headless)."""
        from ..record.runlog import RunLogWriter

        self.engine.log = RunLogWriter(self.out_dir, self.log_header())

    # -- signals: the report is written first, then the documented exit code ------------------------------
    def install_signal_handlers(self) -> None:
        for sig in SIGNAL_EXIT:
            signal.signal(sig, self._on_signal)

    def logged_run(self) -> LoggedRun:
        """The run's record, as every report is written from it: its log, once the engine has closed it; the
        store in memory with the engine's status if the log could not be kept whole (a full disk mid-run) or the
        engine has not ended (a model still loading when a signal came)."""
        log_whole = self.engine.done and getattr(self.engine, "log", None) is not None and not self.engine.log_error
        if log_whole:
            return read_run(self.out_dir)
        end = self.engine.end_record(source_counters(self.source))
        return LoggedRun(self.out_dir, self.header, self.store, end)


def exit_code(st, signal_received: int | None) -> int:
    """The signal's code if a signal cut the run short; a signal after the audio's end changed nothing of the
    report (``interrupted`` false), so the run's own code stands, as the report says."""
    if signal_received is not None and st.state != "finished":
        return SIGNAL_EXIT[signal_received]
    if st.state == "error":
        return EXIT_USAGE if st.error_detail is None else EXIT_INTERNAL
    return EXIT_OK


def describe_run(settings: RunSettings, backend, source, started: datetime) -> dict:
    """The run log's header (``record.RunHeader``; the report's run block): what runs, on what, what a position
    is; written by the process that runs the model, before the first block. How the run ended comes with the
    end record (``record.RunEnd``)."""
    import numpy
    import torch

    details = backend.describe()
    return {
        "input": "microphone" if settings.mic else str(settings.input),
        **{k: v for k, v in source.describe().items() if k not in ("input", "duration_s")},
        "input_duration_s": getattr(source, "duration_s", None),
        "duration_s": 0.0,
        "sample_rate": backend.sample_rate,
        "frame_rate": backend.frame_rate,
        "position_unit": "audio frame",
        "layer_ids": list(backend.layer_ids),
        "signal_names": list(backend.signal_names),
        "signal_labels": dict(getattr(backend, "signal_labels", {})),
        "outer_loss": bool(backend.outer_loss),
        "model": backend.name,
        "checkpoint": settings.checkpoint or None,
        "device": backend.device,
        "lr_scale": getattr(backend, "lr_scale", None),
        "mini_batch_size": getattr(backend, "mini_batch_size", None),
        "versions": {
            "ttt_tui": __version__,
            "torch": torch.__version__,
            "numpy": numpy.__version__,
            "python": platform.python_version(),
        },
        "started": started.isoformat(timespec="seconds"),
        "window_s": settings.window,
        "wall_s": 0.0,
        "realtime_factor": 0.0,
        "state": "running",
        "interrupted": False,
        "stop_reason": None,
        "error": None,
        "notes": backend.notes(),
        "audit": backend.audit(),
        "decoding": details.get("decoding"),
        "model_details": details,
    }


def speed_words(realtime_factor: float, paced: bool) -> str:
    """How fast the run goes: a paced run (``--realtime``, the microphone) is fed at 1x whatever the model
    could do, so pacing and compute speed are said apart."""
    compute = f"{realtime_factor:.1f}x real time"
    return f"live, compute {compute}" if paced else compute


def progress_line(session: Session) -> str:
    st = session.engine.status
    total = getattr(session.source, "duration_s", None)
    done = f"{st.audio_s:7.1f}" + (f"/{total:.1f} s ({100 * st.audio_s / total:3.0f}%)" if total else " s")
    paced = session.settings.realtime or session.settings.mic
    parts = [f"[{st.state}] {done} {speed_words(st.realtime_factor, paced)}"]
    from ..analysis.diagnosis import diagnose
    from ..analysis.headline import headline
    from ..analysis.windows import DEFAULT_WINDOW_S, LayerWindows

    store = session.store
    for layer_id in store.layer_ids:
        s = store.summary(layer_id)
        verdict, fs = diagnose(s)
        lw = session.progress_windows.get(layer_id)
        if lw is None:  # kept across lines: each line adds only the windows completed since the last
            lw = LayerWindows(store.frame_rate, session.settings.window or DEFAULT_WINDOW_S)
            session.progress_windows[layer_id] = lw
        lw.update(store.view(layer_id)[1], valid=store.valid(layer_id))
        if s["n_positions"]:
            parts.append(
                f"L{layer_id} {headline(verdict, fs, lw)} viol {s['violation_rate']:.2f}% "
                f"imp {s['avg_improvement']:.4f}"
            )
    return " | ".join(parts)


def run_headless(session: Session, progress_every: float = 2.0) -> int:
    err = sys.stderr
    tty = err.isatty()
    session.install_signal_handlers()
    try:
        session.open_log()
    except BaseException:  # no log, no run: leave the folder as it was (no lock, no folder of our own)
        session.release()
        raise
    session.engine.start()
    last, printed_at = None, 0.0
    while not session.engine.wait(0.2):
        if session.signal_received is not None:
            # The engine stops at its next block; a model still loading cannot be stopped: wait under a second,
            # then report what was seen (the console script exits without waiting for that thread)
            session.engine.wait(0.7)
            break
        if time.monotonic() - printed_at < progress_every:
            continue
        printed_at = time.monotonic()
        line = progress_line(session)
        if line == last and not tty:  # a log file gets a line when something changed, not every 2 s
            continue
        last = line
        err.write(("\r" + line[:200] + "\x1b[K") if tty else line + "\n")
        err.flush()
    if tty:
        err.write("\n")
    st = session.engine.status
    if st.error:
        err.write(f"ttt-tui: {'input error' if st.error_detail is None else 'model error'}: {st.error}\n")
    try:
        paths = session.write_report()
    finally:
        session.release()
    err.write(progress_line(session) + "\n")
    err.write(f"report written to {session.out_dir}/ ({', '.join(p.name for p in paths.values())})\n")
    err.flush()
    print(session.out_dir)  # stdout: the report folder, for scripts (RUN=$(ttt-tui in.wav --headless))
    sys.stdout.flush()
    return session.exit_code()
