"""One monitoring session, whatever the front end: build source, backend, store and engine from the
command-line options, and write the report (with what was seen, also after an interruption or an error)."""

from __future__ import annotations

import math
import platform
import signal
import sys
import time
from datetime import datetime
from pathlib import Path

from . import __version__
from .engine import Engine
from .errors import EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, InputError
from .files import prepare_out_dir
from .report import default_out_dir, write_report

SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
if hasattr(signal, "SIGHUP"):
    SIGNAL_EXIT[signal.SIGHUP] = 129


def make_backend(args):
    from .backends import EmbeddedBackend

    device = args.torch_device
    if device:
        check_device(device)
    if getattr(args, "checkpoint", None):
        return make_moshi_backend(args, device)
    moshi_only = [f for f in MOSHI_FLAGS if getattr(args, f.lstrip("-").replace("-", "_"), None) not in (None, False)]
    if moshi_only:
        raise InputError(f"{moshi_only[0]} goes with --checkpoint (a Moshi-TTT checkpoint folder)")
    if args.mini_batch is not None and not 1 <= args.mini_batch <= MAX_MINI_BATCH:
        raise InputError(
            f"--mini-batch must be within 1..{MAX_MINI_BATCH} tokens (the model was trained with 16; "
            f"{MAX_MINI_BATCH} is {MAX_MINI_BATCH / 50:.0f} s of audio)"
        )
    if not math.isfinite(args.lr_scale):
        raise InputError("--lr-scale must be a finite number")
    return EmbeddedBackend(lr_scale=args.lr_scale, mini_batch_size=args.mini_batch, device=device)


MAX_MINI_BATCH = 4096


def check_device(device: str) -> None:
    """``--torch-device``: cpu, cuda or cuda:N that exists here; one line otherwise."""
    import torch

    try:
        d = torch.device(device)
    except (RuntimeError, ValueError):
        raise InputError(f"--torch-device {device}: not a device name (cpu, cuda, cuda:1 ...)") from None
    if d.type not in ("cpu", "cuda"):
        raise InputError(f"--torch-device {device}: ttt-tui runs on cpu or cuda")
    if d.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"--torch-device {device}: no CUDA device here; use --torch-device cpu")
        if d.index is not None and d.index >= torch.cuda.device_count():
            raise InputError(f"--torch-device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")


MOSHI_FLAGS = (
    "--hf-repo",
    "--moshi-weight",
    "--mimi-weight",
    "--config",
    "--mimi-config",
    "--ttt-persist",
    "--gating-alpha",
    "--follow",
    "--greedy",
    "--seed",
)


def make_moshi_backend(args, device):
    from .backends.moshi_ttt import MoshiBackend

    if args.lr_scale != 1.0 or args.mini_batch is not None:
        raise InputError("--lr-scale and --mini-batch are for the embedded model; a checkpoint brings its own")
    if args.gating_alpha is not None and not math.isfinite(args.gating_alpha):
        raise InputError("--gating-alpha must be a finite number")
    if args.greedy and args.seed is not None:
        raise InputError("--seed seeds the sampling; --greedy does not sample: give one of them")
    return MoshiBackend(
        args.checkpoint,
        hf_repo=args.hf_repo,
        moshi_weight=args.moshi_weight,
        mimi_weight=args.mimi_weight,
        config=args.config,
        mimi_config=args.mimi_config,
        device=device,
        persist=args.ttt_persist,
        gating_alpha=args.gating_alpha,
        follow=args.follow or "inference",
        greedy=args.greedy,
        **({} if args.seed is None else {"seed": args.seed}),
    )


def make_source(args, backend):
    if args.mic:
        from .sources.mic import MicSource

        return MicSource(
            backend.sample_rate, device=args.device, duration_s=args.duration, block_seconds=args.block_seconds
        )
    from .sources import FileSource

    src = FileSource(args.input, backend.sample_rate, block_seconds=args.block_seconds, realtime=args.realtime)
    if src.duration_s < backend.min_audio_s:
        raise InputError(
            f"{src.path} holds {src.duration_s:.3f} s of audio, shorter than one mini-batch of the "
            f"model ({backend.min_audio_s:.2f} s); give a longer recording"
        )
    return src


