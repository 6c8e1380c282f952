"""The dashboard: keys and states with Textual's Pilot, an SVG screenshot, and the real app in tmux."""

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ttt_tui.cli import build_parser
from ttt_tui.run.session import Session
from ttt_tui.run.settings import RunSettings
from ttt_tui.tui.app import DashboardApp, LayerPanel
from ttt_tui.tui.chart_data import ViewSettings, chart_series, moving_average
from ttt_tui.tui.run import start_live_run

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "assets" / "sample.wav"


def make_app(tmp_path, *extra, live=False, **kw):
    """The dashboard on the sample; ``live``: as real runs (``LiveRun``: the model in a child process that
    writes the run log, which the app reads), otherwise with the model in a thread of this process."""
    args = build_parser().parse_args([str(SAMPLE), "--out", str(tmp_path / "rep"), "--torch-device", "cpu", *extra])
    if live:  # what `ttt-tui` does before its screen (tui/run.py)
        return DashboardApp(start_live_run(RunSettings.from_args(args)), install_signals=False, **kw)
    return DashboardApp(Session(args), install_signals=False, **kw)


async def wait_for(pilot, cond, timeout=30.0):
    t0 = time.time()
    while not cond():
        assert time.time() - t0 < timeout, "timed out"
        await pilot.pause(0.1)


def test_keys_and_states(tmp_path):
    async def scenario():
        app = make_app(tmp_path, "--realtime", "--block-seconds", "0.25")
        async with app.run_test(size=(200, 60)) as pilot:
            eng = app.engine
            await wait_for(pilot, lambda: app.store.n_positions(0) > 20)
            assert eng.status.state == "running"
            await pilot.press("space")
            assert eng.status.state == "paused"
            await pilot.pause(0.6)
            n = app.store.n_positions(0)
            await pilot.pause(0.6)
            assert app.store.n_positions(0) <= n + 13  # at most the block in flight
            header = str(app.query_one("#header").render())
            assert "PAUSED" in header
            await pilot.press("space")
            assert eng.status.state == "running"

            v = app.view
            await pilot.press("f")
            assert not v.follow and v.frozen_n is not None
            await pilot.press("f")
            assert v.follow and v.frozen_n is None
            await pilot.press("plus", "plus")
            assert v.window_s == 120.0
            await pilot.press("minus")
            assert v.window_s == 600.0
            for key, attr in (("l", "log_y"), ("s", "smooth"), ("x", "x_seconds")):
                before = getattr(v, attr)
                await pilot.press(key)
                assert getattr(v, attr) != before

            panels = list(app.query(LayerPanel))
            await pilot.press("tab")
            assert app.selected == 1 and panels[1].has_class("selected")
            await pilot.press("e")
            assert [p.display for p in panels] == [False, True, False]
            await pilot.press("e")
            assert all(p.display for p in panels)

            await pilot.press("question_mark")
            assert type(app.screen).__name__ == "HelpScreen"
            await pilot.press("z")
            assert type(app.screen).__name__ != "HelpScreen"

            await pilot.press("r")  # a report now, mid-run
            assert (tmp_path / "rep" / "report.json").exists()

            await pilot.press("q")  # quit mid-run: the report says so
        doc = json.loads((tmp_path / "rep" / "report.json").read_text())
        assert doc["run"]["interrupted"] is True and doc["run"]["stop_reason"] == "quit"
        assert 0 < doc["layers"]["0"]["n_positions"] < 1235
        assert (tmp_path / "rep" / "dashboard.svg").exists()

    asyncio.run(scenario())


def test_finished_run_report_and_svg_screenshot(tmp_path):
    async def scenario():
        app = make_app(tmp_path)
        async with app.run_test(size=(200, 60)) as pilot:
            await wait_for(pilot, lambda: app.finished_handled)
            await wait_for(pilot, lambda: (tmp_path / "rep" / "dashboard.svg").exists())
            await pilot.pause(0.3)
            header = str(app.query_one("#header").render())
            assert "FINISHED" in header and "report:" in header
            assert all(p.redraws >= 1 for p in app.query(LayerPanel))
            svg = app.export_screenshot()
        return svg

    svg = asyncio.run(scenario())
    # the SVG is what a user sees: the verdicts, counters and the three series for every layer
    assert svg.startswith("<svg")
    for text in ("layer&#160;0", "layer&#160;2", "HEALTHY", "violations", "lafter", "seconds&#160;of&#160;audio"):
        assert text in svg, text
    saved = (tmp_path / "rep" / "dashboard.svg").read_text()
    assert "HEALTHY" in saved and "FINISHED" in saved
    assert json.loads((tmp_path / "rep" / "report.json").read_text())["run"]["interrupted"] is False


