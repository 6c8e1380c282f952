"""The dashboard at the sizes our users work in (an 80x24 SSH pane, a tmux split, a big screen) after 12 minutes
of audio: the state and the report folder always visible, a chart that reads, and below the minimum size one
line that says what is needed. Runs on a saved run log (``ttt-tui open``), so every size sees the same data."""

import asyncio

import numpy as np
import pytest
from test_windows import stream

from ttt_tui.record.runlog import RunLogWriter
from ttt_tui.tui.app import DashboardApp, LayerPanel
from ttt_tui.tui.opened import OpenedRun

RATE = 50.0


@pytest.fixture(scope="module")
def twelve_minutes(tmp_path_factory):
    """A finished run log: 3 layers, 12 minutes; layer 0 stops learning at 200 s."""
    folder = tmp_path_factory.mktemp("run")
    rng = np.random.default_rng(0)
    data = {
        0: np.concatenate([stream(200, rng), stream(520, rng, improvement=0.0)]),
        1: stream(720, rng),
        2: stream(720, rng, noise=0.1),
    }
    header = {
        "input": "twelve.wav",
        "input_duration_s": 720.0,
        "model": "synthetic",
        "device": "cpu",
        "frame_rate": RATE,
        "layer_ids": [0, 1, 2],
        "signal_names": [],
    }
    log = RunLogWriter(folder, header)
    block = int(RATE)
    for start in range(0, data[0].shape[0], block):
        log.extend({k: v[start : start + block] for k, v in data.items()})
    log.status("finished", 720.0)
    log.close({"state": "finished", "stop_reason": None, "error": None, "audio_s": 720.0})
    return folder


def show(folder, size, tmp_path, keys=()):
    """Open the run at ``size``, wait until it is read, press ``keys``; returns what the test looks at."""

    async def scenario():
        run = OpenedRun(folder)
        app = DashboardApp(run, install_signals=False)
        async with app.run_test(size=size) as pilot:
            for _ in range(100):
                if app.engine.done:
                    break
                await pilot.pause(0.1)
            await pilot.pause(0.5)
            for k in keys:
                await pilot.press(k)
            app.refresh_status()
            app.refresh_charts(force=True)
            await pilot.pause(0.5)
            plots = [(p.layer_id, p.query_one("TimedPlot")) for p in app.query(LayerPanel)]
            selected = next(p for p in app.query(LayerPanel) if p.display and not p.has_class("collapsed"))
            plot = selected.query_one("TimedPlot")
            seen = {
                "plot": plot.render(),  # the selected chart as drawn (tests/test_axes.py reads it cell by cell)
                "plot_height": plot.size.height,
                "header": str(app.query_one("#header").render()),
                "charts": {i: plot.size.height for i, plot in plots if plot.display and plot.size.height},
                "counters": [str(p.query_one(".counters").render()) for p in app.query(LayerPanel)],
                "captions": [p.border_subtitle for p in app.query(LayerPanel)],  # the view and the x axis
                "findings": str(app.query_one("#findings-text").render()),
                "too_small": app.screen.has_class("too-small"),
                "too_small_text": str(app.query_one("#too-small").render()),
                "compact": app.compact,
            }
            app.save_screenshot(filename=f"dash_{size[0]}x{size[1]}.svg", path=str(tmp_path))
            await pilot.press("q")
        run.reader.close()
        return seen

    return asyncio.run(scenario())


def test_200x60_every_layer_has_a_readable_chart(twelve_minutes, tmp_path):
    seen = show(twelve_minutes, (200, 60), tmp_path)
    assert not seen["compact"] and sorted(seen["charts"]) == [0, 1, 2]
    assert min(seen["charts"].values()) >= 8
    assert "FINISHED" in seen["header"] and f"report: {twelve_minutes}/" in seen["header"]
    assert "change: layer 0: not learning from 03:" in seen["findings"]
    assert "NOT_LEARNING" in seen["counters"][0] and "last 30 s:" in seen["counters"][0]


@pytest.mark.parametrize("size", [(120, 40), (100, 30), (80, 24)])
def test_small_terminals_one_chart_and_one_line_per_other_layer(twelve_minutes, tmp_path, size):
    seen = show(twelve_minutes, size, tmp_path)
    assert seen["compact"] and list(seen["charts"]) == [0]  # the selected layer's chart
    assert seen["charts"][0] >= (5 if size[1] <= 24 else 10)
    assert seen["counters"][1].startswith("layer 1 ") and "\n" not in seen["counters"][1]
    header = seen["header"].splitlines()
    assert header[0].startswith(" FINISHED ") and "report: " in header[1]
    seen = show(twelve_minutes, size, tmp_path, keys=("tab",))  # tab: the next layer gets the chart
    assert list(seen["charts"]) == [1]


def test_below_the_minimum_one_line_says_what_is_needed(twelve_minutes, tmp_path):
    seen = show(twelve_minutes, (40, 12), tmp_path)
    assert seen["too_small"] and "at least 60x18 (this one: 40x12)" in seen["too_small_text"]


def test_the_views_gains_and_violations(twelve_minutes, tmp_path):
    seen = show(twelve_minutes, (200, 60), tmp_path, keys=("v",))
    assert "improvement lprev-lafter" in seen["counters"][0] and "benefit l0-lafter" in seen["counters"][0]
    seen = show(twelve_minutes, (200, 60), tmp_path, keys=("v", "v"))
    assert "ordering violations %" in seen["counters"][0]
    assert (tmp_path / "dash_200x60.svg").exists()


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (200, 60)])
def test_nothing_cut_off(twelve_minutes, size):
    """Every layer is named in the findings (or a last line says how many lines are hidden), the footer's
    keys fit (q quit and ? for all keys in view), and the help fits the screen, its last line included."""
    from textual.containers import VerticalScroll
    from textual.widgets import Footer

    from ttt_tui.tui.app import HelpScreen

    async def scenario():
        run = OpenedRun(twelve_minutes)
        app = DashboardApp(run, install_signals=False)
        async with app.run_test(size=size) as pilot:
            for _ in range(100):
                if app.engine.done and app.finished_handled:
                    break
                await pilot.pause(0.1)
            await pilot.pause(0.5)
            app.refresh_status()
            findings = str(app.query_one("#findings-text").render())
            box = app.query_one("#findings").region
            footer = app.query_one(Footer).region
            screen = app.export_screenshot()
            await pilot.press("question_mark")
            await pilot.pause(0.3)
            assert isinstance(app.screen, HelpScreen)
            scroll = app.screen.query_one(VerticalScroll)
            help_fits = scroll.max_scroll_y == 0 and scroll.region.bottom <= size[1]
            await pilot.press("z")
            await pilot.press("q")
        run.reader.close()
        return findings, box, footer, screen, help_fits

    findings, box, footer, screen, help_fits = asyncio.run(scenario())
    lines = findings.splitlines()
    assert len(lines) <= box.height - 2, (lines, box)
    import re

    named = set()
    for x in lines:
        for m in re.finditer(r"layers? ((?:\d+, )*\d+):", x):
            named |= {int(k) for k in m[1].split(", ")}
    if size[1] >= 30:  # every layer has a line
        assert named == {0, 1, 2}, lines
    else:  # 2 rows: the first line, and how many more there are
        assert len(lines) == 2 and re.fullmatch(r"… \d+ more lines?: the box scrolls; all are in the report", lines[1])
    assert footer.bottom == size[1] and "quit" in screen and "all&#160;keys" in screen
    assert help_fits
