#!/usr/bin/env python3
"""What the run log's safety costs, and how fast a long run opens. Prints JSON (medians).

1. headless throughput with the log as it is (a CRC-32 per block, a heartbeat thread refreshing the status row
   every 2 s) over the same log without either (CRC replaced by 0, heartbeat off): real-time factor of the
   embedded model on the same audio, runs alternated (goal: ratio >= 0.98, i.e. nothing measurable);
2. the log writer alone: seconds to write a 2.5 h run's blocks (3 layers, one block per second of audio) with
   and without the CRC;
3. ``ttt-tui open`` of a 2.5 h run (3 layers x 450,000 positions, written as the engine writes it): seconds from
   the command's start (in this process: ``OpenedRun`` and the app) to every chart showing the whole run
   (goal: <= 2 s).

    python bench/bench_runlog.py [--minutes 2] [--runs 5] [--hours 2.5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ttt_tui.cli import build_parser  # noqa: E402
from ttt_tui.record import runlog  # noqa: E402
from ttt_tui.run.session import Session  # noqa: E402

RATE = 50.0  # the embedded model's positions per second


def audio(tmp: Path, minutes: float) -> Path:
    x, sr = sf.read(str(ROOT / "assets" / "sample.wav"), dtype="float32")
    x = np.tile(x, int(np.ceil(minutes * 60 * sr / len(x))))[: int(minutes * 60 * sr)]
    path = tmp / "long.flac"
    sf.write(str(path), x, sr)
    return path


def headless_rtf(path: Path, tmp: Path, safe: bool) -> float:
    """One headless run (the engine and its log, no report); its real-time factor."""
    out = Path(tempfile.mkdtemp(dir=tmp, prefix="run-"))
    args = build_parser().parse_args([str(path), "--out", str(out), "--torch-device", "cpu", "--no-plots"])
    crc, beat = runlog.block_crc, runlog.HEARTBEAT_S
    if not safe:
        runlog.block_crc = lambda *a: 0
    s = Session(args)
    try:
        s.engine.log = runlog.RunLogWriter(s.out_dir, s.log_header(), heartbeat_s=beat if safe else 1e9)
        s.engine.start()
        s.engine.wait()
        return s.engine.status.realtime_factor
    finally:
        runlog.block_crc = crc
        s.release()


def synthetic_log(folder: Path, hours: float, layers: int = 3, crc: bool = True) -> tuple[Path, float]:
    """A run of ``hours`` written block by block as the engine writes it; returns (folder, seconds to write)."""
    folder.mkdir(parents=True, exist_ok=True)
    header = {"input": "synthetic", "model": "synthetic", "device": "cpu", "frame_rate": RATE}
    header["layer_ids"] = list(range(layers))
    saved = runlog.block_crc
    if not crc:
        runlog.block_crc = lambda *a: 0
    rng = np.random.default_rng(0)
    n = int(hours * 3600 * RATE)
    per_block = int(RATE)  # one block per second of audio
    base = np.array([1.3, 1.1, 1.05], np.float32)
    noise = (0.03 * rng.standard_normal((4096, 3))).astype(np.float32)
    try:
        t0 = time.perf_counter()
        w = runlog.RunLogWriter(folder, header, heartbeat_s=1e9)
        for k in range(-(-n // per_block)):
            rows = np.roll(noise, k, 0)[:per_block] + base
            w.extend({L: rows for L in range(layers)})
        w.close({"state": "finished", "audio_s": n / RATE})
        return folder, time.perf_counter() - t0
    finally:
        runlog.block_crc = saved


async def open_seconds(folder: Path) -> float:
    """From nothing to every chart drawn with every position of the run."""
    from ttt_tui.tui.app import DashboardApp, LayerPanel
    from ttt_tui.tui.opened import OpenedRun

    t0 = time.perf_counter()
    run = OpenedRun(folder)
    app = DashboardApp(run, install_signals=False)
    total = None
    async with app.run_test(size=(200, 60)) as pilot:
        while time.perf_counter() - t0 < 120:
            panels = [p for p in app.query(LayerPanel) if p.display and not p.has_class("collapsed")]
            if app.engine.done and total is None:
                total = max(app.store.n_positions(i) for i in app.store.layer_ids)
            if total and panels and all(p._args is not None and p._args[0].shape[0] == total for p in panels):
                if all(p.drawn is not None for p in panels):
                    break
            await pilot.pause(0.02)
        took = time.perf_counter() - t0
        await pilot.press("q")
    run.reader.close()
    return took


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=2.0, help="audio for the headless part")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--hours", type=float, default=2.5, help="length of the run opened")
    ap.add_argument("--quick", action="store_true", help="a few seconds, figures printed, no goal (what .ci/run runs)")
    a = ap.parse_args(argv)
    if a.quick:
        a.minutes, a.runs, a.hours = 0.2, 1, 0.05
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        path = audio(tmp, a.minutes)
        safe, bare = [], []
        for _ in range(a.runs):  # alternated: the machine's drift hits both alike
            safe.append(headless_rtf(path, tmp, True))
            bare.append(headless_rtf(path, tmp, False))
        writes = {True: [], False: []}
        for _ in range(max(1, a.runs // 2)):
            for crc in (True, False):
                folder = Path(tempfile.mkdtemp(dir=tmp))
                writes[crc].append(synthetic_log(folder / "run", a.hours, crc=crc)[1])
        folder, _ = synthetic_log(tmp / "long", a.hours)
        opens = [asyncio.run(open_seconds(folder)) for _ in range(max(1, a.runs // 2))]
        size_mb = (folder / runlog.LOG_NAME).stat().st_size / 1e6
    out = {
        "headless_rtf_with_crc_and_heartbeat": round(statistics.median(safe), 1),
        "headless_rtf_without": round(statistics.median(bare), 1),
        "throughput_ratio": round(statistics.median(safe) / statistics.median(bare), 3),
        "runs": a.runs,
        "audio_minutes": a.minutes,
        f"write_{a.hours:g}h_log_s_with_crc": round(statistics.median(writes[True]), 2),
        f"write_{a.hours:g}h_log_s_without_crc": round(statistics.median(writes[False]), 2),
        f"open_{a.hours:g}h_run_until_every_chart_shows_it_s": round(statistics.median(opens), 2),
        "open_s_all": [round(x, 2) for x in opens],
        "log_mb": round(size_mb, 1),
    }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
