"""``ttt_diagnostic_report.txt``: the layout of the users' current tool (their post-hoc Figure-5 script),
with correct numbers."""

from __future__ import annotations

import math

from ..analysis.diagnosis import HEALTHY_TEXT, Finding
from ..analysis.headline import WARNED, describe, verdict_words
from ..analysis.outer import text_lines

ICON = {"error": "❌", "warning": "⚠️ ", "info": "ℹ️ "}
MARKS_LINE = (
    "Marks: ✅ as healthy TTT should be; ❌ a problem; ⚠️  a warning; ℹ️  information; 🔀 a change of regime; "
    "HEALTHY (!): healthy, with warnings; 'X overall · Y N % of the audio, since/until mm:ss': the whole run's "
    "verdict X, and the regime over time Y that disagrees with it (README: the headline)."
)


def _one_line(s: str) -> str:
    """Control characters (a newline in a file name) escaped, so that a field stays on its line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)


def _trend_word(x: float, good: str) -> str:
    return f"({good} ✅)" if x < 0 else "(degrading ❌)"


def _lprev_trend_word(s: dict, verdict: str) -> str:
    """lprev falling means adaptation only where the updates do something: with no learning (lprev = l0) or
    degenerative updates it only follows l0, and a ✅ would contradict the verdict."""
    if verdict in ("NOT_LEARNING", "DEGENERATIVE", "EXPLODING"):
        return f"(follows l0: {verdict}, no adaptation to read from it)"
    return _trend_word(s["lprev_trend"], "adapting")


def signal_lines(s: dict, gate: dict | None, labels: dict | None = None) -> list[str]:
    """The inner-loop signals their troubleshooting guide asks for (Moshi-TTT checkpoints); ``labels``: the
    backend's words for them (the run log's header, ``signal_labels``)."""
    sig = s.get("signals") or {}
    if not sig and gate is None:
        return []
    lines = ["🔧 Inner-Loop Signals:"]
    if gate is not None:
        lines.append(
            f"   effective gate tanh(clamp(alpha)): mean={gate['mean']:.4f}, min={gate['min']:.4f}, "
            f"max={gate['max']:.4f}"
        )
    for name, d in sig.items():
        label = (labels or {}).get(name, {}).get("long", name)
        lines.append(f"   {label}: mean={d['mean']:.4g}, min={d['min']:.4g}, max={d['max']:.4g}, last={d['last']:.4g}")
    return lines + [""]


def layer_section(
    layer_id: int,
    s: dict,
    verdict: str,
    fs: list[Finding],
    gate: dict | None = None,
    windows=None,
    labels: dict | None = None,
) -> list[str]:
    """``windows``: the layer's ``LayerWindows``, for the headline's time story (``headline``); ``labels``: the
    backend's words for its signals."""
    n = s["n_positions"]
    lines = ["=" * 60, f"LAYER {layer_id} ANALYSIS", "=" * 60, ""]
    lost = s.get("missing", 0)
    lines += ["📊 Data Coverage:", f"   Valid positions: {n - lost}"]
    if not n:
        return lines + ["", f"🔍 Verdict: {verdict}", ""]
    lines += [f"   Position range: 0 to {n - 1}"]
    if lost:
        lines += [f"   Lost to a damaged run log: {lost} (left out of every number)"]
    lines += [""]
    if s["nonfinite"]:
        lines += [f"   Non-finite positions (NaN/Inf): {s['nonfinite']}", ""]
    lines += ["📈 Loss Statistics:"]
    for name, label in (("l0", "l0 (W₀):     "), ("lprev", "lprev (Wₜ₋₁): "), ("lafter", "lafter (Wₜ):  ")):
        d = s[name]
        lines.append(f"   {label}mean={d['mean']:.6f}, std={d['std']:.6f}, min={d['min']:.6f}, max={d['max']:.6f}")
    lines += [
        "",
        "🎯 Learning Quality:",
        f"   Ordering violations: {s['violations']}/{n} ({s['violation_rate']:.1f}%)",
        f"   Avg per-step improvement: {s['avg_improvement']:.6f}",
        f"   Cumulative benefit, mean(l0 - lafter): {s['cumulative_benefit']:.6f}",
        f"   Context gain, mean(l0 - lprev): {s['context_gain']:.6f}",
        "",
    ]
    lines.append("🔍 Diagnosis:")
    shown = [f for f in fs if f.code != "LPREV_INCREASING"]
    if not shown:
        lines.append(f"   ✅ {HEALTHY_TEXT}")
    for f in shown:
        lines.append(f"   {ICON[f.severity]} {f.text}")
    said = describe(verdict, fs, windows)
    lines += [f"   Verdict: {said['headline']}"]
    if verdict_words(verdict, fs).endswith(WARNED):
        lines.append(f"   ({WARNED.strip()}: healthy, with the warnings above)")
    if said["over_time"] is not None:
        lines.append("   (overall: the whole run's verdict; then the regime over time that disagrees with it, below)")
    lines.append("")
    lines += signal_lines(s, gate, labels)
    if s["trend_available"] and not math.isnan(s["l0_trend"]):
        lines += [
            "📉 Trend Analysis:",
            f"   l0 trend: {s['l0_trend']:+.6f} {_trend_word(s['l0_trend'], 'improving')}",
            f"   lprev trend: {s['lprev_trend']:+.6f} {_lprev_trend_word(s, verdict)}",
            f"   l0 - lafter gap: first quarter {s['gap_first_quarter']:.6f}, last quarter "
            f"{s['gap_last_quarter']:.6f} ({'widening ✅' if s['gap_trend'] > 0 else 'not widening ❌'})",
        ]
        for f in fs:
            if f.code == "LPREV_INCREASING":
                lines += ["", f"   {ICON[f.severity]} {f.text}"]
        lines.append("")
    return lines


