#!/usr/bin/env python3
"""Moshi-TTT checkpoints: frames per second with and without the losses, as ttt-tui runs them (Mimi encode,
LMGen step, Mimi decode, frame by frame, the first frame stepped twice). Prints JSON.

Modes, interleaved run by run, medians of --runs: ``off`` (the TTT layers run, nothing recorded) and ``on``
(losses and inner-loop signals recorded on the device, copied once per audio block).

Models: ``tiny`` (the random tiny Moshi + Mimi of the tests, files written to a temporary folder) and
``moshi`` (Moshi 7B's architecture with random weights, TTT-MLP in layers 29-31, mini-batch 64, bfloat16 on a
GPU: its 16 GB of weights are never downloaded). The goal: real time (<= 80 ms per frame) with monitoring on,
and monitoring overhead <= 3 %.

``--teacher-forced``: the recording as Moshi's audio stream, a mini-batch of frames per step, the outer loss
per position computed in both modes (it is the mode's product; ``off`` records none of the three losses).

    python bench/bench_moshi.py [--model tiny|moshi] [--device cpu|cuda] [--seconds 20] [--runs 5] [--teacher-forced]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_TORCH_COMPILE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import moshi_tiny  # noqa: E402

from ttt_tui.backends.moshi_ttt import MoshiBackend  # noqa: E402
from ttt_tui.sources import FileSource  # noqa: E402


def moshi_sized_checkpoint(folder: Path, layers=(29, 30, 31), mini_batch=64) -> Path:
    """A checkpoint folder with TTT tensors only (lora.safetensors), for Moshi 7B's shapes."""
    from moshi.models import loaders
    from safetensors.torch import save_file

    lm = dict(loaders._lm_kwargs)
    dim, heads = lm["dim"], lm["num_heads"]
    hd = dim // heads
    gen = torch.Generator().manual_seed(0)
    state = {}
    for L in layers:
        state.update(moshi_tiny.ttt_tensors(L, dim, heads, [hd, 4 * hd, hd], gen))
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in state.items()}, str(folder / "lora.safetensors"))
    (folder / "config.json").write_text(json.dumps({**lm, "lora": False}))
    ttt = {"enable": True, "layers": ",".join(map(str, layers)), "base_lr": 1.0, "mini_batch_size": mini_batch}
    (folder / "training_config.json").write_text(json.dumps({"ttt": ttt}))
    return folder


def checkpoint_files(model: str, tmp: Path) -> dict:
    """Written once, loaded by both modes: the MoshiBackend arguments of the chosen model."""
    if model == "tiny":
        paths = moshi_tiny.build(tmp / "tiny")
        return {
            "checkpoint": paths["checkpoint"],
            "moshi_weight": paths["moshi"],
            "mimi_weight": paths["mimi"],
            "mimi_config": paths["mimi_config"],
        }
    return {"checkpoint": moshi_sized_checkpoint(tmp / "moshi-ck"), "random_base": True}


def build(files: dict, device: str, record: bool, teacher_forced: bool = False) -> MoshiBackend:
    b = MoshiBackend(**files, device=device, record_losses=record, teacher_forced=teacher_forced)
    b.load()
    return b


def speech(seconds: float, rate: int) -> np.ndarray:
    """The bundled sample at the model's rate, repeated to ``seconds``."""
    src = FileSource(ROOT / "assets" / "sample.wav", rate, block_seconds=5.0)
    x = np.concatenate(list(src.blocks()))
    return np.tile(x, int(np.ceil(seconds * rate / x.shape[0])))[: int(seconds * rate)]


def run_once(b: MoshiBackend, audio: np.ndarray, block_s: float) -> tuple[float, int]:
    b.reset()
    step = int(block_s * b.sample_rate)
    sync = torch.cuda.synchronize if b.device.startswith("cuda") else (lambda: None)
    sync()
    t0 = time.perf_counter()
    steps = 0
    for s in range(0, audio.shape[0], step):
        steps += b.process(audio[s : s + step])
        b.take_losses()  # the host copy, once per block, as the engine does
        b.take_signals()
        b.take_outer()
    sync()
    return time.perf_counter() - t0, steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("tiny", "moshi"), default="tiny")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--block-seconds", type=float, default=1.0)
    ap.add_argument("--quick", action="store_true", help="a few seconds, figures printed, no goal (what .ci/run runs)")
    ap.add_argument("--teacher-forced", action="store_true", help="the recording as Moshi's audio stream")
    a = ap.parse_args()
    if a.quick:
        a.seconds, a.runs = 2.0, 1
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        t0 = time.perf_counter()
        files = checkpoint_files(a.model, tmp)
        models = {mode: build(files, a.device, mode == "on", a.teacher_forced) for mode in ("off", "on")}
        load_s = time.perf_counter() - t0
        audio = speech(a.seconds, models["on"].sample_rate)
        for b in models.values():  # warm-up (allocator, first-call costs)
            run_once(b, audio[: 2 * b.sample_rate], a.block_seconds)
        times: dict[str, list[float]] = {"off": [], "on": []}
        steps = 0
        for _ in range(a.runs):
            for mode, b in models.items():
                dt, steps = run_once(b, audio, a.block_seconds)
                times[mode].append(dt)
    med = {k: statistics.median(v) for k, v in times.items()}
    frames = steps if a.teacher_forced else steps - 1  # LMGen steps the first frame twice
    out = {
        "model": a.model,
        "teacher_forced": a.teacher_forced,
        "device": a.device if not a.device.startswith("cuda") else torch.cuda.get_device_name(),
        "dtype": str(models["on"].dtype).removeprefix("torch."),
        "ttt_layers": models["on"].layer_ids,
        "mini_batch_size": models["on"].mini_batch_size,
        "audio_s": a.seconds,
        "frames": frames,
        "runs": a.runs,
        "load_s": round(load_s, 2),
        "median_s": {k: round(v, 4) for k, v in med.items()},
        "all_s": {k: [round(x, 4) for x in v] for k, v in times.items()},
        "ms_per_frame": {k: round(1000 * v / frames, 3) for k, v in med.items()},
        "frames_per_s": {k: round(frames / v, 1) for k, v in med.items()},
        "realtime_factor_on": round(a.seconds / med["on"], 2),
        "overhead_on_over_off": round(med["on"] / med["off"], 4),
        "goal": "<= 80 ms per frame with monitoring on; on/off <= 1.03",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
