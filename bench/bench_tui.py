#!/usr/bin/env python3
"""What the dashboard costs. Prints JSON (medians).

1. full-screen redraw at 200x60: 8 layers x 3 series x 1M points each (goal <= 150 ms): every chart invalidated,
   rebuilt and composited (Textual's Pilot, headless terminal);
2. key-press-to-screen latency while inference runs on a long file (goal <= 200 ms): press ``l`` through
   Textual's Pilot and wait until every visible chart was rebuilt and the screen refreshed (this includes the
   Pilot's own waits for idle); also the app's own part, from the key's action to the last chart built;
3. inference throughput with the dashboard running over headless (goal >= 0.9): real-time factor of the
   inference (audio seconds per second spent in the model) of the same file, under the app (the dashboard's
   child-process engine) vs headless (the thread engine).

    python bench/bench_tui.py [--points 1000000] [--runs 7]
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
from types import SimpleNamespace

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ttt_tui.backends.base import Backend  # noqa: E402
from ttt_tui.cli import build_parser  # noqa: E402
from ttt_tui.record.schema import RunHeader  # noqa: E402
from ttt_tui.record.store import LossStore  # noqa: E402
from ttt_tui.run.engine import Engine  # noqa: E402
from ttt_tui.run.live import LiveRun  # noqa: E402
from ttt_tui.run.session import Session  # noqa: E402
from ttt_tui.run.settings import RunSettings  # noqa: E402
from ttt_tui.tui.app import DashboardApp, LayerPanel  # noqa: E402


class _NoAudio:
    duration_s = 0.0

    def blocks(self):
        return iter(())

    def describe(self):
        return {"input": "bench"}


class _IdleBackend(Backend):
    name, device, sample_rate, frame_rate = "bench (8 synthetic layers)", "cpu", 16000, 50.0
    layer_ids = list(range(8))
    min_audio_s = 0.0

    def reset(self):
        pass

    def process(self, samples):
        return 0

    def take_losses(self):
        return {}


def big_store(points: int) -> LossStore:
    store = LossStore(range(8), 50.0, initial_capacity=points)
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, points, dtype=np.float32)
    for layer in range(8):
        noise = rng.normal(0, 0.05, (points, 3)).astype(np.float32)
        block = np.stack([1.0 + 0 * t, 0.8 - 0.2 * t, 0.7 - 0.25 * t], 1) + noise
        store.append(layer, block)
    return store


def stub_session(store: LossStore, tmp: Path):
    engine = Engine(_NoAudio(), _IdleBackend(), store)
    return SimpleNamespace(
        engine=engine,
        store=store,
        header=RunHeader(layer_ids=tuple(store.layer_ids), frame_rate=store.frame_rate, model=_IdleBackend.name),
        settings=RunSettings(input="synthetic 8 x 1M"),
        out_dir=tmp,
        write_report=lambda: {},
        exit_code=lambda: 0,
        report_paths=None,
    )


async def settle(pilot, app, want_key) -> None:
    """Until every visible chart shows ``want_key`` (view settings) and the screen was refreshed."""
    t0 = time.perf_counter()
    while True:
        panels = [p for p in app.query(LayerPanel) if p.display and not p.has_class("collapsed")]
        if all(p.drawn is not None and p.drawn[1] == want_key for p in panels):
            break
        if time.perf_counter() - t0 > 30:
            sys.exit("bench_tui: the charts were not redrawn within 30 s")
        await pilot.pause(0.005)
    await pilot.pause()  # the compositor's refresh


async def redraw_bench(points: int, runs: int, tmp: Path) -> dict:
    store = big_store(points)
    app = DashboardApp(stub_session(store, tmp), refresh_hz=0.1, install_signals=False)
    times, builds = [], []
    async with app.run_test(size=(200, 60)) as pilot:
        await pilot.pause(0.5)
        if app.compact:  # the goal is about 8 charts on screen at once
            sys.exit("bench_tui: 8 layers at 200x60 are shown compact (one chart): the redraw goal does not apply")
        for _ in range(runs + 1):
            for p in app.query(LayerPanel):
                p.drawn = None
            t0 = time.perf_counter()
            app.refresh_charts()
            prep = time.perf_counter() - t0
            await settle(pilot, app, app.view.key())
            times.append(time.perf_counter() - t0)
            builds.append(prep)
    times, builds = times[1:], builds[1:]  # the first includes plotext's warm-up
    return {
        "layers": 8,
        "points_per_series": points,
        "size": "200x60",
        "full_redraw_ms_median": round(1000 * statistics.median(times), 1),
        "data_prep_ms_median": round(1000 * statistics.median(builds), 1),
        "all_ms": [round(1000 * t, 1) for t in times],
    }


def long_file(tmp: Path, minutes: float) -> Path:
    x, sr = sf.read(str(ROOT / "assets" / "sample.wav"), dtype="float32")
    x = np.tile(x, int(np.ceil(minutes * 60 * sr / len(x))))[: int(minutes * 60 * sr)]
    path = tmp / "long.flac"
    sf.write(str(path), x, sr)
    return path


def make_session(path: Path, tmp: Path, live: bool = False):
    out = Path(tempfile.mkdtemp(dir=tmp, prefix="rep-"))  # a folder per session: a run locks its own
    args = build_parser().parse_args([str(path), "--out", str(out), "--torch-device", "cpu", "--no-plots"])
    s = LiveRun(RunSettings.from_args(args)) if live else Session(args)
    s.write_report = lambda: {}  # measure the run, not the report
    return s


async def latency_and_throughput(path: Path, presses: int, tmp: Path) -> dict:
    session = make_session(path, tmp, live=True)  # as run_dashboard does: inference in a child process
    session.start()
    app = DashboardApp(session, install_signals=False)
    lat, internal = [], []
    async with app.run_test(size=(200, 60)) as pilot:
        await pilot.pause(1.0)
        for _ in range(presses):
            t0 = time.perf_counter()
            await pilot.press("l")
            await settle(pilot, app, app.view.key())
            lat.append(time.perf_counter() - t0)
            internal.append(app.last_render_at - app.last_forced_at)  # key action -> last chart built
            await pilot.pause(0.3)
        while not session.engine.done:
            await pilot.pause(0.1)
    # throughput of the model itself: audio seconds per second of inference (the child's own clock),
    # and per wall second including the child's start-up
    ui_rate = session.engine.status.realtime_factor
    ui_wall_rate = session.engine.status.audio_s / session.engine.wall_s

    headless = make_session(path, tmp)
    headless.engine.start()
    while not headless.engine.wait(0.5):  # the headless loop reads the store the same way
        headless.store.summary(0)
    head_rate = headless.engine.status.realtime_factor
    return {
        "key_to_screen_ms_median": round(1000 * statistics.median(lat), 1),
        "key_to_screen_ms_all": [round(1000 * t, 1) for t in lat],
        "key_action_to_charts_built_ms_median": round(1000 * statistics.median(internal), 1),
        "inference_rtf_with_ui": round(ui_rate, 1),
        "inference_rtf_headless": round(head_rate, 1),
        "audio_s_per_wall_s_with_ui_incl_startup": round(ui_wall_rate, 1),
        "throughput_ui_over_headless": round(ui_rate / head_rate, 3),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--minutes", type=float, default=5.0, help="audio for the latency/throughput part")
    ap.add_argument("--quick", action="store_true", help="a few seconds, figures printed, no goal (what .ci/run runs)")
    args = ap.parse_args(argv)
    if args.quick:
        args.points, args.runs, args.minutes = 20_000, 1, 0.2
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        out = {"redraw": asyncio.run(redraw_bench(args.points, args.runs, tmp))}
        out["live"] = asyncio.run(latency_and_throughput(long_file(tmp, args.minutes), args.runs, tmp))
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
