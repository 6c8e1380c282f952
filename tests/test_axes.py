"""Charts a user can read values off: known series drawn at the sizes our users work in, in every view, read
back from the screen (each cell's character and colour), and found on the row whose label names their value,
within half a row. The zero line and the 10 %/50 % lines too."""

import asyncio
import json
import math

import numpy as np
import pytest
from rich.style import Style
from test_tui_sizes import show as show_dashboard

from ttt_tui.record.runlog import RunLogWriter
from ttt_tui.tui.axes import CHROME_ROWS, make_axis, nice_at_least, shared_zero_axes
from ttt_tui.tui.texts import COLOURS, VIEW_COLOURS

RATE = 50.0
SIZES = [(60, 18), (80, 24), (120, 40), (200, 60)]
GREY = (110, 110, 110)  # the reference lines
AXIS = "┤│┼├"


def write_run(folder, layers: dict, seconds: float):
    header = {
        "input": "known.wav",
        "input_duration_s": seconds,
        "model": "synthetic",
        "device": "cpu",
        "frame_rate": RATE,
        "layer_ids": sorted(layers),
        "signal_names": [],
    }
    folder.mkdir(parents=True, exist_ok=True)
    log = RunLogWriter(folder, header)
    n = next(iter(layers.values())).shape[0]
    for start in range(0, n, int(RATE)):
        log.extend({k: v[start : start + int(RATE)] for k, v in layers.items()})
    log.close({"state": "finished", "stop_reason": None, "error": None, "audio_s": seconds})
    return folder


def read_chart(text) -> dict:
    """The chart as a user reads it (``text``: a plot's rendered rich Text): per canvas row, its left and
    right labels, and per colour the rows where that colour is drawn (not blank, not the frame)."""
    rows, colours = [], {}
    for line in text.split("\n"):
        plain = line.plain
        axis_cols = [i for i, ch in enumerate(plain) if ch in AXIS]
        if len(axis_cols) < 2:  # title, the box's top and bottom, x labels, x label
            continue
        left, right = axis_cols[0], axis_cols[-1]
        r = len(rows)
        rows.append((plain[:left].strip() or None, plain[right + 1 :].strip() or None))
        for span in line.spans:
            style = span.style if isinstance(span.style, Style) else Style.parse(str(span.style))
            if style.color is None or style.color.triplet is None:
                continue
            rgb = tuple(style.color.triplet)
            cells = plain[max(span.start, left + 1) : min(span.end, right)]
            if cells.strip():
                colours.setdefault(rgb, set()).add(r)
    return {"labels": rows, "colours": colours}


def row_values(labels: list, side: int, log: bool = False) -> list:
    """The value of every canvas row (top first) from its labels: they must sit at equal steps (each names
    the value at its row), and the rows between read by that step."""
    pts = [(i, float(lab[side])) for i, lab in enumerate(labels) if lab[side] is not None]
    assert len(pts) >= 2, labels
    ys = [(i, math.log10(v) if log else v) for i, v in pts]
    step = (ys[-1][1] - ys[0][1]) / (ys[-1][0] - ys[0][0])
    for i, y in ys:  # a label slid off its row would break the equal steps
        assert abs(ys[0][1] + (i - ys[0][0]) * step - y) <= abs(step) * 0.02 + 1e-9, (pts, labels)
    return [ys[0][1] + (i - ys[0][0]) * step for i in range(len(labels))], abs(step)


def assert_on_its_row(chart, colour, value, side=0, log=False, what=""):
    values, step = row_values(chart["labels"], side, log)
    rows = chart["colours"].get(colour)
    assert rows, (what, colour, chart["colours"].keys())
    target = math.log10(value) if log else value
    for r in rows:  # every row the series is drawn on
        assert abs(values[r] - target) <= step / 2 + 1e-9, (what, r, values[r], value, step, chart["labels"])


