"""From a layer's stored rows to the few points a chart draws: window, smoothing, decimation.

plotext's cost grows with the number of points (seconds at 100k), so whatever the history length the chart
gets about two points per terminal column (min/max per bucket, spikes kept).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..decimate import minmax_columns

ZOOM_LEVELS = (None, 600.0, 120.0, 30.0, 10.0)  # seconds shown; None = the whole run
SMOOTH_TOKENS = 10  # the paper's moving average


@dataclass
class ViewSettings:
    zoom: int = 0  # index into ZOOM_LEVELS
    follow: bool = True
    frozen_n: int | None = None  # rows shown while not following
    log_y: bool = False
    smooth: bool = False
    x_seconds: bool = True

    @property
    def window_s(self) -> float | None:
        return ZOOM_LEVELS[self.zoom]

    def key(self) -> tuple:
        return (self.zoom, self.follow, self.frozen_n, self.log_y, self.smooth, self.x_seconds)


def moving_average(y: np.ndarray, k: int, pre: np.ndarray | None = None) -> np.ndarray:
    """Trailing k-token mean; ``pre`` are the rows before the window so that its first points are full."""
    full = y if pre is None else np.concatenate([pre, y])
    c = np.cumsum(np.concatenate([[0.0], np.nan_to_num(full.astype(np.float64))]))
    idx = np.arange(len(full) - len(y), len(full))
    lo = np.maximum(idx + 1 - k, 0)
    return ((c[idx + 1] - c[lo]) / (idx + 1 - lo)).astype(np.float32)


def chart_series(data: np.ndarray, frame_rate: float, view: ViewSettings, columns: int):
    """-> (x label, [(x, y) for l0, lprev, lafter], decimated) with at most ~2 points per column each;
    ``decimated``: the points are bucket minima and maxima, not consecutive samples."""
    n = data.shape[0] if view.follow or view.frozen_n is None else min(view.frozen_n, data.shape[0])
    window = view.window_s
    start = 0 if window is None else max(0, n - int(window * frame_rate))
    rows = data[start:n]
    if view.smooth:
        pre = data[max(0, start - SMOOTH_TOKENS + 1) : start]
        rows = np.stack([moving_average(rows[:, c], SMOOTH_TOKENS, pre[:, c]) for c in range(3)], 1)
    if view.log_y:  # plotted as log10 of the loss (plotext's own log axis fails on its margins)
        rows = np.log10(np.maximum(rows, 1e-12))
    buckets = max(4, columns)
    decimated = rows.shape[0] > 2 * buckets
    scale = 1.0 / frame_rate if view.x_seconds else 1.0
    out = []
    for pos, lo, hi in minmax_columns(rows, buckets):
        y = np.stack([lo, hi], 1).reshape(-1) if decimated else lo  # (min, max) pairs, or every point
        out.append(((pos + start) * scale, y))
    return ("seconds of audio" if view.x_seconds else "token"), out, decimated
