"""Statistics over consecutive windows of a layer's history, and the regime changes they show.

Whole-run means hide what long audio is watched for: a layer that learns for three minutes and then stops is
"HEALTHY" on average. Here the history is cut into consecutive windows (``--window``, 30 s by default), each
with the report's statistics and verdict (the same rules, ``stats`` and ``diagnosis``). A window's own verdict
flickers on noisy losses (near a threshold, one window is HEALTHY and the next DEGENERATIVE), so regimes are
decided statistically:

- Each window is split into ``SUB_BLOCKS`` consecutive sub-blocks; the standard error of a window's mean
  improvement, violation rate and context gain is the spread of the sub-block means over sqrt(SUB_BLOCKS)
  ("batch means": neighbouring tokens are correlated, so the per-token spread over sqrt(n) would be far too
  small).
- A regime has a level: the mean of its windows' numbers, with a standard error (the larger of the pooled
  window errors and the windows' spread over sqrt(count)). A window *departs* from it when one of the three
  numbers differs by more than ``Z`` = 3 combined standard errors.
- ``PERSIST`` = 3 departing windows in a row make a candidate regime (a window back at the level cancels it):
  its label is the report's verdict rules applied to the candidate windows pooled, with 2 standard errors of
  margin on the improvement (DEGENERATIVE only if surely below -0.0001, NOT_LEARNING unless surely above
  0.0001); then NOT_ADAPTING (violations > 50 % or context gain <= 0), ELEVATED_VIOLATIONS (10-50 %), HEALTHY.
  A new label is a change, dated at the start of the first departing window (within one window of the true
  time); the same label re-anchors the level and says nothing. A window with a NaN/Inf or mean l0 > 10 is
  EXPLODING at once (NaN is not noise).
- The first regime is the label of the first ``PERSIST`` windows.
"""

from __future__ import annotations

import math

import numpy as np

from .diagnosis import diagnose
from .stats import LayerStats

DEFAULT_WINDOW_S = 30.0
SUB_BLOCKS = 10
Z = 3.0
PERSIST = 3
MIN_IMPROVEMENT = 1e-4  # the report's MINIMAL IMPROVEMENT threshold

STATES = ("EXPLODING", "DEGENERATIVE", "NOT_LEARNING", "NOT_ADAPTING", "ELEVATED_VIOLATIONS", "HEALTHY")
STATE_WORDS = {
    "EXPLODING": "exploding (NaN/Inf or huge losses)",
    "DEGENERATIVE": "degenerative (the updates increase the loss)",
    "NOT_LEARNING": "not learning",
    "NOT_ADAPTING": "not adapting to context",
    "ELEVATED_VIOLATIONS": "learning, with 10-50 % ordering violations",
    "HEALTHY": "learning",
}


def _sub_block_means(rows: np.ndarray) -> np.ndarray | None:
    """[SUB_BLOCKS, 3]: per sub-block, mean improvement, violation rate (%), mean context gain; None if the
    window is too short for an error bar."""
    k = rows.shape[0] // SUB_BLOCKS
    if k < 2:
        return None
    sub = rows[: k * SUB_BLOCKS].astype(np.float64).reshape(SUB_BLOCKS, k, 3)
    l0, lprev, lafter = sub[..., 0], sub[..., 1], sub[..., 2]
    violation = 100.0 * (~((l0 >= lprev) & (lprev >= lafter))).mean(1)
    return np.stack([(lprev - lafter).mean(1), violation, (l0 - lprev).mean(1)], 1)


def window_stats(rows: np.ndarray, start: int, frame_rate: float) -> dict:
    """One window's statistics, verdict and state. ``rows`` [n, 3] are positions ``start`` .. ``start + n``."""
    st = LayerStats()
    st.update(rows)
    s = st.summary(rows)
    verdict, _ = diagnose(s)
    out = {
        "start_s": round(start / frame_rate, 3),
        "end_s": round((start + rows.shape[0]) / frame_rate, 3),
        "n_positions": int(rows.shape[0]),
        "violation_rate": s["violation_rate"],
        "avg_improvement": s["avg_improvement"],
        "cumulative_benefit": s["cumulative_benefit"],
        "context_gain": s["context_gain"],
        "l0_mean": s["l0"]["mean"],
        "nonfinite": s["nonfinite"],
        "verdict": verdict,
    }
    sub = _sub_block_means(rows) if not s["nonfinite"] else None
    if sub is not None:
        se = sub.std(0, ddof=1) / math.sqrt(sub.shape[0])
        out["improvement_se"], out["violation_rate_se"], out["context_gain_se"] = (float(x) for x in se)
    return out


