"""The outer loss over context: what our users read off their LibriLight evaluation (the loss at 8k / 16k / 24k
tokens and its slope, ``finetune/paper_metrics.py`` lines 1048-1072 in AlufRon/claude-web), made robust.

Theirs reads single positions of the curve averaged over files (``avg[8000]``) and a slope between two single
positions (``(avg[end] - avg[start]) / (end - start)``, start = min(8000, n // 2)). One position's cross-entropy
is one token's: noise of the order of the loss itself on one recording. Here a mark is the mean over the 1000
positions centred on it, and the slope is the least-squares fit over the same range as theirs, per 1000
positions: the same quantities, with the noise averaged out. The slope's 95 % interval comes from the means of 10
equal blocks of that range (neighbouring tokens are correlated; block means far less), so a trend is called a
trend only where the interval excludes zero.
"""

from __future__ import annotations

import numpy as np

MARKS = (8000, 16000, 24000)
HALF = 500  # a mark is the mean of the positions within [mark - HALF, mark + HALF)
BIN = 1000  # the by-position table: means of 1000 positions (theirs logs every 1k tokens)
MIN_SLOPE_POSITIONS = 100
BLOCKS = 10
T_975 = 2.306  # Student t, 97.5 %, 8 degrees of freedom (10 block means, 2 parameters)


def mark_name(m: int) -> str:
    return f"{m // 1000}k"


def slope_start(n: int) -> int:
    """Their slope starts at position min(8000, n // 2) (paper_metrics.py line 1056)."""
    return min(MARKS[0], n // 2)


def summary(values, frame_rate: float) -> dict:
    """Outer loss per position [n] (NaN where none) -> mean, marks, slope, means per 1000 positions."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    n = int(v.shape[0])
    fin = np.isfinite(v)
    out = {
        "n_positions": n,
        "duration_s": round(n / frame_rate, 3) if frame_rate else None,
        "mean": float(v[fin].mean()) if fin.any() else float("nan"),
        "first_bin": _mean(v[:BIN]),
        "last_bin": _mean(v[-BIN:]) if n else float("nan"),
        "at": {mark_name(m): (_mean(v[m - HALF : m + HALF]) if n > m else None) for m in MARKS},
    }
    start = slope_start(n)
    out["slope_from"] = start
    enough = n - start >= MIN_SLOPE_POSITIONS
    out["slope_per_1k"] = _slope(v[start:], start) * BIN if enough else float("nan")
    out["slope_ci95_per_1k"] = _block_ci(v[start:], start) * BIN if enough else float("nan")
    bins = [_mean(v[i : i + BIN]) for i in range(0, n, BIN)]
    out["by_1k"] = bins
    return out


def _mean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least squares of y on x over the finite y: (slope, residual sum of squares, sum of squared x deviations)."""
    ok = np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 2:
        return float("nan"), float("nan"), 0.0
    xc = x - x.mean()
    sxx = float((xc * xc).sum())
    if sxx <= 0:
        return float("nan"), float("nan"), 0.0
    b = float((xc * (y - y.mean())).sum() / sxx)
    resid = y - y.mean() - b * xc
    return b, float((resid * resid).sum()), sxx


def _slope(y: np.ndarray, start: int) -> float:
    """Least-squares slope of y against its positions."""
    return _fit(np.arange(start, start + y.shape[0], dtype=np.float64), y)[0]


def _block_ci(y: np.ndarray, start: int) -> float:
    """95 % half-width of the slope, from the regression of the means of ``BLOCKS`` equal blocks on their centres."""
    edges = np.linspace(0, y.shape[0], BLOCKS + 1).astype(int)
    xs = np.array([start + (a + b - 1) / 2 for a, b in zip(edges[:-1], edges[1:], strict=True)])
    ms = np.array([_mean(y[a:b]) for a, b in zip(edges[:-1], edges[1:], strict=True)])
    if np.isfinite(ms).sum() < 3:
        return float("nan")
    _, rss, sxx = _fit(xs, ms)
    return T_975 * float(np.sqrt(rss / (np.isfinite(ms).sum() - 2) / sxx))


def trend_word(slope: float, ci: float) -> str:
    if not np.isfinite(slope):
        return "no slope (too few positions)"
    if not np.isfinite(ci) or abs(slope) <= ci:
        return "no clear trend: the 95 % interval includes 0"
    return "falling: the loss drops with context" if slope < 0 else "rising: the loss grows with context"


def screen_line(s: dict, over: str) -> str:
    """One line for the screens: the mean ``over`` what, the marks reached, the slope and what it says."""
    marks = "  ".join(f"{k} {v:.3f}" for k, v in s["at"].items() if v is not None and np.isfinite(v))
    slope, ci = s["slope_per_1k"], s.get("slope_ci95_per_1k", float("nan"))
    line = f"mean {_fmt(s['mean'], 3)} over {over}" + (f"  at {marks}" if marks else "")
    if np.isfinite(slope):
        line += f"  slope {slope:+.4f} +- {_fmt(ci, 4)} per 1k positions ({trend_word(slope, ci).split(':')[0]})"
    return line


def text_lines(s: dict, title: str = "OUTER LOSS") -> list[str]:
    """The report's section (single run and data set)."""
    n = s["n_positions"]
    marks = "  ".join(f"{k}: {_fmt(v)}" for k, v in s["at"].items())
    lines = [
        f"{title} (teacher-forced; audio-token cross-entropy per position, mean over the audio codebooks)",
        f"   {n} positions  mean {_fmt(s['mean'])}"
        + (f"  first 1000 positions {_fmt(s['first_bin'])}  last 1000 {_fmt(s['last_bin'])}" if n >= 2 * BIN else ""),
        f"   at {marks}   (mean of the 1000 positions around each mark; '-': the run is shorter)",
    ]
    slope, ci = s["slope_per_1k"], s.get("slope_ci95_per_1k", float("nan"))
    if np.isfinite(slope):
        lines.append(
            f"   slope from position {s['slope_from']} to the end: {slope:+.5f} +- {_fmt(ci, 5)} per 1000 positions "
            f"(least squares, 95 %; {trend_word(slope, ci)})"
        )
    bins = s["by_1k"]
    if len(bins) > 1:
        shown = bins if len(bins) <= 24 else bins[:12] + [None] + bins[-11:]
        lines.append("   by 1000 positions: " + " ".join("..." if b is None else _fmt(b, 3) for b in shown))
    return lines


def _fmt(x, digits: int = 4) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"
