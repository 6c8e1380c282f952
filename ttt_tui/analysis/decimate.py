"""Min/max decimation: about two points per output column, keeping every spike (for charts and PNGs).

plotext's and matplotlib's cost grows with the number of points; a million-point history reduced to its
per-bucket minima and maxima looks the same and costs a few milliseconds (one contiguous pass)."""

from __future__ import annotations

import numpy as np


def minmax_columns(rows: np.ndarray, buckets: int):
    """Decimate the k columns of ``rows`` [n, k] together into about ``buckets`` buckets of consecutive rows.

    Returns, per column, (positions, minima, maxima): each bucket's min placed at its first row and its max at
    its last row; non-finite values are ignored (a bucket with none finite is dropped). With few rows
    (n <= 2 * buckets) every finite row is returned as its own (min = max) pair."""
    if rows.ndim == 1:
        rows = rows[:, None]
    n, k = rows.shape
    if n <= 2 * buckets:
        out = []
        for c in range(k):
            keep = np.isfinite(rows[:, c])
            idx = np.nonzero(keep)[0].astype(np.float64)
            out.append((idx, rows[keep, c], rows[keep, c]))
        return out
    size = -(-n // buckets)
    full = n // size
    # one transposed copy, then min/max along contiguous rows: numpy's fast path (2.6 ms per 1M x 3)
    blocks = np.ascontiguousarray(rows[: full * size].T).reshape(k, full, size)
    lo, hi = blocks.min(2), blocks.max(2)
    first = np.arange(full, dtype=np.float64) * size
    last = first + size - 1
    if full * size < n:  # the shorter last bucket
        lo = np.concatenate([lo, rows[full * size :].min(0)[:, None]], 1)
        hi = np.concatenate([hi, rows[full * size :].max(0)[:, None]], 1)
        first, last = np.append(first, full * size), np.append(last, n - 1)
    out = []
    for c in range(k):
        lc, hc = lo[c], hi[c]
        bad = np.nonzero(~(np.isfinite(lc) & np.isfinite(hc)))[0]
        for b in bad:  # NaN/Inf inside: only those buckets again, without the non-finite values
            seg = rows[int(first[b]) : int(last[b]) + 1, c]
            seg = seg[np.isfinite(seg)]
            lc[b], hc[b] = (seg.min(), seg.max()) if seg.size else (np.nan, np.nan)
        ok = np.isfinite(lc)
        out.append((np.stack([first[ok], last[ok]], 1).reshape(-1), lc[ok], hc[ok]))
    return out


def minmax_decimate(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """One series: at most ``max_points`` (x, y) points, each bucket's min then max (see ``minmax_columns``)."""
    ((pos, lo, hi),) = minmax_columns(np.asarray(y)[:, None], max(1, max_points // 2))
    if len(pos) == len(lo):  # few points: every finite one, once
        idx = pos.astype(np.int64)
        return x[idx], lo
    idx = pos.astype(np.int64)
    return x[idx], np.stack([lo, hi], 1).reshape(-1)


def column_summary(rows: np.ndarray, buckets: int) -> dict:
    """One pass over ``rows`` [n, k] cut into about ``buckets`` buckets of consecutive rows: per column and
    bucket the minimum, maximum and mean of the finite values, with each bucket's first and last row and centre.
    One transposed float32 copy, then contiguous reductions (about 3 ms per 1M x 3); only buckets that hold a
    NaN/Inf are reduced again without them (a bucket with none finite gets count 0). Returns arrays
    ``lo``, ``hi``, ``mean``, ``count`` [k, B] and ``first``, ``last``, ``centre`` [B]."""
    if rows.ndim == 1:
        rows = rows[:, None]
    n, k = rows.shape
    size = max(1, -(-n // max(1, buckets)))
    full = n // size
    blocks = np.ascontiguousarray(rows[: full * size].T, dtype=np.float32).reshape(k, full, size)
    lo, hi, total = blocks.min(2), blocks.max(2), blocks.sum(2)
    count = np.full((k, full), float(size))
    first = np.arange(full) * size
    if full * size < n:  # the shorter last bucket
        tail = np.asarray(rows[full * size :], dtype=np.float32)
        lo = np.concatenate([lo, tail.min(0)[:, None]], 1)
        hi = np.concatenate([hi, tail.max(0)[:, None]], 1)
        total = np.concatenate([total, tail.sum(0)[:, None]], 1)
        count = np.concatenate([count, np.full((k, 1), float(n - full * size))], 1)
        first = np.append(first, full * size)
    last = np.minimum(first + size, n) - 1
    for c, b in np.argwhere(~(np.isfinite(lo) & np.isfinite(hi) & np.isfinite(total))):
        seg = np.asarray(rows[first[b] : last[b] + 1, c], dtype=np.float32)
        fin = seg[np.isfinite(seg)]
        if fin.size:
            lo[c, b], hi[c, b], total[c, b], count[c, b] = fin.min(), fin.max(), fin.sum(), fin.size
        else:
            lo[c, b] = hi[c, b] = total[c, b] = np.nan
            count[c, b] = 0
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (total / count).astype(np.float32)
    return {
        "lo": lo,
        "hi": hi,
        "mean": mean,
        "count": count,
        "first": first.astype(np.float64),
        "last": last.astype(np.float64),
        "centre": (first + last) / 2.0,
    }


def column_means(rows: np.ndarray, buckets: int):
    """Per column of ``rows`` [n, k]: (positions, means) of about ``buckets`` buckets of consecutive rows, each
    mean over the bucket's finite values placed at the bucket's centre (a bucket with none finite is dropped).
    What a line chart draws once there are more rows than columns: the level, where min/max gives the spread."""
    if rows.ndim == 1:
        rows = rows[:, None]
    if rows.shape[0] == 0:
        return [(np.zeros(0), np.zeros(0, np.float32)) for _ in range(rows.shape[1])]
    s = column_summary(rows, buckets)
    out = []
    for c in range(rows.shape[1]):
        ok = s["count"][c] > 0
        out.append((s["centre"][ok], s["mean"][c, ok]))
    return out
