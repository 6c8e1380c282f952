"""The words that head a layer, the same on every screen and in every file (dashboard badge, headless progress,
text report, report.json, compare, eval).

The whole-run verdict comes first: ``HEALTHY (!)`` is HEALTHY with a warning (10-50 % ordering violations, or an
abnormal loss range), every other verdict is its own word. A whole-run mean can hide what happened over time (a
layer that learned for ten minutes and then stopped for twenty is HEALTHY on average), so where the regimes over
time (``windows``) disagree with the verdict, the headline says both:

- the regime now differs from the verdict: ``HEALTHY (!) overall · NOT_LEARNING 64 % of the audio, since
  28:30`` (its share of the audio is that of every window in a regime of that state);
- else, a regime that differs from the verdict covers more than half of the audio: ``NOT_LEARNING overall ·
  HEALTHY 70 % of the audio, until 21:00``.

A regime agrees with the verdict when it has the verdict's name; the regime ELEVATED_VIOLATIONS (learning, with
10-50 % violations) agrees with HEALTHY, which it is with a warning.
"""

from __future__ import annotations

from .diagnosis import Finding
from .units import when, whole

WARNED = " (!)"
SEPARATOR = " · "


def verdict_words(verdict: str, fs: list[Finding]) -> str:
    """The whole-run verdict in words: HEALTHY with a warning is ``HEALTHY (!)``."""
    warned = verdict == "HEALTHY" and any(f.severity == "warning" for f in fs)
    return verdict + WARNED if warned else verdict


def _agrees(state: str, verdict: str) -> bool:
    return state == verdict or (verdict == "HEALTHY" and state == "ELEVATED_VIOLATIONS")


def over_time(verdict: str, windows) -> dict | None:
    """Where the regimes of ``windows`` (a ``LayerWindows``) disagree with ``verdict``: ``{state, share, since,
    until}`` (share of the audio in [0, 1]; ``since``/``until`` in seconds, one of them None); else None."""
    if windows is None or not windows.regimes or not windows.windows:
        return None
    states = windows.window_states()
    spans: dict[str, float] = {}
    for w, st in zip(windows.windows, states, strict=True):
        if st is not None:
            spans[st] = spans.get(st, 0.0) + (w["end_s"] - w["start_s"])
    total = windows.windows[-1]["end_s"] - windows.windows[0]["start_s"]
    if total <= 0:
        return None
    now = windows.regimes[-1]
    if not _agrees(now["state"], verdict):
        share = spans.get(now["state"], 0.0) / total
        return {"state": now["state"], "share": share, "since": now["start_s"], "until": None, "unit": windows.unit}
    for reg in windows.regimes:
        share = spans.get(reg["state"], 0.0) / total
        if not _agrees(reg["state"], verdict) and share > 0.5:
            last = max(j for j, r in enumerate(windows.regimes) if r["state"] == reg["state"])
            until = windows.regimes[last + 1]["start_s"]  # not the last regime: that one agrees
            return {"state": reg["state"], "share": share, "since": None, "until": until, "unit": windows.unit}
    return None


def story_words(t: dict | None) -> str:
    """``over_time``'s answer in words: `` overall · NOT_LEARNING 64 % of the audio, since 28:30`` (or "")."""
    if t is None:
        return ""
    unit = t.get("unit")
    at = f"since {when(t['since'], unit)}" if t["since"] is not None else f"until {when(t['until'], unit)}"
    return f" overall{SEPARATOR}{t['state']} {100 * t['share']:.0f} % of {whole(unit)}, {at}"


def describe(verdict: str, fs: list[Finding], windows=None) -> dict:
    """``{verdict, headline, over_time}``: what report.json, compare and eval say of a layer (one computation)."""
    story = over_time(verdict, windows)
    return {"verdict": verdict, "headline": verdict_words(verdict, fs) + story_words(story), "over_time": story}


def headline(verdict: str, fs: list[Finding], windows=None) -> str:
    """The layer's headline: the verdict's words, and the time story where it disagrees (module docstring)."""
    return describe(verdict, fs, windows)["headline"]


def layer_headline(store, layer_id: int, window_s: float | None = None) -> dict:
    """One layer of a stored run: ``{verdict, headline, over_time}`` (compare and eval read runs this way)."""
    from .diagnosis import diagnose
    from .windows import DEFAULT_WINDOW_S, layer_windows

    verdict, fs = diagnose(store.summary(layer_id))
    data, valid = store.view(layer_id)[1], store.valid(layer_id)
    lw = layer_windows(data, store.frame_rate, window_s or DEFAULT_WINDOW_S, valid, store.position_unit)
    return describe(verdict, fs, lw)