def render(run: dict, layers: dict[int, tuple[dict, str, list[Finding]]], outer: dict | None = None) -> str:
    lines = [
        "=" * 80,
        "TTT DIAGNOSTIC REPORT - Figure 5 Analysis",
        "=" * 80,
        "",
        "Expected healthy behavior: Blue > Orange > Green (decreasing over time)",
        "",
    ]
    lines += [
        f"Input: {_one_line(str(run.get('input')))}",
        f"Model: {run.get('model')}" + (f"  checkpoint: {run['checkpoint']}" if run.get("checkpoint") else ""),
        f"Device: {run.get('device')}",
        (
            f"Audio: {run.get('duration_s') or 0:.2f} s"
            + (f" at {run['sample_rate']} Hz" if run.get("sample_rate") else "")
            + f"; wall {run.get('wall_s') or 0:.2f} s"
            + (f" ({run['realtime_factor']:.1f}x real time)" if run.get("realtime_factor") else "")
            if run.get("position_unit") != "token"
            else f"Positions: {int(run.get('duration_s') or 0):,} tokens; wall {run.get('wall_s') or 0:.2f} s"
        ),
        "l0 at the stream-start weights W0; lprev before, lafter after the update that includes the token; "
        "every position kept (no cap).",
        MARKS_LINE,
        "",
    ]
    audit = run.get("audit") or []
    if audit:
        lines += ["🔎 Model audit (checkpoint vs training config vs what their code runs):"]
        for a in audit:
            lines += [f"   ⚠️  {a['finding']}", f"       -> {a['consequence']}"]
        lines.append("")
    notes = run.get("notes") or []
    if notes:
        lines += ["This run:"] + [f"   ℹ️  {n}" for n in notes] + [""]
    if run.get("nonfinite_samples"):
        lines += [
            f"⚠️  INPUT: {run['nonfinite_samples']} non-finite samples (NaN/Inf) in the audio were replaced by 0 "
            "before the model; the verdicts below are about the model, not the input.",
            "",
        ]
    for msg in run.get("decoder_messages") or []:
        lines += [f"ℹ️  the audio decoder said: {_one_line(msg)}"]
    if run.get("decoder_messages"):
        lines.append("")
    cut = run.get("cut_short")
    if cut and not cut.get("writer_alive"):
        lines += [
            f"⚠️  RUN CUT SHORT: its process ended without closing the run log (SIGKILL, the OOM killer, a lost "
            f"node?); this report, rebuilt from the log, covers {cut['audio_s']:.1f} s of audio "
            f"({cut['positions']} positions), every block up to the last one written.",
            "",
        ]
    damage = run.get("log_damage") or []
    if damage:
        lines += [
            f"⚠️  DAMAGED RUN LOG: {len(damage)} part(s) could not be used; their positions are left out of "
            "every number below:"
        ]
        lines += [f"   - {_one_line(d['text'])}" for d in damage[:20]]
        if len(damage) > 20:
            lines.append(f"   - ... and {len(damage) - 20} more (report.json: run.log_damage)")
        lines.append("")
    if run.get("interrupted") and not cut:
        lines += [f"⚠️  RUN INTERRUPTED ({run.get('stop_reason')}): this report covers the audio seen so far.", ""]
    if run.get("error"):
        lines += [f"❌ MODEL ERROR: {run['error']}", ""]
    if outer is not None:
        lines += text_lines(outer) + [""]
    gates = (run.get("model_details") or {}).get("effective_gate", {})
    for layer_id, (s, verdict, fs, lw) in layers.items():
        lines += layer_section(layer_id, s, verdict, fs, gates.get(str(layer_id)), lw, run.get("signal_labels"))
        lines += over_time(layer_id, lw)
    return "\n".join(lines) + "\n"


