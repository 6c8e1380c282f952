#!/usr/bin/env python3
"""How ``ttt-tui eval`` scales: a data set through one process, then through torchrun's CPU ranks (gloo).
Prints JSON (medians): wall time of each, audio seconds per wall second, and the speed-up of N ranks over one
(goal for 2 ranks: >= 1.6x). Whole commands, start-up and merge included, as a user runs them.

    python bench/bench_eval.py [--files 8] [--seconds 240] [--ranks 2] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "ttt_tui" / "assets" / "sample.wav"


def make_dataset(folder: Path, files: int, seconds: float) -> float:
    """``files`` recordings of ``seconds`` each: the sample looped from a different offset each."""
    x, sr = sf.read(str(SAMPLE), dtype="float32")
    n = int(seconds * sr)
    for k in range(files):
        start = int(k * 3.1 * sr) % len(x)
        reps = -(-(start + n) // len(x))
        sf.write(str(folder / f"rec{k:03d}.wav"), np.tile(x, reps)[start : start + n], sr)
    return files * seconds


def timed(cmd: list[str], out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if not (out / "eval.json").exists():
        sys.exit(f"eval failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=240.0)
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="a few seconds, figures printed, no goal (what .ci/run runs)")
    a = ap.parse_args()
    if a.quick:
        a.files, a.seconds, a.runs = 2, 5.0, 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        data.mkdir()
        audio_s = make_dataset(data, a.files, a.seconds)
        common = [str(data), "--torch-device", "cpu", "--no-plots"]
        one_cmd = [sys.executable, "-m", "ttt_tui", "eval", *common, "--out", str(tmp / "one")]
        ranks_cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(a.ranks)]
        ranks_cmd += ["-m", "ttt_tui", "eval", *common, "--out", str(tmp / "ranks")]
        one, many = [], []
        for _ in range(a.runs):  # interleaved: the machine's noise hits both alike
            one.append(timed(one_cmd, tmp / "one"))
            many.append(timed(ranks_cmd, tmp / "ranks"))
        same = (
            json.loads((tmp / "one" / "eval.json").read_text())["layers"]["0"]["violation_rate"]
            == json.loads((tmp / "ranks" / "eval.json").read_text())["layers"]["0"]["violation_rate"]
        )
    w1, wn = statistics.median(one), statistics.median(many)
    print(
        json.dumps(
            {
                "files": a.files,
                "seconds_per_file": a.seconds,
                "cpu_cores": os.cpu_count(),
                "one_process_wall_s": round(w1, 2),
                f"{a.ranks}_ranks_wall_s": round(wn, 2),
                "one_process_audio_s_per_s": round(audio_s / w1, 1),
                f"{a.ranks}_ranks_audio_s_per_s": round(audio_s / wn, 1),
                "speedup": round(w1 / wn, 3),
                "all_one_s": [round(x, 2) for x in one],
                "all_ranks_s": [round(x, 2) for x in many],
                "same_aggregate": same,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