def test_chart_series_windows_and_decimates():
    """An hour is drawn as one mean per column (lines) over each column's min and max (the band, spikes kept)."""
    n = 1_000_000
    data = np.stack([np.full(n, 2.0), np.linspace(1, 0.5, n), np.linspace(0.9, 0.4, n)], 1).astype(np.float32)
    data[123_456, 0] = 50.0  # a spike survives decimation, in the band
    chart = chart_series(data, 50.0, ViewSettings(), columns=180)
    assert chart.xlabel == "seconds of audio" and chart.decimated and chart.names == ("l0", "lprev", "lafter")
    for x, y in chart.lines:
        assert len(x) == len(y) <= 180 and np.all(np.diff(x) > 0)
    assert chart.bands[0][1].max() == 50.0 and chart.lines[0][1].max() < 3.0  # the line is the level
    np.testing.assert_allclose(chart.lines[1][1][[0, -1]], [1.0, 0.5], atol=2e-3)
    view = ViewSettings(zoom=4, x_seconds=False)  # last 10 s, token axis: every sample, as lines
    chart = chart_series(data, 50.0, view, columns=1000)
    assert chart.lines[1][0].min() == n - 500 and chart.lines[1][0].max() == n - 1 and not chart.bands
    frozen = ViewSettings(follow=False, frozen_n=1000)
    chart = chart_series(data, 50.0, frozen, columns=180)
    assert chart.lines[0][0].max() <= 999 / 50.0


def test_chart_views_gains_and_violations():
    rows = np.array([[3.0, 2.0, 1.5], [3.0, 2.5, 2.6], [1.0, 2.0, 1.0]] * 400, np.float32)  # 2 of 3 violate
    gains = chart_series(rows, 50.0, ViewSettings(mode="gains"), columns=2000)
    assert gains.names[0].startswith("improvement") and gains.hlines == (0.0,)
    np.testing.assert_allclose(gains.lines[0][1][:3], [0.5, -0.1, 1.0], atol=1e-6)  # lprev - lafter
    np.testing.assert_allclose(gains.lines[1][1][:3], [1.5, 0.4, 0.0], atol=1e-6)  # l0 - lafter
    viol = chart_series(rows, 50.0, ViewSettings(mode="violations"), columns=2000)
    assert viol.hlines == (10.0, 50.0) and not viol.bands
    x, y = viol.lines[0]
    assert len(x) == 1200 // 20 and np.allclose(y, 200 / 3, atol=4)  # at least 20 positions per point


def test_moving_average_matches_direct():
    y = np.random.default_rng(0).normal(size=300).astype(np.float32)
    got = moving_average(y[100:], 10, y[91:100])
    ref = np.array([y[i - 9 : i + 1].mean() for i in range(100, 300)])
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def tmux_screen(name: str) -> str:
    """What the tmux session ``name`` shows now."""
    return subprocess.run(["tmux", "capture-pane", "-p", "-t", name], capture_output=True, text=True).stdout


def wait_for_file(path: Path, timeout: float) -> None:
    """Until ``path`` exists (the command line's exit code, written when it ends), at most ``timeout`` s."""
    t0 = time.time()
    while time.time() - t0 < timeout and not path.exists():
        time.sleep(0.2)


def start_in_tmux(name: str, tmp_path: Path, out: Path, size: tuple[int, int], options: str, env: str = "") -> None:
    """``ttt-tui SAMPLE --out OUT OPTIONS`` in a detached tmux session of ``size``; its exit code is written to
    ``tmp_path/exit`` when it ends (the session stays 30 s for the screen to be read)."""
    cmd = (
        f"cd {ROOT} && {env}PYTHONPATH={ROOT} {sys.executable} -m ttt_tui.cli {SAMPLE} --out {out} {options}; "
        f"echo EXIT=$? > {tmp_path / 'exit'}; sleep 30"
    )
    w, h = size
    subprocess.run(["tmux", "new-session", "-d", "-x", str(w), "-y", str(h), "-s", name, cmd], check=True)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (installed by .ci/run)")
