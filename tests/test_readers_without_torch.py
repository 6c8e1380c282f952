"""Readers of a run (report, compare, open, tensorboard, eval's merge) need the run log and nothing else: not
the model, not torch (a login node, a laptop with the log copied over). Before, ``stats`` imported torch
through ``ttt.py`` and ``backends/__init__`` imported the embedded model, so every reader did."""

import subprocess
import sys
from pathlib import Path

import numpy as np

from ttt_tui.record.runlog import RunLogWriter

ROOT = Path(__file__).resolve().parents[1]
HEADER = {"input": "x.wav", "model": "synthetic", "device": "cpu", "frame_rate": 50.0, "layer_ids": [0, 1]}

SCRIPT = r"""
import asyncio, sys
sys.modules["torch"] = None  # any import of torch fails
from ttt_tui.cli import main

run, out = sys.argv[1], sys.argv[2]
assert main(["report", run, "--out", out + "/report"]) == 0
assert main(["compare", run, run, "--out", out + "/compare"]) == 0
assert main(["tensorboard", run, "--logdir", out + "/tb"]) == 0
import ttt_tui.evaluation.aggregate  # eval --merge's reader

from ttt_tui.tui.app import DashboardApp
from ttt_tui.tui.opened import OpenedRun


async def scenario():
    opened = OpenedRun(run)
    app = DashboardApp(opened, install_signals=False)
    async with app.run_test(size=(120, 40)) as pilot:
        for _ in range(100):
            if app.engine.done:
                break
            await pilot.pause(0.1)
        await pilot.pause(0.3)
        header = str(app.query_one("#header").render())
        await pilot.press("q")
    opened.reader.close()
    return header

header = asyncio.run(scenario())
assert "FINISHED" in header, header
print("torch" in sys.modules and sys.modules["torch"] is not None)
"""


def test_every_reader_runs_without_torch(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    rng = np.random.default_rng(0)
    w = RunLogWriter(run, HEADER)
    for _ in range(10):
        w.extend({L: (1.0 + rng.random((50, 3))).astype(np.float32) for L in (0, 1)})
    w.close({"state": "finished", "audio_s": 10.0})
    r = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(run), str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)},
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == "False"
    assert (tmp_path / "report" / "report.json").is_file() and (tmp_path / "compare" / "compare.json").is_file()
