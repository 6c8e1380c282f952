#!/usr/bin/env python3
"""What the Figure-5 losses cost: the embedded default model on real speech, in one process. Prints JSON.

Modes, interleaved run by run, medians of --runs:
- off:  losses not computed (the uninstrumented model);
- ours: losses computed in the layer, kept on the device, copied to the host once per audio block;
- seed: the users' post-hoc tool's way: per mini-batch and per layer, three extra full forwards of the
        inner model (at W0, before and after the update) and a host synchronisation for each.

    python bench/bench_inference.py [--seconds 60] [--runs 7] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ttt_tui.backends import EmbeddedBackend  # noqa: E402
from ttt_tui.backends.embedded.default_model import ASSETS  # noqa: E402
from ttt_tui.sources import FileSource  # noqa: E402
from ttt_tui.ttt import _forward, _head_ln, _ln_fwd  # noqa: E402


def speech(seconds: float, rate: int) -> np.ndarray:
    """The bundled sample, repeated to the wanted length."""
    x = np.concatenate(list(FileSource(ASSETS / "sample.wav", rate).blocks()))
    return np.tile(x, int(np.ceil(seconds * rate / len(x))))[: int(seconds * rate)]


def install_seed_probe(layer) -> None:
    """Emulate the seed's instrumentation on one layer (its cost, not its numbers)."""
    plain_step = layer.stream_step

    def step(x):
        w_prev = layer.state.W if layer.state is not None else layer.start_weights()
        out = plain_step(x)
        w_after = layer.state.W
        _, XK, target, _ = layer._inputs(x)
        gamma, beta = _head_ln(layer.ttt_norm_weight, layer.ttt_norm_bias)
        b = layer.mini_batch_size
        for s in range(0, XK.shape[2], b):
            xk, tgt = XK[:, :, s : s + b], target[:, :, s : s + b]
            for W in (layer.start_weights(), w_prev, w_after):
                z, _, _ = _forward(layer.kind, W, xk)
                y, _, _ = _ln_fwd(z, gamma, beta)
                (y - tgt).pow(2).mean().item()  # host sync, as the seed's per-step logging
        return out

    layer.stream_step = step


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def one_run(backend: EmbeddedBackend, audio: np.ndarray, block: int, take: bool) -> float:
    backend.reset()
    sync(backend.device)
    t0 = time.perf_counter()
    for s in range(0, len(audio), block):
        backend.process(audio[s : s + block])
        if take:
            backend.take_losses()
    sync(backend.device)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--block-seconds", type=float, default=1.0, help="audio per process() call")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="a few seconds, figures printed, no goal (what .ci/run runs)")
    args = ap.parse_args(argv)
    if args.quick:
        args.seconds, args.runs = 5.0, 1

    backends = {
        "off": EmbeddedBackend(device=args.device, record_losses=False),
        "ours": EmbeddedBackend(device=args.device, record_losses=True),
        "seed": EmbeddedBackend(device=args.device, record_losses=False),
    }
    backends["off"].prepare_thread()  # the product's thread settings (one intra-op thread on CPU)
    for layer in backends["seed"].model.ttt_layers:
        install_seed_probe(layer)
    rate = backends["off"].sample_rate
    audio = speech(args.seconds, rate)
    block = int(args.block_seconds * rate)

    times: dict[str, list[float]] = {k: [] for k in backends}
    for mode, be in backends.items():  # warm-up
        one_run(be, audio[: rate * 5], block, take=mode == "ours")
    for _ in range(args.runs):
        for mode, be in backends.items():
            times[mode].append(one_run(be, audio, block, take=mode == "ours"))

    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "audio_s": args.seconds,
        "block_s": args.block_seconds,
        "runs": args.runs,
        "median_s": {k: round(v, 4) for k, v in med.items()},
        "all_s": {k: [round(x, 4) for x in v] for k, v in times.items()},
        "instrumented_over_uninstrumented": round(med["ours"] / med["off"], 4),
        "seed_over_uninstrumented": round(med["seed"] / med["off"], 4),
        "ours_overhead_times_cheaper_than_seed": round(
            (med["seed"] - med["off"]) / max(med["ours"] - med["off"], 1e-9), 1
        ),
        "ours_faster_than_seed": round(med["seed"] / med["ours"], 3),
        "realtime_factor_with_losses": round(args.seconds / med["ours"], 1),
        "realtime_factor_without_losses": round(args.seconds / med["off"], 1),
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