@pytest.mark.parametrize("width,height", [(200, 60), (80, 24)])
def test_end_to_end_in_tmux(tmp_path, width, height):
    """The real command in a real terminal, a big one and an 80x24 SSH pane: read the screen (state, report
    folder, every layer, a chart), quit with q, check the report."""
    name = f"ttt-e2e-{os.getpid()}-{width}"
    out = tmp_path / "rep"
    start_in_tmux(name, tmp_path, out, (width, height), "--torch-device cpu")
    try:
        screen, t0 = "", time.time()
        # the model runs before the screen opens (its child makes the log first): the 25 s sample can be
        # FINISHED before the first charts are drawn (within a second), so wait for the charts' captions too
        while time.time() - t0 < 60 and not (
            "FINISHED" in screen and "report:" in screen and "seconds of audio" in screen
        ):
            time.sleep(0.5)
            screen = tmux_screen(name)
        assert "FINISHED" in screen, screen
        assert screen.count("HEALTHY") >= 3 and "layer 2" in screen and "seconds of audio" in screen, screen
        assert f"report: {out}"[: width - 30] in screen, screen
        assert "Traceback" not in screen
        subprocess.run(["tmux", "send-keys", "-t", name, "q"], check=True)
        wait_for_file(tmp_path / "exit", 20)
        assert (tmp_path / "exit").read_text().strip() == "EXIT=0"
        time.sleep(2)  # multiprocessing's resource tracker spoke after the process had gone (13 leaked semaphores)
        # what the quit leaves in the terminal: one line on stdout, nothing on stderr (no warning, no traceback)
        left = "".join(line for line in tmux_screen(name).splitlines() if line.strip())
        assert left == f"report written to {out}/", left
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)
    doc = json.loads((out / "report.json").read_text())
    assert doc["run"]["interrupted"] is False
    assert {p.name for p in out.iterdir()} >= {
        "dashboard.svg",
        "ttt_diagnostic_report.txt",
        "losses.csv",
        "figure5_layer0.png",
    }


def test_exit_on_finish(tmp_path):
    async def scenario():
        app = make_app(tmp_path, exit_on_finish=True)
        async with app.run_test(size=(120, 40)) as pilot:
            t0 = time.time()
            while app.is_running and time.time() - t0 < 30:
                await pilot.pause(0.2)
        return app.return_code

    assert asyncio.run(scenario()) == 0
    assert json.loads((tmp_path / "rep" / "report.json").read_text())["run"]["interrupted"] is False


def test_ascii_markers_tell_series_apart_without_colour(tmp_path, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")

    async def scenario():
        app = make_app(tmp_path)
        async with app.run_test(size=(160, 50)) as pilot:
            await wait_for(pilot, lambda: app.finished_handled)
            await pilot.pause(0.3)
            assert app.markers == ("*", "+", ".")
            counters = str(list(app.query(LayerPanel))[0].query_one(".counters").render())
            svg = app.export_screenshot()
        return counters, svg

    counters, svg = asyncio.run(scenario())
    assert "l0 (*)" in counters and "lprev (+)" in counters and "lafter (.)" in counters
    assert "*" in svg and "+" in svg


def test_dashboard_crash_still_writes_report_and_exits_1(tmp_path, monkeypatch, capsys):
    """If the app itself fails, the run still ends with the report, one line on stderr and exit code 1."""
    import textual.app

    from ttt_tui.tui import app as app_mod
    from ttt_tui.tui.run import run_dashboard

    def broken(*a, **k):
        raise RuntimeError("chart exploded")

    monkeypatch.setattr(app_mod, "chart_series", broken)
    original_run = textual.app.App.run
    monkeypatch.setattr(textual.app.App, "run", lambda self, **k: original_run(self, headless=True, size=(200, 60)))
    args = build_parser().parse_args(
        # paced: the run is still going when the app fails (its model runs before the app's first frame)
        [str(SAMPLE), "--out", str(tmp_path / "rep"), "--torch-device", "cpu", "--no-plots", "--realtime"]
    )
    assert run_dashboard(RunSettings.from_args(args), exit_on_finish=True) == 1
    err = capsys.readouterr().err
    assert "ttt-tui: internal error in the dashboard: RuntimeError: chart exploded" in err
    assert json.loads((tmp_path / "rep" / "report.json").read_text())["run"]["interrupted"] is True


def test_dashboard_with_the_process_engine(tmp_path):
    """The engine real runs use (inference in a child): starts with an empty history, then fills and ends."""

    async def scenario():
        app = make_app(tmp_path, live=True)
        async with app.run_test(size=(200, 60)) as pilot:
            await wait_for(pilot, lambda: app.finished_handled, timeout=60)
            await pilot.pause(0.3)
            return str(app.query_one("#header").render()), [p.redraws for p in app.query(LayerPanel)]

    header, redraws = asyncio.run(scenario())
    assert "FINISHED" in header and all(r >= 1 for r in redraws)
    doc = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert doc["run"]["interrupted"] is False and doc["layers"]["2"]["n_positions"] == 1235


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (installed by .ci/run)")
@pytest.mark.parametrize("sig,code", [("TERM", 143), ("INT", 130), ("HUP", 129)])
def test_dashboard_killed_by_a_signal_exits_with_its_code(tmp_path, sig, code):
    """kill -TERM / -INT / -HUP to the dashboard's process: the report of what was seen, then 143 / 130 / 129
    (not 1), and no lock left in the folder (SIGHUP leaves at once: the terminal is gone)."""
    name = f"ttt-sig-{os.getpid()}-{sig}"
    out = tmp_path / "rep"
    start_in_tmux(name, tmp_path, out, (200, 60), "--realtime --torch-device cpu")
    try:
        screen, t0 = "", time.time()
        while time.time() - t0 < 60 and "RUNNING" not in screen:
            time.sleep(0.3)
            screen = tmux_screen(name)
        assert "RUNNING" in screen, screen
        time.sleep(1.0)
        # the UI process (the inference child is a spawned interpreter with another command line)
        pids = subprocess.run(["pgrep", "-f", f"ttt_tui.cli {SAMPLE} --out {out}"], capture_output=True, text=True)
        (pid,) = [
            int(p)
            for p in pids.stdout.split()
            if Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")[0] == sys.executable.encode()
        ]  # not the shell that runs the command line
        os.kill(pid, getattr(__import__("signal"), f"SIG{sig}"))
        wait_for_file(tmp_path / "exit", 30)
        assert (tmp_path / "exit").read_text().strip() == f"EXIT={code}"
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)
    doc = json.loads((out / "report.json").read_text())
    assert doc["run"]["interrupted"] is True and doc["run"]["stop_reason"] == f"SIG{sig}"
    assert not (out / ".ttt-tui.lock").exists()