MAX_ROWS = 24  # a long run's windows are merged into at most this many rows
NO_REGIME = "(none yet)"  # no regime decided (yet)


def _merge(ws: list[dict], regimes: list) -> dict:
    """Consecutive windows as one row: means weighted by their positions; the regimes they span."""
    n = sum(w["n_positions"] for w in ws)

    def mean(key):
        vals = [
            (w[key], w["n_positions"])
            for w in ws
            if w[key] is not None and not math.isnan(w[key]) and w["n_positions"]  # all lost: no rows
        ]
        return sum(v * k for v, k in vals) / sum(k for _, k in vals) if vals else float("nan")

    seen = list(dict.fromkeys(r or NO_REGIME for r in regimes))
    return {
        "start_s": ws[0]["start_s"],
        "end_s": ws[-1]["end_s"],
        "n_positions": n,
        "violation_rate": mean("violation_rate"),
        "avg_improvement": mean("avg_improvement"),
        "cumulative_benefit": mean("cumulative_benefit"),
        "regime": " > ".join(seen),
    }


def over_time(layer_id: int, lw) -> list[str]:
    """The layer over consecutive windows (condensed for long runs) and its regime changes."""
    from ..analysis.units import span, when
    from ..analysis.windows import PERSIST, STATE_WORDS

    if not lw.windows:
        return []
    states = lw.window_states()
    group = -(-len(lw.windows) // MAX_ROWS)
    rows = [_merge(lw.windows[i : i + group], states[i : i + group]) for i in range(0, len(lw.windows), group)]
    merged = f", {group} windows per row" if group > 1 else ""
    w = max(8, *(len(when(r["end_s"], lw.unit)) for r in rows))  # mm:ss, h:mm:ss, or token 12,000
    lines = [
        f"⏱️  Over time (windows of {span(lw.window_s, lw.unit, None)}{merged}; "
        "regime: decided with standard errors, README):",
        f"   {'from':>{w}} {'to':>{w}} {'positions':>9} {'viol %':>7} {'improvement':>12} {'benefit':>9}  regime",
    ]
    for r in rows:
        lines.append(
            f"   {when(r['start_s'], lw.unit):>{w}} {when(r['end_s'], lw.unit):>{w}} {r['n_positions']:>9} "
            f"{r['violation_rate']:7.1f} {r['avg_improvement']:12.5f} {r['cumulative_benefit']:9.4f}  {r['regime']}"
        )
    lines.append("")
    changes = lw.changes(layer_id)
    if lw.regimes:
        lines.append(f"   From the start: {STATE_WORDS[lw.regimes[0]['state']]}.")
    for c in changes:
        lines.append(f"   🔀 {c['finding']}")
    if not changes and lw.regimes:
        lines.append("   No change of regime.")
    if any(st is None for st in states):
        lines.append(f"   regime {NO_REGIME}: no regime decided: that takes {PERSIST} windows with a clear state.")
    return lines + [""]