def show(folder, size, tmp_path, keys=()):
    """The selected chart of the dashboard on a saved run at ``size`` after ``keys``, read back."""
    seen = show_dashboard(folder, size, tmp_path, keys)
    return read_chart(seen["plot"]), seen["plot_height"]


@pytest.fixture(scope="module")
def constants(tmp_path_factory):
    """Every position l0 = 2, lprev = 1.01, lafter = 1: benefit 1.0 and a per-step improvement of 0.01."""
    n = int(60 * RATE)
    data = np.tile(np.array([[2.0, 1.01, 1.0]], np.float32), (n, 1))
    return write_run(tmp_path_factory.mktemp("const"), {0: data}, 60.0)


@pytest.mark.parametrize("size", SIZES)
def test_losses_on_the_rows_that_name_them(constants, size, tmp_path):
    chart, height = show(constants, size, tmp_path)
    assert len(chart["labels"]) == height - CHROME_ROWS
    assert_on_its_row(chart, COLOURS[0], 2.0, what="l0")
    assert_on_its_row(chart, COLOURS[2], 1.0, what="lafter")  # lprev (1.01) is drawn over by lafter's row


@pytest.mark.parametrize("size", SIZES)
def test_log_axis_labels_name_the_loss(constants, size, tmp_path):
    chart, _ = show(constants, size, tmp_path, keys=("l",))
    assert_on_its_row(chart, COLOURS[0], 2.0, log=True, what="l0")
    assert_on_its_row(chart, COLOURS[2], 1.0, log=True, what="lafter")


@pytest.mark.parametrize("size", SIZES)
def test_gains_improvement_on_its_own_scale(constants, size, tmp_path):
    """The improvement (0.01) reads off the right scale, away from the zero line; the benefit (1.0) off the
    left; one zero line on the row both scales call 0."""
    chart, _ = show(constants, size, tmp_path, keys=("v",))
    improvement, benefit = VIEW_COLOURS["gains"]
    assert_on_its_row(chart, improvement, 0.01, side=1, what="improvement")
    assert_on_its_row(chart, GREY, 0.0, side=0, what="zero line (left)")
    assert_on_its_row(chart, GREY, 0.0, side=1, what="zero line (right)")
    assert not chart["colours"][improvement] & chart["colours"][GREY]  # its sign reads at a glance


@pytest.mark.parametrize("size", SIZES)
def test_gains_no_learning_sits_on_the_zero_line(tmp_path, size):
    """An update that changes nothing (lprev = lafter, an inner learning rate of 0): the improvement exactly
    on the zero row, never under it; the benefit (1.0) read off the left scale."""
    n = int(60 * RATE)
    data = np.tile(np.array([[2.0, 1.0, 1.0]], np.float32), (n, 1))
    chart, _ = show(write_run(tmp_path / "run", {0: data}, 60.0), size, tmp_path, keys=("v",))
    improvement, benefit = VIEW_COLOURS["gains"]
    assert_on_its_row(chart, improvement, 0.0, side=1, what="improvement")
    assert_on_its_row(chart, benefit, 1.0, side=0, what="benefit")


@pytest.mark.parametrize("size", SIZES)
def test_violation_rate_and_its_reference_lines(tmp_path, size):
    n = int(60 * RATE)
    data = np.tile(np.array([[2.0, 1.5, 1.0]], np.float32), (n, 1))
    data[::4, 2] = 3.0  # every 4th position violates: 25 %
    chart, _ = show(write_run(tmp_path / "run", {0: data}, 60.0), size, tmp_path, keys=("v", "v"))
    assert_on_its_row(chart, VIEW_COLOURS["violations"][0], 25.0, what="violation rate")
    values, step = row_values(chart["labels"], 0)
    grey = sorted(chart["colours"][GREY])
    for level in (10.0, 50.0):
        assert any(abs(values[r] - level) <= step / 2 for r in grey), (level, grey, chart["labels"])


