"""Min/max decimation: about two points per output column, keeping every spike (for charts and PNGs)."""

from __future__ import annotations

import numpy as np


def minmax_decimate(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Reduce (x, y) to at most ``max_points`` points: per bucket the min and the max of y, in x order.
    Non-finite values are dropped first."""
    keep = np.isfinite(y)
    if not keep.all():
        x, y = x[keep], y[keep]
    n = y.shape[0]
    if n <= max_points:
        return x, y
    size = -(-n // max(1, max_points // 2))  # positions per bucket
    buckets = -(-n // size)
    pad = buckets * size - n  # < size: only the last bucket is partly padding
    yb = np.concatenate([y, np.full(pad, np.nan)]).reshape(buckets, size)
    imin = np.nanargmin(yb, axis=1)
    imax = np.nanargmax(yb, axis=1)
    base = np.arange(buckets) * size
    lo, hi = np.minimum(imin, imax) + base, np.maximum(imin, imax) + base
    idx = np.stack([lo, hi], 1).reshape(-1)
    return x[idx], y[idx]