def test_any_keys_at_any_speed(tmp_path):
    """Keys faster than the screens can follow, '?' among them: the app survives and q still quits cleanly."""
    import random

    rng = random.Random(0)
    keys = ["question_mark"] * 6 + ["space", "f", "plus", "minus", "l", "s", "x", "e", "tab", "a", "escape", "enter"]

    async def scenario():
        app = make_app(tmp_path, "--realtime", "--block-seconds", "0.25")
        async with app.run_test(size=(200, 60)) as pilot:
            await wait_for(pilot, lambda: app.store.n_positions(0) > 5)
            await pilot.press("question_mark", "question_mark", "a", "b", "c")  # the case that crashed
            for _ in range(5):
                await pilot.press(*[rng.choice(keys) for _ in range(40)])
            await pilot.pause(0.5)
            assert app.is_running and app.return_code is None
            while len(app.screen_stack) > 1:
                await pilot.press("escape")
                await pilot.pause(0.1)
            await pilot.press("q")
            await pilot.pause(0.5)
        return app.return_code

    assert asyncio.run(scenario()) == 0


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (installed by .ci/run)")
def test_term_dumb_gets_the_headless_progress(tmp_path):
    """A terminal that cannot move its cursor (TERM=dumb: Emacs' shell, some CI consoles) gets progress lines
    and the report, not a broken screen."""
    name = f"ttt-dumb-{os.getpid()}"
    out = tmp_path / "rep"
    start_in_tmux(name, tmp_path, out, (120, 30), "--torch-device cpu --no-plots", env="TERM=dumb ")
    try:
        wait_for_file(tmp_path / "exit", 60)
        screen = tmux_screen(name)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)
    assert (tmp_path / "exit").read_text().strip() == "EXIT=0"
    assert f"report written to {out}/" in screen and "[finished]" in screen, screen
    assert (out / "report.json").exists() and not (out / "dashboard.svg").exists()


def test_the_chart_follows_a_live_run_from_the_first_second(tmp_path):
    """On the bundled 25 s sample fed at its own speed, the chart shows what the store holds within about a
    second, from the first second on (the redraw pacing once held the chart at 0.96 s while the counters said
    19 s), and its x axis ends where the data does."""

    async def scenario():
        app = make_app(tmp_path, "--realtime", "--block-seconds", "0.25", live=True)  # as real runs
        lags = []
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: app.store.n_positions(0) > 0, timeout=60)
            t0 = time.time()
            while time.time() - t0 < 6:
                await pilot.pause(0.25)
                panel = next(p for p in app.query(LayerPanel) if p.display and not p.has_class("collapsed"))
                shown = panel._args[0].shape[0] if panel._args else 0
                lags.append((app.store.n_positions(panel.layer_id) - shown) / app.store.frame_rate)
            await pilot.press("q")
        return lags

    lags = asyncio.run(scenario())
    assert max(lags) <= 1.6, lags  # at least one redraw a second, plus a block of 0.25 s in flight
