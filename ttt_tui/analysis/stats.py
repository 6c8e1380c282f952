"""Statistics of one layer's losses by the report rules our users know (README, "The report"),
kept incrementally: each appended block updates running moments, so the live counters and the final report
are the same numbers.

One definition of each derived quantity, everywhere (dashboard, report, PNGs, compare, TensorBoard, README):
improvement ``lprev - lafter`` (what this step's update bought), benefit ``l0 - lafter`` (what all inner
learning up to and including this step bought; the users' plot's "cumulative benefit"), context gain
``l0 - lprev`` (what the context before this token bought; benefit = context gain + improvement).

Positions with a NaN or Inf are counted (``nonfinite``) and are ordering violations (the rule
``not (l0 >= lprev >= lafter)`` is true for them); means, std, min, max, improvement and trends are over the
finite positions. Positions that the run log lost (a damaged block: ``valid`` false) are counted apart
(``missing``): they keep the positions after them in place and enter no other number.
"""

from __future__ import annotations

import math

import numpy as np

LOSS_NAMES = ("l0", "lprev", "lafter")  # the columns of a losses block, everywhere (docs/losses.md)
TREND_BIN = 256  # positions per bin of the running sums used for the quarter means


class LayerStats:
    """Running statistics of one layer. ``data`` is a callable giving the layer's rows [n, 3] (for the few
    positions at quarter boundaries that fall inside a bin)."""

    def __init__(self):
        self.n = 0
        self.missing = 0  # positions the log lost (damaged blocks): in n, in no other number
        self.n_finite = 0
        self.nonfinite = 0
        self.violations = 0
        self.mean = np.zeros(3)  # Chan et al. merge of (count, mean, M2) per loss
        self.m2 = np.zeros(3)
        self.min = np.full(3, np.inf)
        self.max = np.full(3, -np.inf)
        self.sum_improvement = 0.0  # lprev - lafter
        self.sum_benefit = 0.0  # l0 - lafter: what the inner learning so far plus this step bought
        self.sum_context_gain = 0.0  # l0 - lprev: what the context before this token bought
        # per bin of TREND_BIN positions: sums of (l0, lprev, l0 - lafter) and count of finite rows
        self._bins = np.zeros((0, 4))

    def update(self, block: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Add the next rows; ``valid`` (bool per row, None: all) marks the rows the log still holds."""
        block = np.asarray(block, dtype=np.float64)
        if block.size == 0:
            return
        positions = np.arange(self.n, self.n + block.shape[0])
        self.n += block.shape[0]
        if valid is not None and not valid.all():
            self.missing += int(block.shape[0] - np.count_nonzero(valid))
            block, positions = block[valid], positions[valid]
            if not block.shape[0]:
                return
        l0, lprev, lafter = block.T
        self.violations += int(np.count_nonzero(~((l0 >= lprev) & (lprev >= lafter))))
        finite = np.isfinite(block).all(1)
        fin = block[finite]
        self.nonfinite += int(block.shape[0] - fin.shape[0])
        if fin.shape[0]:
            nb, mb = fin.shape[0], fin.mean(0)
            m2b = ((fin - mb) ** 2).sum(0)
            tot = self.n_finite + nb
            delta = mb - self.mean
            self.mean = self.mean + delta * nb / tot
            self.m2 = self.m2 + m2b + delta**2 * self.n_finite * nb / tot
            self.n_finite = tot
            self.min = np.minimum(self.min, fin.min(0))
            self.max = np.maximum(self.max, fin.max(0))
            self.sum_improvement += float((fin[:, 1] - fin[:, 2]).sum())
            self.sum_benefit += float((fin[:, 0] - fin[:, 2]).sum())
            self.sum_context_gain += float((fin[:, 0] - fin[:, 1]).sum())
        self._add_to_bins(positions, block, finite)

    def _add_to_bins(self, idx: np.ndarray, block: np.ndarray, finite: np.ndarray) -> None:
        end = int(idx[-1]) + 1
        n_bins = -(-end // TREND_BIN)
        if n_bins > self._bins.shape[0]:
            grown = np.zeros((max(n_bins, 2 * self._bins.shape[0]), 4))
            grown[: self._bins.shape[0]] = self._bins
            self._bins = grown
        np.add.at(self._bins, idx // TREND_BIN, _trend_rows(block, finite))

    def _range_sums(self, a: int, b: int, data) -> np.ndarray:
        """Sums of (l0, lprev, gap, count) over positions [a, b)."""
        if a >= b:
            return np.zeros(4)
        ba, bb = -(-a // TREND_BIN), b // TREND_BIN
        if ba >= bb:
            block = np.asarray(data[a:b], dtype=np.float64)
            return _trend_rows(block, np.isfinite(block).all(1)).sum(0)
        total = self._bins[ba:bb].sum(0)
        for lo, hi in ((a, ba * TREND_BIN), (bb * TREND_BIN, b)):
            if lo < hi:
                block = np.asarray(data[lo:hi], dtype=np.float64)
                total = total + _trend_rows(block, np.isfinite(block).all(1)).sum(0)
        return total

    def summary(self, data) -> dict:
        """The report's statistics; ``data`` is the layer's rows (indexable [a:b] -> [k, 3]), or None for
        statistics without the quarter trends (rows pooled from several recordings have no order to trend over)."""
        n, nf = self.n, self.n_finite
        out: dict = {"n_positions": n, "nonfinite": self.nonfinite, "violations": self.violations}
        out["missing"] = self.missing
        held = n - self.missing
        out["violation_rate"] = 100.0 * self.violations / held if held else 0.0
        if nf:
            std = np.sqrt(np.maximum(self.m2 / nf, 0.0))
            for i, name in enumerate(LOSS_NAMES):
                out[name] = {
                    "mean": float(self.mean[i]),
                    "std": float(std[i]),
                    "min": float(self.min[i]),
                    "max": float(self.max[i]),
                }
            out["avg_improvement"] = self.sum_improvement / nf
            out["cumulative_benefit"] = self.sum_benefit / nf
            out["context_gain"] = self.sum_context_gain / nf
        else:
            nan = float("nan")
            for name in LOSS_NAMES:
                out[name] = {"mean": nan, "std": nan, "min": nan, "max": nan}
            out["avg_improvement"] = out["cumulative_benefit"] = out["context_gain"] = nan
        q = n // 4 if data is not None else 0
        out["trend_available"] = n > 10 and data is not None
        if q:
            first, last = self._range_sums(0, q, data), self._range_sums(n - q, n, data)
            f, la = first[:3] / max(first[3], 1), last[:3] / max(last[3], 1)
            out["l0_trend"], out["lprev_trend"] = float(la[0] - f[0]), float(la[1] - f[1])
            out["gap_first_quarter"], out["gap_last_quarter"] = float(f[2]), float(la[2])
            out["gap_trend"] = float(la[2] - f[2])
        else:
            for k in ("l0_trend", "lprev_trend", "gap_first_quarter", "gap_last_quarter", "gap_trend"):
                out[k] = float("nan")
        return out


def _trend_rows(block: np.ndarray, finite: np.ndarray) -> np.ndarray:
    rows = np.zeros((block.shape[0], 4))
    fin = block[finite]
    rows[finite, 0] = fin[:, 0]
    rows[finite, 1] = fin[:, 1]
    rows[finite, 2] = fin[:, 0] - fin[:, 2]
    rows[finite, 3] = 1.0
    return rows


def summarize(losses: np.ndarray) -> dict:
    """Statistics of a whole array [n, 3] at once, plus ``healthy`` (the default model's acceptance check:
    violation rate < 10 %, improvement > 0.0001, mean l0 within 0.001..5, gap wider at the end)."""
    losses = np.asarray(losses, dtype=np.float64).reshape(-1, 3)
    st = LayerStats()
    st.update(losses)
    out = st.summary(losses)
    out["healthy"] = bool(
        out["n_positions"] > 0
        and out["violation_rate"] < 10.0
        and out["avg_improvement"] > 1e-4
        and 1e-3 <= out["l0"]["mean"] <= 5.0
        and not math.isnan(out["gap_trend"])
        and out["gap_trend"] > 0
    )
    return out
