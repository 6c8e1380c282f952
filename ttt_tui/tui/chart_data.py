"""From a layer's stored rows to the few points a chart draws: window, smoothing, decimation.

plotext's cost grows with the number of points (seconds at 100k), so whatever the history length the chart
gets about two points per terminal column (min/max per bucket, spikes kept).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..decimate import minmax_decimate

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
    """-> (x label, [(x, y) for l0, lprev, lafter]) with at most ~2 points per column each."""
    n = data.shape[0] if view.follow or view.frozen_n is None else min(view.frozen_n, data.shape[0])
    window = view.window_s
    start = 0 if window is None else max(0, n - int(window * frame_rate))
    pos = np.arange(start, n)
    x = pos / frame_rate if view.x_seconds else pos.astype(np.float64)
    out = []
    for col in range(3):
        y = data[start:n, col]
        if view.smooth:
            y = moving_average(y, SMOOTH_TOKENS, data[max(0, start - SMOOTH_TOKENS + 1) : start, col])
        if view.log_y:  # plotted as log10 of the loss (plotext's own log axis fails on its margins)
            y = np.log10(np.maximum(y, 1e-12))
        out.append(minmax_decimate(x, y, max(8, 2 * columns)))
    return ("seconds of audio" if view.x_seconds else "token"), out