METRICS = (
    ("avg_improvement", "improvement_se"),
    ("violation_rate", "violation_rate_se"),
    ("context_gain", "context_gain_se"),
)


def _exploding(w: dict) -> bool:
    return bool(w["nonfinite"]) or (not math.isnan(w["l0_mean"]) and w["l0_mean"] > 10.0)


def _level(windows: list[dict]) -> dict:
    """Per metric (mean, standard error) of a run of windows."""
    out = {}
    for key, se_key in METRICS:
        vals = np.array([w[key] for w in windows], dtype=np.float64)
        ses = np.array([w[se_key] for w in windows], dtype=np.float64)
        pooled = math.sqrt(float((ses**2).sum())) / len(vals)
        spread = float(vals.std(ddof=1)) / math.sqrt(len(vals)) if len(vals) > 1 else 0.0
        out[key] = (float(vals.mean()), max(pooled, spread))
    return out


def _departs(w: dict, level: dict) -> bool:
    for key, se_key in METRICS:
        m, se = level[key]
        if abs(w[key] - m) > Z * math.sqrt(w[se_key] ** 2 + se**2):
            return True
    return False


def label(windows: list[dict]) -> str:
    """The report's verdict rules on windows pooled (the margins: see the module's docstring)."""
    if any(_exploding(w) for w in windows):
        return "EXPLODING"
    lv = _level(windows)
    imp, imp_se = lv["avg_improvement"]
    if imp + 2 * imp_se < -MIN_IMPROVEMENT:
        return "DEGENERATIVE"
    if imp - 2 * imp_se < MIN_IMPROVEMENT:
        return "NOT_LEARNING"
    if lv["violation_rate"][0] > 50.0 or lv["context_gain"][0] <= 0:
        return "NOT_ADAPTING"
    if lv["violation_rate"][0] >= 10.0:
        return "ELEVATED_VIOLATIONS"
    return "HEALTHY"


