#!/usr/bin/env python3
"""Memory against audio length: the headless command on generated speech of growing length. Prints JSON.

Each length runs in its own process (the full ``ttt-tui --headless`` path, report included), which prints its
own peak RSS; the store's own bytes per token per layer come from its arrays.

    python bench/bench_memory.py [--minutes 1 10 60]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import resource, sys, json
from ttt_tui.cli import build_parser
from ttt_tui.run.session import Session, run_headless
args = build_parser().parse_args(sys.argv[1:])
s = Session(args)
code = run_headless(s, progress_every=30)
store = s.store
n = sum(store.n_positions(i) for i in store.layer_ids)
print(json.dumps({"exit": code, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "positions": n, "store_mb": store.nbytes() / 2**20, "store_bytes_per_token": store.nbytes() / n,
                  "wall_s": s.engine.wall_s, "rtf": s.engine.status.realtime_factor}))
"""


def write_speech(path: Path, minutes: float, rate: int = 16000) -> None:
    x, sr = sf.read(str(ROOT / "assets" / "sample.wav"), dtype="float32")
    assert sr == rate
    total = int(minutes * 60 * rate)
    with sf.SoundFile(str(path), "w", rate, 1, format="FLAC") as f:
        done = 0
        while done < total:
            k = min(len(x), total - done)
            f.write(x[:k])
            done += k


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 60])
    ap.add_argument("--quick", action="store_true", help="a few seconds, figures printed, no goal (what .ci/run runs)")
    args = ap.parse_args(argv)
    if args.quick:
        args.minutes = [0.1]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for m in args.minutes:
            audio = Path(tmp) / f"speech_{m:g}min.flac"
            write_speech(audio, m)
            t0 = time.time()
            r = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    CHILD,
                    str(audio),
                    "--headless",
                    "--no-plots",
                    "--torch-device",
                    "cpu",
                    "--out",
                    str(Path(tmp) / f"rep{m:g}"),
                ],
                capture_output=True,
                text=True,
                cwd=ROOT,
                env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
            )
            if r.returncode != 0:
                print(r.stderr, file=sys.stderr)
                return 1
            row = {"minutes": m, **json.loads(r.stdout.strip().splitlines()[-1]), "process_s": time.time() - t0}
            rows.append({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()})
    growth = rows[-1]["peak_rss_mb"] - rows[0]["peak_rss_mb"]
    print(json.dumps({"runs": rows, "peak_rss_growth_mb_first_to_last": round(growth, 1)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
