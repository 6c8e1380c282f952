#!/usr/bin/env python3
"""What ``ttt_tui.Recorder`` costs a loop. Prints JSON (medians).

The loop: ``examples/text_ttt.py``'s tiny TTT-MLP language model (2 layers, dim 64) streaming text, 64 tokens
per step, its layers computing the three losses in every variant (``take_losses`` each step). Variants,
alternated run by run: no recorder at all; a recorder switched off (``enabled=False``: goal ratio 1.00); a
recorder on, ``record`` every step (goal <= 1.10). Ratios are wall time per step over the no-recorder loop.
(The issue's "every 100th step" is for training runs, which record one step's sequence every N steps: not built
yet.)

    python bench/bench_recorder.py [--steps 400] [--runs 7] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ttt_tui  # noqa: E402
from ttt_tui.ttt import TTTLayer  # noqa: E402


def model(device: str):
    torch.manual_seed(0)
    embed = nn.Embedding(256, 64).to(device)
    layers = nn.ModuleList([TTTLayer(64, num_heads=4, kind="mlp", mini_batch_size=16) for _ in range(2)]).to(device)
    return embed, layers


def loop(embed, layers, tokens, rec) -> float:
    """Seconds per step of the whole stream; ``rec``: a Recorder, or None."""
    for layer in layers:
        layer.reset_stream()
    t0 = time.perf_counter()
    with torch.no_grad():
        for s in range(0, len(tokens), 64):
            x = embed(tokens[s : s + 64])[None]
            for layer in layers:
                x = x + layer.stream_step(x)
            losses = {i: layer.take_losses()[0] for i, layer in enumerate(layers)}
            if rec is not None:
                rec.record(losses)
    if rec is not None:
        rec.close()
    if tokens.is_cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / (len(tokens) // 64)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="a few seconds, figures printed, no goal (what .ci/run runs)")
    a = ap.parse_args(argv)
    if a.quick:
        a.steps, a.runs = 40, 1
    torch.set_num_threads(1)
    embed, layers = model(a.device)
    tokens = torch.randint(0, 256, (a.steps * 64,), device=a.device)
    times = {"none": [], "off": [], "every_step": []}
    with tempfile.TemporaryDirectory() as t:
        loop(embed, layers, tokens, None)  # warm-up
        for k in range(a.runs):
            times["none"].append(loop(embed, layers, tokens, None))
            off = ttt_tui.Recorder(Path(t) / f"off{k}", enabled=False)
            times["off"].append(loop(embed, layers, tokens, off))
            on = ttt_tui.Recorder(Path(t) / f"on{k}", layers=[0, 1], report=False)
            times["every_step"].append(loop(embed, layers, tokens, on))
    base = statistics.median(times["none"])
    print(
        json.dumps(
            {
                "device": a.device,
                "steps": a.steps,
                "tokens_per_step": 64,
                "runs": a.runs,
                "ms_per_step_no_recorder": round(1000 * base, 3),
                "ratio_recorder_off": round(statistics.median(times["off"]) / base, 3),
                "ratio_recorder_every_step": round(statistics.median(times["every_step"]) / base, 3),
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