class LayerWindows:
    """A layer's windows and regimes, kept incrementally: ``update(data)`` adds the windows completed since the
    last call (a completed window never changes), ``finish(data)`` the last, partial one (if at least half a
    window). The dashboard calls ``update`` as the run goes; the report builds one and calls both."""

    def __init__(self, frame_rate: float, window_s: float = DEFAULT_WINDOW_S, persist: int = PERSIST):
        self.frame_rate = float(frame_rate)
        self.window_s = float(window_s)
        self.size = max(2 * SUB_BLOCKS, int(round(window_s * frame_rate)))
        self.persist = persist
        self.windows: list[dict] = []
        self.regimes: list[dict] = []  # {state, start_s, first_window}: the established regimes, in order
        self._level_windows: list[dict] = []  # the windows that set the current regime's level
        self._pending: list[int] = []  # consecutive windows departing from it
        self._done = 0  # positions covered by completed windows
        self._finished = False

    def update(self, data: np.ndarray) -> bool:
        """Add the windows completed in ``data`` (the layer's rows so far); True if any was added."""
        added = False
        while not self._finished and data.shape[0] - self._done >= self.size:
            self._add(window_stats(data[self._done : self._done + self.size], self._done, self.frame_rate))
            self._done += self.size
            added = True
        return added

    def finish(self, data: np.ndarray) -> None:
        self.update(data)
        rest = data.shape[0] - self._done
        if not self._finished and rest >= self.size // 2:
            self._add(window_stats(data[self._done :], self._done, self.frame_rate))
            self._done = data.shape[0]
        self._finished = True

    def _new_regime(self, state: str, first: int, level: list[dict]) -> None:
        start = 0.0 if not self.regimes else self.windows[first]["start_s"]
        self.regimes.append({"state": state, "start_s": start, "first_window": 0 if not self.regimes else first})
        self._level_windows = level
        self._pending = []

    def _add(self, w: dict) -> None:
        i = len(self.windows)
        self.windows.append(w)
        if _exploding(w):
            if self.state != "EXPLODING":
                self._new_regime("EXPLODING", i, [])
            return
        if "improvement_se" not in w:  # too short for an error bar
            return
        self._pending.append(i)
        pending = [self.windows[j] for j in self._pending]
        if not self.regimes:
            if len(pending) >= self.persist:
                self._new_regime(label(pending), 0, pending)
            return
        if self._level_windows and not _departs(w, _level(self._level_windows)):
            self._pending = []  # back at the level: the excursion was noise
            self._level_windows.append(w)
            return
        if len(pending) >= self.persist:
            new = label(pending)
            if new != self.state:
                self._new_regime(new, self._pending[0], pending)
            else:  # the level moved, the verdict did not: nothing to say
                self._level_windows = pending
                self._pending = []

    @property
    def state(self) -> str | None:
        """The established regime now."""
        return self.regimes[-1]["state"] if self.regimes else None

    def window_states(self) -> list[str | None]:
        """Per window, the regime it belongs to (the verdict strip over time)."""
        out: list[str | None] = [None] * len(self.windows)
        for k, reg in enumerate(self.regimes):
            last = self.regimes[k + 1]["first_window"] if k + 1 < len(self.regimes) else len(self.windows)
            out[reg["first_window"] : last] = [reg["state"]] * (last - reg["first_window"])
        return out

    def changes(self, layer_id: int | None = None) -> list[dict]:
        """Each change of regime: ``{at_s, from, to, finding}``, the finding in words with the new regime's
        numbers (mean +- std over its windows) and its extent."""
        out = []
        end_s = self.windows[-1]["end_s"] if self.windows else 0.0
        for k in range(1, len(self.regimes)):
            prev, reg = self.regimes[k - 1], self.regimes[k]
            nxt = self.regimes[k + 1] if k + 1 < len(self.regimes) else None
            last = nxt["first_window"] if nxt else len(self.windows)
            span = self.windows[reg["first_window"] : last]
            imp = np.array([w["avg_improvement"] for w in span], dtype=np.float64)
            vr = np.array([w["violation_rate"] for w in span], dtype=np.float64)
            until = f"to {clock(nxt['start_s'])}" if nxt else f"to the end ({clock(end_s)})"
            who = f"layer {layer_id}: " if layer_id is not None else ""
            if reg["state"] == "EXPLODING":
                numbers = f"{sum(w['nonfinite'] for w in span)} NaN/Inf positions"
            else:
                fin = imp[np.isfinite(imp)]
                numbers = (
                    f"improvement {fin.mean():+.4f} +- {fin.std():.4f} per window, violations {np.nanmean(vr):.1f} %"
                    if fin.size
                    else "no finite losses"
                )
            out.append(
                {
                    "at_s": reg["start_s"],
                    "from": prev["state"],
                    "to": reg["state"],
                    "finding": f"{who}{STATE_WORDS[reg['state']]} from {clock(reg['start_s'])} {until} "
                    f"(was {STATE_WORDS[prev['state']]}; {numbers})",
                }
            )
        return out


def clock(seconds: float) -> str:
    """mm:ss (h:mm:ss from an hour)."""
    s = int(round(seconds))
    h, m, sec = s // 3600, (s // 60) % 60, s % 60
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m:02d}:{sec:02d}"


def layer_windows(data: np.ndarray, frame_rate: float, window_s: float = DEFAULT_WINDOW_S) -> LayerWindows:
    """All windows of a finished (or cut) history."""
    lw = LayerWindows(frame_rate, window_s)
    lw.finish(data)
    return lw


def sliding_summary(data: np.ndarray, frame_rate: float, window_s: float = DEFAULT_WINDOW_S) -> dict | None:
    """The last ``window_s`` seconds' statistics (the dashboard's live "last 30 s" counters)."""
    n = int(round(window_s * frame_rate))
    if data.shape[0] < 2:
        return None
    rows = data[-n:]
    return window_stats(rows, data.shape[0] - rows.shape[0], frame_rate)
