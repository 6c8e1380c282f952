"""Statistics over consecutive windows of a layer's history, and the regime changes they show.

Whole-run means hide what long audio is watched for: a layer that learns for three minutes and then stops is
"HEALTHY" on average. Here the history is cut into consecutive windows (``--window``, 30 s by default), each
with the report's statistics and verdict (the same rules, ``stats`` and ``diagnosis``). A window's own verdict
flickers on noisy losses (near a threshold, one window is HEALTHY and the next DEGENERATIVE), so regimes are
decided statistically:

- Each window is split into ``SUB_BLOCKS`` consecutive sub-blocks; the standard error (SE) of a window's mean
  improvement, violation rate and context gain is the spread of the sub-block means over sqrt(SUB_BLOCKS)
  ("batch means": neighbouring tokens are correlated, so the per-token spread over sqrt(n) would be far too
  small).
- A window's *state*, with ``Z`` = 3 SE of margin: EXPLODING (a NaN/Inf, or mean l0 > 10: no margin needed);
  DEGENERATIVE (improvement surely below -0.0001); NOT_LEARNING (improvement not surely above 0.0001: a layer
  that stopped sits at 0 +- noise); otherwise the layer surely learns, and the state is NOT_ADAPTING
  (violations surely above 50 %, or context gain surely <= 0), HEALTHY (violations surely below 10 %) or
  ELEVATED_VIOLATIONS (surely 10-50 %). A window whose violation rate or context gain straddles a threshold
  has no state: it neither starts nor breaks a change.
- A change of regime needs ``PERSIST`` = 3 windows whose state differs from the regime's (a window in the
  regime's state cancels them), and the same rule applied to *every* window since the first of them, pooled
  (their means, and the SE of the pooled mean), must give a state other than the regime's: that state is the
  new regime, dated at the start of the first of those windows (within one window of the true time), if
  those windows also differ from the regime's recent level (its last ``REFERENCE`` = 5 windows) by more than 3
  combined SE in one of the three numbers: a step, not an improvement that sinks slowly to the limit of what
  a window can tell. EXPLODING needs one window: NaN is not noise.
- The first regime is the pooled state of the first ``PERSIST`` windows with a state.
"""

from __future__ import annotations

import math
import time

import numpy as np

from .diagnosis import diagnose
from .stats import LayerStats
from .units import clock, when  # noqa: F401 (clock: also imported from here)

DEFAULT_WINDOW_S = 30.0
SUB_BLOCKS = 10
Z = 3.0
PERSIST = 3
REFERENCE = 5  # windows of the regime's recent level a candidate change is compared with
METRICS = (
    ("avg_improvement", "improvement_se"),
    ("violation_rate", "violation_rate_se"),
    ("context_gain", "context_gain_se"),
)
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


