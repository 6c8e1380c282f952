"""What the dashboard writes, as text: the colours and styles every screen shares, number formats, the
findings box's condensing and a layer's counters. Pure functions of the numbers (no Textual here): tested
without a screen."""

from __future__ import annotations

import math

from rich.text import Text

from ..analysis.headline import WARNED, over_time, story_words
from ..analysis.units import span, timed, when, whole

COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44))  # l0, lprev, lafter: the PNG colours
VIEW_COLOURS = {
    "losses": COLOURS,
    "gains": ((190, 110, 230), (0, 175, 175)),  # improvement (purple), benefit (teal): the PNG's lower panel
    "violations": ((214, 39, 40),),
}
BACKGROUND = (30, 30, 30)


def faint(colour: tuple, share: float = 0.4) -> tuple:
    """The colour mixed into the background: the band behind a line."""
    return tuple(int(share * c + (1 - share) * b) for c, b in zip(colour, BACKGROUND, strict=True))


VERDICT_STYLE = {
    "HEALTHY": "bold black on green",
    "NOT_ADAPTING": "bold black on yellow",
    "NOT_LEARNING": "bold black on yellow",
    "DEGENERATIVE": "bold white on red",
    "EXPLODING": "bold white on red",
    "NO_DATA": "bold white on grey37",
}
REGIME_STYLE = {"ELEVATED_VIOLATIONS": "bold black on yellow"}
STATE_STYLE = {
    "starting": "blue",
    "running": "green",
    "paused": "yellow",
    "finished": "cyan",
    "stopped": "yellow",
    "error": "red",
}


def short_path(path) -> str:
    """The report folder as the user can type it: relative when it lies inside the working folder (the default
    ttt_tui_reports/...), else the full path."""
    import os

    full = str(path)
    try:
        rel = os.path.relpath(full)
    except ValueError:
        return full
    return rel if len(rel) < len(full) and not rel.startswith("..") else full


def fmt(x: float, digits: int = 4) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def condense(entries: list, rows: int) -> list:
    """The findings lines that fit ``rows`` rows: all of them if they fit; else each layer's first line (a
    change of regime, or its most severe finding) and the run's first line, then the others in order, and a
    last line that says how many are hidden and where they are."""
    if len(entries) <= rows:
        return [t for _, t in entries]
    room = max(1, rows - 1)
    keep: list[int] = []
    seen: set = set()
    for i, (group, _) in enumerate(entries):  # one line per layer (and for the run) first
        if group not in seen and len(keep) < room:
            seen.add(group)
            keep.append(i)
    for i in range(len(entries)):
        if len(keep) >= room:
            break
        if i not in keep:
            keep.append(i)
    hidden = len(entries) - len(keep)
    more = Text(
        f"… {hidden} more line{'s' if hidden > 1 else ''}: the box scrolls; all are in the report",
        style="dim",
        no_wrap=True,
        overflow="ellipsis",
    )
    return [entries[i][1] for i in sorted(keep)] + [more]