@pytest.mark.parametrize("size", [(80, 24), (200, 60)])
def test_a_ramp_spans_the_rows_of_its_values(tmp_path, size):
    n = int(120 * RATE)
    ramp = np.linspace(0.5, 2.5, n, dtype=np.float32)
    data = np.stack([ramp, np.zeros_like(ramp), np.zeros_like(ramp)], 1)  # lprev, lafter: out of its way
    chart, _ = show(write_run(tmp_path / "run", {0: data}, 120.0), size, tmp_path)
    values, step = row_values(chart["labels"], 0)
    rows = sorted(chart["colours"][COLOURS[0]])
    assert abs(values[rows[0]] - 2.5) <= step / 2 + 0.02 and abs(values[rows[-1]] - 0.5) <= step / 2 + 0.02
    assert rows == list(range(rows[0], rows[-1] + 1))  # a line, no gap


def test_axis_centres_are_exact_in_plotext_geometry():
    """The value at each row's centre, put through plotext's own mapping (sub-rows for the series, rows for
    ticks and lines), lands on that row."""
    for rows in (3, 5, 9, 13, 40, 75):
        for f in (1, 2, 4):
            ax = make_axis(0.137, 2.93, rows, f, include=(0.0,))
            for r in range(rows):
                v = ax.centre(r)
                sub = math.floor(round(0.5 + (f * rows - 1) * (v - ax.lo) / (ax.hi - ax.lo), 8))
                tick = math.floor(round(0.5 + (rows - 1) * (v - ax.lo) / (ax.hi - ax.lo), 8))
                assert sub // f == r and tick == r, (rows, f, r)
            assert ax.centre(0) <= 0.0 and ax.centre(rows - 1) >= 2.93


def test_shared_zero_row_and_nice_pitches():
    imp, ben = shared_zero_axes([(-0.004, 0.012), (0.0, 1.7)], 10)
    assert imp.row_of(0.0) == pytest.approx(ben.row_of(0.0))
    assert imp.pitch <= 0.004 and ben.pitch <= 0.4
    assert [nice_at_least(x) for x in (0.013, 0.9, 7.1, 160)] == [0.015, 1.0, 8.0, 200.0]


def test_compare_screen_benefit_of_a_run_that_does_not_learn_is_zero(tmp_path):
    """Two runs side by side: one whose benefit l0 - lafter is 1.0, one that does not learn (benefit exactly
    0, as with --lr-scale 0): each on the row that names its value (0 was drawn at -0.21)."""
    from ttt_tui.report.compare import compare_runs
    from ttt_tui.tui.compare_view import RUN_COLOURS, CompareApp

    n = int(60 * RATE)
    learns = np.tile(np.array([[2.0, 1.2, 1.0]], np.float32), (n, 1))
    frozen = np.tile(np.array([[2.0, 2.0, 2.0]], np.float32), (n, 1))
    a = write_run(tmp_path / "a", {0: learns}, 60.0)
    b = write_run(tmp_path / "b", {0: frozen}, 60.0)
    cmp = compare_runs([a, b])

    async def scenario():
        app = CompareApp(cmp, tmp_path / "out")
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause(0.5)
            app.draw()
            await pilot.pause(0.3)
            charts = {i: read_chart(app.query_one(f"#{i}").render()) for i in ("benefit", "improvement")}
            await pilot.press("q")
        return charts

    charts = asyncio.run(scenario())
    rgb = RUN_COLOURS[:2]
    assert_on_its_row(charts["benefit"], rgb[0], 1.0, what="benefit of the run that learns")
    assert_on_its_row(charts["benefit"], rgb[1], 0.0, what="benefit of the run that does not learn")
    assert_on_its_row(charts["improvement"], rgb[0], 0.2, what="improvement of the run that learns")
    assert_on_its_row(charts["improvement"], rgb[1], 0.0, what="improvement of the run that does not learn")


