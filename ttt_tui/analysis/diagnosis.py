"""Findings (the rules and words of the users' ``analyze_figure5_data``, report-format.md) and one verdict
per layer. Verdicts, most severe first (also in the README):

- NO_DATA: no position recorded yet.
- EXPLODING: NaN/Inf losses, or mean l0 > 10 ("HUGE LOSSES").
- DEGENERATIVE: mean(lprev - lafter) < -0.0001: the updates increase the loss (a negative improvement
  smaller than the 0.0001 "negligible" threshold is float noise around no learning: NOT_LEARNING).
- NOT_LEARNING: mean(lprev - lafter) < 0.0001: the three lines overlap.
- NOT_ADAPTING: the context does not help: context gain mean(l0 - lprev) <= 0, or more than 50 % ordering violations,
  or lprev rising while the l0 - lafter gap does not widen.
- HEALTHY: none of these (warnings such as ABNORMAL LOSS RANGE or ELEVATED VIOLATION RATE, 10-50 %
  violations, are listed with it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

VERDICTS = ("NO_DATA", "EXPLODING", "DEGENERATIVE", "NOT_LEARNING", "NOT_ADAPTING", "HEALTHY")
HEALTHY_TEXT = "TTT LEARNING APPEARS HEALTHY"


@dataclass(frozen=True)
class Finding:
    code: str
    text: str  # the words of the report
    severity: str  # "error" | "warning" | "info"


def findings(s: dict) -> list[Finding]:
    """Each rule independent; several can fire. ``s`` is a ``LayerStats.summary``."""
    out: list[Finding] = []
    n = s["n_positions"]
    if not n:
        return out
    if s["nonfinite"]:
        out.append(
            Finding(
                "NONFINITE",
                f"NON-FINITE LOSSES: {s['nonfinite']} positions with NaN or Inf "
                "(excluded from the statistics); numerical overflow in the inner loop?",
                "error",
            )
        )
    l0m, imp = s["l0"]["mean"], s["avg_improvement"]
    if not math.isnan(l0m) and l0m > 10.0:
        out.append(
            Finding(
                "HUGE_LOSSES",
                "HUGE LOSSES: TTT weights may be diverging or numerically unstable; learning rate too high?",
                "error",
            )
        )
    if s["violation_rate"] > 50.0:
        out.append(
            Finding(
                "HIGH_VIOLATION_RATE",
                "HIGH VIOLATION RATE: TTT learning is NOT working as expected (expected blue > orange > green)",
                "error",
            )
        )
    elif s["violation_rate"] >= 10.0:  # ours: their guide calls < 10 % healthy, their rules only flag > 50 %
        out.append(
            Finding(
                "ELEVATED_VIOLATION_RATE",
                f"ELEVATED VIOLATION RATE: {s['violation_rate']:.1f}% of "
                "positions violate l0 >= lprev >= lafter (healthy: < 10%)",
                "warning",
            )
        )
    if not math.isnan(imp) and imp < 0.0001:
        out.append(
            Finding(
                "MINIMAL_IMPROVEMENT",
                "MINIMAL IMPROVEMENT: updates have negligible effect; learning rate too small? gradient flow broken?",
                "error",
            )
        )
    if not math.isnan(imp) and imp < 0:
        out.append(
            Finding(
                "NEGATIVE_IMPROVEMENT",
                "NEGATIVE IMPROVEMENT: updates INCREASE the loss; learning is degenerative",
                "error",
            )
        )
    if not math.isnan(l0m) and (l0m < 0.001 or l0m > 5.0):
        out.append(Finding("ABNORMAL_RANGE", "ABNORMAL LOSS RANGE (expected 0.01 to 1.0)", "warning"))
    if s["trend_available"] and s["lprev_trend"] > 0:
        widening = s["gap_trend"] > 0
        text = "lprev INCREASING over time: TTT is NOT adapting to context"
        if widening:
            text += " (but the l0 - lafter gap widens: the rise is shared with l0, not divergence)"
        out.append(Finding("LPREV_INCREASING", text, "info" if widening else "error"))
    gain = s["context_gain"]
    if n > 10 and not math.isnan(gain) and gain <= 0 and (s["l0"]["mean"] != s["lprev"]["mean"]):
        out.append(
            Finding(
                "NO_CONTEXT_GAIN",
                "NO CONTEXT GAIN: mean(l0 - lprev) <= 0, the weights learned from "
                "context do no better than the stream-start weights",
                "error",
            )
        )
    return out


def verdict(s: dict, fs: list[Finding] | None = None) -> str:
    if not s["n_positions"]:
        return "NO_DATA"
    codes = {f.code for f in (findings(s) if fs is None else fs) if f.severity != "info"}
    if codes & {"NONFINITE", "HUGE_LOSSES"}:
        return "EXPLODING"
    if "NEGATIVE_IMPROVEMENT" in codes and s["avg_improvement"] < -0.0001:
        return "DEGENERATIVE"
    if "MINIMAL_IMPROVEMENT" in codes:
        return "NOT_LEARNING"
    if codes & {"HIGH_VIOLATION_RATE", "LPREV_INCREASING", "NO_CONTEXT_GAIN"}:
        return "NOT_ADAPTING"
    return "HEALTHY"


def diagnose(s: dict) -> tuple[str, list[Finding]]:
    fs = findings(s)
    return verdict(s, fs), fs