def counters_text(
    layer_id: int,
    s: dict,
    verdict: str,
    frame_rate: float,
    words: str = "",
    markers: tuple = (),
    signals: dict | None = None,
    gate: dict | None = None,
    *,
    mode: str = "losses",
    recent: dict | None = None,
    windows=None,
    narrow: bool = False,
    collapsed: bool = False,
    labels: dict | None = None,
    unit: str | None = None,
) -> Text:
    """A layer's counters: the whole run, the chart's legend for its view, the last window and the regime
    (``recent``: ``windows.sliding_summary``; ``windows``: the layer's ``LayerWindows``). ``words``: the
    verdict's words (``headline.verdict_words``), followed by the time story where the regimes disagree with
    it. ``collapsed``: one line (small terminals, a layer that is not selected). ``labels``: the backend's words
    for its signals (the run log's header)."""
    t = Text(no_wrap=True, overflow="ellipsis")
    words = words or verdict
    style = "bold black on yellow" if words.endswith(WARNED) else VERDICT_STYLE.get(verdict, "")
    if collapsed:
        t.append(f"layer {layer_id} ", style="bold")
    t.append(f" {words} ", style=style)
    story = over_time(verdict, windows)
    short = narrow or collapsed  # under 120 columns the numbers keep line 1, the story goes with the regime
    if story is not None and not short:  # the whole-run verdict hides a regime: say both (``headline``)
        colour = (VERDICT_STYLE.get(story["state"]) or REGIME_STYLE.get(story["state"], "yellow")).split()[-1]
        t.append(story_words(story).lstrip(), style=f"bold {colour}")  # after the badge's own space
    elif story is not None:
        t.append("overall", style="bold")
    n = s["n_positions"]
    if collapsed:  # one line of at most 80 columns: the numbers, then the regime
        t.append(
            f" viol {s['violation_rate']:.1f}%  imp {fmt(s['avg_improvement'])}  ben {fmt(s['cumulative_benefit'], 3)}"
        )
    elif narrow:
        t.append(
            f" {n} pos  viol {s['violation_rate']:.1f}%  imp {fmt(s['avg_improvement'])}  "
            f"ben {fmt(s['cumulative_benefit'], 3)}"
        )
    else:
        t.append(
            f"  positions {n}{f' ({n / frame_rate:.1f} s)' if timed(unit) else ''}  violations {s['violations']} "
            f"({s['violation_rate']:.2f}%)  improvement {fmt(s['avg_improvement'])}  "
            f"benefit {fmt(s['cumulative_benefit'])}"
        )
    if s["nonfinite"] or not (narrow or collapsed):
        t.append(f"  NaN/Inf {s['nonfinite']}", style="bold red" if s["nonfinite"] else "")
    if s.get("missing"):  # positions a damaged run log lost (named in the findings)
        t.append(f"  lost {s['missing']}", style="bold red")
    if collapsed:
        _regime(t, windows, short=True, story=story)
        return t
    t.append("\n ")
    _legend(t, s, mode, markers, narrow)
    t.append("\n ")
    if recent is not None and windows is not None:
        length = span(windows.window_s, windows.unit, None)
        label = f"last {length}" if not narrow else length.replace(" s", "s").replace(" tokens", "t")
        t.append(f"{label}: ", style="bold")
        t.append(
            f"viol {recent['violation_rate']:.1f}%  imp {fmt(recent['avg_improvement'])}  "
            f"ben {fmt(recent['cumulative_benefit'], 3)}  "
        )
    _regime(t, windows, short=narrow, story=story if narrow else None)
    if signals is not None or gate is not None:  # the inner-loop signals (Moshi-TTT checkpoints)
        t.append("\n ")
        if gate is not None:
            t.append(f"gate {gate['mean']:.3f} [{gate['min']:.3f}..{gate['max']:.3f}]  ")
        for name, d in (signals or {}).items():  # the backend's words for them (the log's header)
            label = (labels or {}).get(name, {}).get("short", name)
            t.append(f"{label} {d['last']:.3g} (mean {d['mean']:.3g})  ")
    return t


def _legend(t: Text, s: dict, mode: str, markers: tuple, narrow: bool) -> None:
    """The legend of the chart below: exactly its colours, with the whole run's means."""
    if mode == "losses":
        shapes = markers if len(set(markers)) == 3 else ("", "", "")
        for name, (r, g, b), shape in zip(("l0", "lprev", "lafter"), COLOURS, shapes, strict=True):
            t.append(f"{name}{f' ({shape})' if shape else ''} ", style=f"bold rgb({r},{g},{b})")
            t.append(f"{fmt(s[name]['mean'])}  ")
        if not narrow and s["trend_available"] and not math.isnan(s["lprev_trend"]):
            t.append(f" trends: l0 {s['l0_trend']:+.4f}  lprev {s['lprev_trend']:+.4f}  gap {s['gap_trend']:+.4f}")
    elif mode == "gains":
        (r1, g1, b1), (r2, g2, b2) = VIEW_COLOURS["gains"]
        t.append("improvement lprev-lafter ", style=f"bold rgb({r1},{g1},{b1})")
        t.append(f"{fmt(s['avg_improvement'])} (right scale)  ")
        t.append("benefit l0-lafter ", style=f"bold rgb({r2},{g2},{b2})")
        t.append(f"{fmt(s['cumulative_benefit'])} (left scale)  ")
        t.append(f"(context gain l0-lprev {fmt(s['context_gain'])})")
    else:
        (r, g, b) = VIEW_COLOURS["violations"][0]
        t.append("ordering violations % ", style=f"bold rgb({r},{g},{b})")
        t.append(f"{s['violation_rate']:.2f}% over the run; lines at 10 % (healthy below) and 50 %")


def _regime(t: Text, windows, short: bool, story: dict | None = None) -> None:
    """The layer's regime now (decided over windows, ``windows``) and its last change; ``story``
    (``headline.over_time``) when it disagrees with the verdict: its share of the audio too."""
    if windows is None or windows.state is None:
        return
    reg = windows.regimes[-1]
    t.append("  ")
    t.append(f" {windows.state} ", style=VERDICT_STYLE.get(windows.state, REGIME_STYLE.get(windows.state, "")))
    if story is not None and story["state"] == windows.state:  # short: "65 %" of the audio
        t.append(f" {100 * story['share']:.0f} %{',' if short else f' of {whole(windows.unit)},'}")
    t.append(f" since {when(reg['start_s'], windows.unit)}")
    if len(windows.regimes) > 1 and not short:
        prev = windows.regimes[-2]["state"]
        t.append(f" (was {prev}; {len(windows.regimes) - 1} change{'s' if len(windows.regimes) > 2 else ''})")
