"""From a layer's stored rows to the few points a chart draws: window, view, smoothing, decimation.

plotext's cost grows with the number of points (seconds at 100k), so whatever the history length a chart gets
about one line point per terminal column: the mean of the positions under that column, drawn as a line (the
level stays readable after an hour, where min/max points became three clouds of dots), over a faint band of
each column's minimum and maximum (the spread, spikes kept). Three views of a layer: the three losses; the
gains (improvement lprev - lafter, benefit l0 - lafter: the differences the eye cannot read off the first);
the ordering-violation rate per column.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..analysis.decimate import column_summary

ZOOM_LEVELS = (None, 600.0, 120.0, 30.0, 10.0)  # seconds shown; None = the whole run
SMOOTH_TOKENS = 10  # the paper's moving average
VIEWS = ("losses", "gains", "violations")
VIEW_SERIES = {
    "losses": ("l0", "lprev", "lafter"),
    "gains": ("improvement lprev-lafter", "benefit l0-lafter"),
    "violations": ("violations %",),
}
MIN_PER_VIOLATION_POINT = 20  # positions per point of the violation rate (a rate of fewer is noise)


@dataclass
class ViewSettings:
    zoom: int = 0  # index into ZOOM_LEVELS
    follow: bool = True
    frozen_n: int | None = None  # rows shown while not following
    log_y: bool = False
    smooth: bool = False
    x_seconds: bool = True
    mode: str = "losses"  # one of VIEWS

    @property
    def window_s(self) -> float | None:
        return ZOOM_LEVELS[self.zoom]

    def key(self) -> tuple:
        return (self.zoom, self.follow, self.frozen_n, self.log_y, self.smooth, self.x_seconds, self.mode)


def moving_average(y: np.ndarray, k: int, pre: np.ndarray | None = None) -> np.ndarray:
    """Trailing k-token mean; ``pre`` are the rows before the window so that its first points are full."""
    full = y if pre is None else np.concatenate([pre, y])
    c = np.cumsum(np.concatenate([[0.0], np.nan_to_num(full.astype(np.float64))]))
    idx = np.arange(len(full) - len(y), len(full))
    lo = np.maximum(idx + 1 - k, 0)
    return ((c[idx + 1] - c[lo]) / (idx + 1 - lo)).astype(np.float32)


@dataclass
class Chart:
    """What one chart draws: per series a line (column means, or the samples when they fit) and, behind it, a
    faint band (column minima and maxima as points; empty when the line already shows every sample)."""

    xlabel: str
    lines: list  # [(x, y)] per series
    bands: list  # [(x, y)] per series, or []
    names: tuple
    hlines: tuple = ()  # reference lines (0 for the gains; 10 and 50 % for the violations)
    decimated: bool = False  # more positions than columns: the lines are means
    x_range: tuple = (0.0, 1.0)  # the window shown, in x units: its first position and its end


def _derive(rows: np.ndarray, mode: str) -> np.ndarray:
    if mode == "gains":
        return np.stack([rows[:, 1] - rows[:, 2], rows[:, 0] - rows[:, 2]], 1)
    if mode == "violations":
        ok = (rows[:, 0] >= rows[:, 1]) & (rows[:, 1] >= rows[:, 2])
        return (100.0 * ~ok).astype(np.float32)[:, None]
    return rows


def chart_series(
    data: np.ndarray, frame_rate: float, view: ViewSettings, columns: int, unit: str | None = None
) -> Chart:
    """The chart of one layer's rows ``data`` [n, 3] in ``view``, for a plot ``columns`` wide; ``unit``: what a
    position is (a token run has no seconds)."""
    n = data.shape[0] if view.follow or view.frozen_n is None else min(view.frozen_n, data.shape[0])
    window = view.window_s
    start = 0 if window is None else max(0, n - int(window * frame_rate))
    mode = view.mode
    raw = _derive(data[start:n], mode)
    line = raw
    if view.smooth and mode != "violations":
        pre = _derive(data[max(0, start - SMOOTH_TOKENS + 1) : start], mode)
        line = np.stack([moving_average(raw[:, c], SMOOTH_TOKENS, pre[:, c]) for c in range(raw.shape[1])], 1)
    if view.log_y and mode == "losses":  # plotted as log10 of the loss (plotext's own log axis fails on its margins)
        smoothed = line is not raw
        raw = np.log10(np.maximum(raw, 1e-12))
        line = np.log10(np.maximum(line, 1e-12)) if smoothed else raw
    buckets = max(4, columns)
    if mode == "violations":
        buckets = max(1, min(buckets, raw.shape[0] // MIN_PER_VIOLATION_POINT))
    decimated = raw.shape[0] > buckets
    scale = 1.0 / frame_rate if view.x_seconds else 1.0
    lines, bands = [], []
    if raw.shape[0]:
        summary = column_summary(raw, buckets)  # one pass: the band (min, max) and the line (mean)
        means = summary if line is raw else column_summary(line, buckets)
        for c in range(raw.shape[1]):
            ok = means["count"][c] > 0
            lines.append(((means["centre"][ok] + start) * scale, means["mean"][c, ok]))
            if mode != "violations" and (decimated or view.smooth):
                ok = summary["count"][c] > 0
                x = np.stack([summary["first"][ok], summary["last"][ok]], 1).reshape(-1)
                y = np.stack([summary["lo"][c, ok], summary["hi"][c, ok]], 1).reshape(-1)
                bands.append(((x + start) * scale, y))
    else:
        lines = [(np.zeros(0), np.zeros(0, np.float32)) for _ in range(raw.shape[1])]
    hlines = {"gains": (0.0,), "violations": (10.0, 50.0)}.get(mode, ())
    xlabel = "seconds of audio" if view.x_seconds and unit != "token" else "token"
    x_range = (start * scale, max(n, start + 1) * scale)
    return Chart(xlabel, lines, bands, VIEW_SERIES[mode], hlines, decimated, x_range)
