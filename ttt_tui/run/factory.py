"""From a run's settings to its parts: the model backend and the audio source (with the checks that give one
line and exit 2 before anything loads). Used by the session (this process) and by the dashboard's inference
process, which builds its own from the same settings."""

from __future__ import annotations

import math

from ..errors import InputError
from .settings import RunSettings


def make_backend(args: RunSettings):
    from ..backends import backend_class

    device = args.torch_device
    if device:
        check_device(device)
    if args.checkpoint:
        return make_moshi_backend(args, device)
    moshi_only = [f for f in MOSHI_FLAGS if getattr(args, f.lstrip("-").replace("-", "_")) not in (None, False)]
    if moshi_only:
        raise InputError(f"{moshi_only[0]} goes with --checkpoint (a Moshi-TTT checkpoint folder)")
    if args.mini_batch is not None and not 1 <= args.mini_batch <= MAX_MINI_BATCH:
        raise InputError(
            f"--mini-batch must be within 1..{MAX_MINI_BATCH} tokens (the model was trained with 16; "
            f"{MAX_MINI_BATCH} is {MAX_MINI_BATCH / 50:.0f} s of audio)"
        )
    if not math.isfinite(args.lr_scale):
        raise InputError("--lr-scale must be a finite number")
    return backend_class("embedded")(lr_scale=args.lr_scale, mini_batch_size=args.mini_batch, device=device)


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
    "--teacher-forced",
)


def make_moshi_backend(args: RunSettings, device):
    from ..backends import backend_class

    if args.lr_scale != 1.0 or args.mini_batch is not None:
        raise InputError("--lr-scale and --mini-batch are for the embedded model; a checkpoint brings its own")
    if args.gating_alpha is not None and not math.isfinite(args.gating_alpha):
        raise InputError("--gating-alpha must be a finite number")
    if args.greedy and args.seed is not None:
        raise InputError("--seed seeds the sampling; --greedy does not sample: give one of them")
    if args.teacher_forced and (args.greedy or args.seed is not None):
        raise InputError("--teacher-forced samples nothing (the recording is the audio stream): drop --greedy/--seed")
    return backend_class("moshi-ttt")(
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
        teacher_forced=args.teacher_forced,
        **({} if args.seed is None else {"seed": args.seed}),
    )


def make_source(args: RunSettings, backend):
    if args.mic:
        from ..sources.mic import MicSource

        return MicSource(
            backend.sample_rate, device=args.device, duration_s=args.duration, block_seconds=args.block_seconds
        )
    from ..sources import FileSource

    src = FileSource(args.input, backend.sample_rate, block_seconds=args.block_seconds, realtime=args.realtime)
    if src.duration_s < backend.min_audio_s:
        raise InputError(
            f"{src.path} holds {src.duration_s:.3f} s of audio, shorter than one mini-batch of the "
            f"model ({backend.min_audio_s:.2f} s); give a longer recording"
        )
    return src