def test_eval_screen_axis_and_band_never_below_zero(tmp_path):
    """The eval screen's averaged losses on the rows that name them; the 95 % band over files cut at 0."""
    from ttt_tui.evaluation.inputs import INPUTS_NAME, run_name
    from ttt_tui.tui.eval_view import EvalApp

    n = int(30 * RATE)
    files = []
    for k, level in enumerate((0.05, 0.15, 0.25)):  # lafter spread over files: its band would dip below 0
        data = np.tile(np.array([[2.0, 1.0, level]], np.float32), (n, 1))
        path = tmp_path / f"f{k}.wav"
        files.append(str(path))
        write_run(tmp_path / "e" / "runs" / run_name(k, path), {0: data}, 30.0)
    (tmp_path / "e" / INPUTS_NAME).write_text(json.dumps({"files": files}))

    async def scenario():
        app = EvalApp(tmp_path / "e")
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause(2.5)
            app.draw_chart()
            await pilot.pause(0.3)
            chart = read_chart(app.query_one("#chart").render())
            await pilot.press("q")
        return chart

    chart = asyncio.run(scenario())
    assert_on_its_row(chart, COLOURS[0], 2.0, what="l0")
    assert_on_its_row(chart, COLOURS[1], 1.0, what="lprev")
    values, step = row_values(chart["labels"], 0)
    drawn = set().union(*chart["colours"].values())
    assert min(values[r] for r in drawn) >= -step / 2, (chart["labels"], drawn)


def test_png_bins_are_means_and_the_lower_panel_has_zero_aligned_scales():
    """The report PNG of a long run: per-bin means (the lines) and 10-90 % spreads (the bands) equal a direct
    computation; the benefit's and the improvement's scales put 0 at the same height."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ttt_tui.report.plots import BINS, binned, zero_aligned

    rng = np.random.default_rng(0)
    y = rng.normal(1.0, 0.3, (BINS * 7 + 13, 3))
    y[5, 1] = np.nan
    centre, mean, lo, hi = binned(y)
    edges = np.linspace(0, y.shape[0], BINS + 1).astype(int)
    for b in (0, 1, 77, BINS - 1):
        seg = y[edges[b] : edges[b + 1]]
        np.testing.assert_allclose(mean[b], np.nanmean(seg, 0))
        np.testing.assert_allclose(lo[b], np.nanpercentile(seg, 10, axis=0))
        np.testing.assert_allclose(hi[b], np.nanpercentile(seg, 90, axis=0))
        assert centre[b] == (edges[b] + edges[b + 1] - 1) / 2
    assert binned(y[: 4 * BINS]) is None  # short: every position is drawn

    fig, left = plt.subplots()
    right = left.twinx()
    zero_aligned(left, right, np.array([0.2, 1.7]), np.array([-0.004, 0.012]))
    (a, b), (c, d) = left.get_ylim(), right.get_ylim()
    assert -a / (b - a) == pytest.approx(-c / (d - c)) and a < 0 < b and c < 0 < d and d >= 0.012 and b >= 1.7
    plt.close(fig)


@pytest.mark.parametrize("size", [(80, 24), (200, 60)])
def test_gains_scale_is_not_squashed_by_the_first_steps(tmp_path, size):
    """The first tokens' large steps (improvement 1.5 for 2 s, as a fresh stream gives) must not squash a
    steady improvement of 0.01 onto the zero row: it reads above 0 on its own scale."""
    n = int(60 * RATE)
    data = np.tile(np.array([[2.0, 1.01, 1.0]], np.float32), (n, 1))
    data[: int(2 * RATE), 1] = 2.5  # lprev - lafter = 1.5 at first
    chart, _ = show(write_run(tmp_path / "run", {0: data}, 60.0), size, tmp_path, keys=("v",))
    improvement, _ = VIEW_COLOURS["gains"]
    values, step = row_values(chart["labels"], 1)
    zero = [r for r in range(len(values)) if abs(values[r]) <= step / 2]
    steady = [r for r in range(len(values)) if abs(values[r] - 0.01) <= step / 2]
    assert steady and zero and steady != zero, (values, step)  # 0.01 has a row of its own
    assert set(steady) & chart["colours"][improvement]
