#!/usr/bin/env python3
"""Exit codes of complete runs, many in a row: the ``ttt-tui`` command, headless, on a tiny random Moshi-TTT
checkpoint (2-layer and 3-layer inner MLP) and on the embedded model. Every run must exit 0; an abort at
interpreter teardown ("terminate called without an active exception") shows as 134. Prints JSON; exits 1 if
any run did not exit 0.

    python bench/exit_codes.py [--runs 20] [--seconds 4]
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import moshi_tiny  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20, help="runs per model (default 20)")
    ap.add_argument("--seconds", type=float, default=4.0, help="audio per run (default 4)")
    ap.add_argument("--quick", action="store_true", help="a few seconds, figures printed, no goal (what .ci/run runs)")
    a = ap.parse_args()
    if a.quick:
        a.runs, a.seconds = 1, 1.0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        wav = tmp / "in.wav"
        sf.write(str(wav), (0.1 * np.random.default_rng(0).standard_normal(int(24000 * a.seconds))), 24000)
        models = {"embedded": []}
        for n in (2, 3):
            paths = moshi_tiny.build(tmp / f"m{n}", mlp_layers=n)
            models[f"moshi-ttt {n}-layer"] = moshi_tiny.cli_args(paths)
        results = {}
        for name, extra in models.items():
            codes = collections.Counter()
            aborts = []
            for i in range(a.runs):
                cmd = ["ttt-tui", str(wav), "--headless", "--out", str(tmp / f"out-{len(results)}-{i}"), *extra]
                r = subprocess.run(cmd, capture_output=True, text=True)
                codes[r.returncode] += 1
                if r.returncode:
                    aborts.append(r.stderr.strip().splitlines()[-1:] or [""])
            results[name] = {"runs": a.runs, "exit_codes": dict(codes), "last_lines_of_failures": aborts[:3]}
    print(json.dumps({"seconds_of_audio": a.seconds, "results": results}, indent=1))
    return 0 if all(r["exit_codes"] == {0: r["runs"]} for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