class Session:
    def __init__(self, args, backend=None):
        """``backend``: a model already built (a data set's files share one); by default built from ``args``."""
        self.args = args
        self.backend = backend if backend is not None else make_backend(args)
        self.source = make_source(args, self.backend)
        self.started = datetime.now()
        name = "microphone" if args.mic else args.input
        self.out_dir = Path(args.out) if args.out else default_out_dir(name)
        self._lock = prepare_out_dir(self.out_dir, force=getattr(args, "force", False))  # held for the run
        args.out = str(self.out_dir)  # the dashboard's inference process writes the model's outputs there too
        self.engine = Engine(self.source, self.backend, out_dir=self.out_dir)
        self.store = self.engine.store
        self.signal_received: int | None = None
        self.report_paths: dict | None = None

    def release(self) -> None:
        """The report folder's lock, held since the start: released when the run's report is written."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def use_process_engine(self) -> None:
        """Run inference in a child process (the dashboard: no GIL shared with the UI); it writes the run log."""
        from .engine_process import ProcessEngine

        self.engine = ProcessEngine(self.args, self.source, self.backend, self.store, log_header=self.log_header())

    def log_header(self) -> dict:
        """What the run log says of the run before its first block (``runlog``): the report's run section as it
        stands, and what a reader needs to rebuild the store."""
        return {
            **self.run_info(),
            "layer_ids": self.store.layer_ids,
            "signal_names": list(self.store.signal_names),
        }

    def open_log(self) -> None:
        """The run log, written by this process's engine (headless)."""
        from .runlog import RunLogWriter

        self.engine.log = RunLogWriter(self.out_dir, self.log_header())

    # -- signals: the report is written first, then the documented exit code ------------------------------
    def install_signal_handlers(self) -> None:
        for sig in SIGNAL_EXIT:
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        if self.signal_received is None:
            self.signal_received = signum
        self.engine.stop(signal.Signals(signum).name)

    def run_info(self) -> dict:
        import numpy
        import torch

        st = self.engine.status
        details = self.backend.describe()
        return {
            "input": "microphone" if self.args.mic else str(self.args.input),
            **{k: v for k, v in self.source.describe().items() if k not in ("input", "duration_s")},
            "input_duration_s": getattr(self.source, "duration_s", None),
            "duration_s": round(st.audio_s, 4),
            "sample_rate": self.backend.sample_rate,
            "frame_rate": self.backend.frame_rate,
            "model": self.backend.name,
            "checkpoint": str(getattr(self.args, "checkpoint", None) or "") or None,
            "device": self.backend.device,
            "lr_scale": getattr(self.backend, "lr_scale", None),
            "mini_batch_size": getattr(self.backend, "mini_batch_size", None),
            "versions": {
                "ttt_tui": __version__,
                "torch": torch.__version__,
                "numpy": numpy.__version__,
                "python": platform.python_version(),
            },
            "started": self.started.isoformat(timespec="seconds"),
            "window_s": getattr(self.args, "window", None),
            "wall_s": round(self.engine.wall_s, 3),
            "realtime_factor": round(st.realtime_factor, 2),
            "state": st.state,
            "interrupted": st.state != "finished",
            "stop_reason": st.stop_reason,
            "error": st.error,
            "dropped_blocks": getattr(self.source, "dropped_blocks", None),
            "log_error": getattr(self.engine, "log_error", None),
            "notes": self.backend.notes(),
            "audit": self.backend.audit(),
            "decoding": details.get("decoding"),
            "model_details": details,
        }

    def write_report(self) -> dict:
        self.report_paths = write_report(self.out_dir, self.store, self.run_info(), plots=not self.args.no_plots)
        if getattr(self.args, "tensorboard", None):
            from .report.tensorboard import export

            export(self.store, self.args.tensorboard, self.out_dir.name)
        audio = self.out_dir / "output.wav"  # written by the engine (thread or process) when the run ended
        if audio.exists():
            self.report_paths["audio"] = audio
        return self.report_paths

    def exit_code(self) -> int:
        """The signal's code if a signal cut the run short; a signal after the audio's end changed nothing of
        the report (``interrupted`` false), so the run's own code stands, as the report says."""
        st = self.engine.status
        if self.signal_received is not None and st.state != "finished":
            return SIGNAL_EXIT[self.signal_received]
        if st.state == "error":
            return EXIT_USAGE if st.error_detail is None else EXIT_INTERNAL
        return EXIT_OK


def progress_line(session: Session) -> str:
    st = session.engine.status
    total = getattr(session.source, "duration_s", None)
    done = f"{st.audio_s:7.1f}" + (f"/{total:.1f} s ({100 * st.audio_s / total:3.0f}%)" if total else " s")
    parts = [f"[{st.state}] {done} {st.realtime_factor:5.1f}x real time"]
    from .diagnosis import diagnose

    for layer_id in session.store.layer_ids:
        s = session.store.summary(layer_id)
        verdict, _ = diagnose(s)
        if s["n_positions"]:
            parts.append(f"L{layer_id} {verdict} viol {s['violation_rate']:.2f}% imp {s['avg_improvement']:.4f}")
    return " | ".join(parts)


def run_headless(session: Session, progress_every: float = 2.0) -> int:
    err = sys.stderr
    tty = err.isatty()
    session.install_signal_handlers()
    session.open_log()
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