def window_stats(rows: np.ndarray, start: int, frame_rate: float, valid: np.ndarray | None = None) -> dict:
    """One window's statistics, verdict and state. ``rows`` [n, 3] are positions ``start`` .. ``start + n``;
    ``valid`` (None: all) marks the rows the log holds: a damaged block's positions enter no number."""
    n = rows.shape[0]
    if valid is not None and not valid.all():
        rows = rows[valid]
    st = LayerStats()
    st.update(rows)
    s = st.summary(rows)
    verdict, _ = diagnose(s)
    out = {
        "start_s": round(start / frame_rate, 3),
        "end_s": round((start + n) / frame_rate, 3),
        "n_positions": int(rows.shape[0]),
        "violation_rate": s["violation_rate"] if rows.shape[0] else float("nan"),  # all lost: no number
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


def _exploding(w: dict) -> bool:
    return bool(w["nonfinite"]) or (not math.isnan(w["l0_mean"]) and w["l0_mean"] > 10.0)


def state(w: dict) -> str | None:
    """A window's state (or several windows pooled: ``pool``), by the rules of the module's docstring."""
    if _exploding(w):
        return "EXPLODING"
    if "improvement_se" not in w:  # too short for an error bar
        return None
    imp, imp_m = w["avg_improvement"], Z * w["improvement_se"]
    if imp + imp_m < -MIN_IMPROVEMENT:
        return "DEGENERATIVE"
    if imp - imp_m < MIN_IMPROVEMENT:
        return "NOT_LEARNING"
    vr, vr_m = w["violation_rate"], Z * w["violation_rate_se"]
    gain, gain_m = w["context_gain"], Z * w["context_gain_se"]
    if vr - vr_m > 50.0 or gain + gain_m <= 0:
        return "NOT_ADAPTING"
    if vr + vr_m >= 50.0 or gain - gain_m <= 0:
        return None
    if vr + vr_m < 10.0:
        return "HEALTHY"
    if vr - vr_m >= 10.0:
        return "ELEVATED_VIOLATIONS"
    return None


def pool(windows: list[dict]) -> dict:
    """Windows as one sample: means weighted by positions; the SE of the pooled mean."""
    n = np.array([w["n_positions"] for w in windows], dtype=np.float64)
    wt = n / n.sum()
    out = {
        "nonfinite": sum(w["nonfinite"] for w in windows),
        "l0_mean": float(np.dot(wt, [w["l0_mean"] for w in windows])),
    }
    for key, se_key in METRICS:
        out[key] = float(np.dot(wt, [w[key] for w in windows]))
        if all(se_key in w for w in windows):
            out[se_key] = float(np.sqrt(np.dot(wt**2, [w[se_key] ** 2 for w in windows])))
    return out


class LayerWindows:
    """A layer's windows and regimes, kept incrementally: ``update(data)`` adds the windows completed since the
    last call (a completed window never changes), ``finish(data)`` the last, partial one (if at least half a
    window). The dashboard calls ``update`` as the run goes; the report builds one and calls both."""

    def __init__(
        self, frame_rate: float, window_s: float = DEFAULT_WINDOW_S, persist: int = PERSIST, unit: str | None = None
    ):
        """``unit``: what a position is (``units``: times are said in seconds, or as token positions)."""
        self.unit = unit
        self.frame_rate = float(frame_rate)
        self.window_s = float(window_s)
        self.size = max(2 * SUB_BLOCKS, int(round(window_s * frame_rate)))
        self.persist = persist
        self.windows: list[dict] = []
        self.regimes: list[dict] = []  # {state, start_s, first_window}: the established regimes, in order
        self._pending: list[int] = []  # consecutive windows whose state is not the regime's
        self._done = 0  # positions covered by completed windows
        self._finished = False

    def update(self, data: np.ndarray, deadline: float | None = None, valid: np.ndarray | None = None) -> bool:
        """Add the windows completed in ``data`` (the layer's rows so far, ``valid``: the store's ``valid``);
        True if any was added. ``deadline``
        (``time.perf_counter()``): stop there and go on at the next call (a UI opening an hour-long run
        catches up over a few ticks instead of freezing for seconds: about 1 ms per window)."""
        added = False
        while not self._finished and data.shape[0] - self._done >= self.size:
            if deadline is not None and added and time.perf_counter() > deadline:
                break
            a, b = self._done, self._done + self.size
            self._add(window_stats(data[a:b], a, self.frame_rate, None if valid is None else valid[a:b]))
            self._done += self.size
            added = True
        return added

    def finish(self, data: np.ndarray, valid: np.ndarray | None = None) -> None:
        self.update(data, valid=valid)
        rest = data.shape[0] - self._done
        if not self._finished and rest >= self.size // 2:
            a = self._done
            self._add(window_stats(data[a:], a, self.frame_rate, None if valid is None else valid[a:]))
            self._done = data.shape[0]
        self._finished = True

    def _new_regime(self, new: str, first: int) -> None:
        start = 0.0 if not self.regimes else self.windows[first]["start_s"]
        self.regimes.append({"state": new, "start_s": start, "first_window": 0 if not self.regimes else first})
        self._pending = []

    def _add(self, w: dict) -> None:
        i = len(self.windows)
        w["state"] = st = state(w)
        self.windows.append(w)
        if st == "EXPLODING":
            if self.state != "EXPLODING":
                self._new_regime("EXPLODING", i)
            return
        if st is None:  # straddles a threshold: neither starts nor breaks a change
            return
        if st == self.state:
            self._pending = []  # back in the regime: the excursion was noise
            return
        self._pending.append(i)
        if len(self._pending) < self.persist:
            return
        # pooled: every window since the first departing one, the undecided ones too (pooling only the
        # departing windows would pick the extremes of a stationary stream)
        since = [w for w in self.windows[self._pending[0] :] if "improvement_se" in w and not _exploding(w)]
        new = state(pool(since))
        if new is not None and new != self.state and self._differs(since, self._pending[0]):
            self._new_regime(new, self._pending[0])
        elif self.regimes:  # pooled, the windows are in the regime after all (or undecided): noise
            self._pending = []
        else:  # no first regime yet: slide on
            self._pending.pop(0)

    def _differs(self, since: list[dict], first: int) -> bool:
        """Whether the candidate windows differ from the regime's recent level (its last ``REFERENCE`` windows
        in its own state) by more than ``Z`` combined SE in one of the three numbers: a new label alone can come
        from an improvement that sinks slowly towards the limit of what a window can tell; a change needs a
        step. No reference (the first regime, or after EXPLODING): the label decides."""
        cur = self.state
        ref = [w for w in self.windows[:first] if w.get("state") == cur and "improvement_se" in w][-REFERENCE:]
        if not self.regimes or cur == "EXPLODING" or not ref:
            return True
        a, b = pool(since), pool(ref)
        for key, se_key in METRICS:
            if abs(a[key] - b[key]) > Z * math.hypot(a[se_key], b[se_key]):
                return True
        return False

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
            until = f"to {when(nxt['start_s'], self.unit)}" if nxt else f"to the end ({when(end_s, self.unit)})"
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
                    "finding": f"{who}{STATE_WORDS[reg['state']]} from {when(reg['start_s'], self.unit)} {until} "
                    f"(was {STATE_WORDS[prev['state']]}; {numbers})",
                }
            )
        return out


def layer_windows(
    data: np.ndarray,
    frame_rate: float,
    window_s: float = DEFAULT_WINDOW_S,
    valid: np.ndarray | None = None,
    unit: str | None = None,
) -> LayerWindows:
    """All windows of a finished (or cut) history."""
    lw = LayerWindows(frame_rate, window_s, unit=unit)
    lw.finish(data, valid)
    return lw


def sliding_summary(
    data: np.ndarray, frame_rate: float, window_s: float = DEFAULT_WINDOW_S, valid: np.ndarray | None = None
) -> dict | None:
    """The last ``window_s`` seconds' statistics (the dashboard's live "last 30 s" counters)."""
    n = int(round(window_s * frame_rate))
    if data.shape[0] < 2:
        return None
    rows = data[-n:]
    return window_stats(rows, data.shape[0] - rows.shape[0], frame_rate, None if valid is None else valid[-n:])
