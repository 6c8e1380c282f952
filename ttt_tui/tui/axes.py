"""Chart axes whose tick labels name the value of their row.

plotext places a value ``v`` of a series drawn with a marker of ``f`` sub-rows per row (braille 4, hd 2,
plain characters 1) on sub-row ``floor(0.5 + (f*H - 1) * (v - lo) / (hi - lo))`` of an ``H``-row canvas, and
a tick (or an ``hline``) on row ``floor(0.5 + (H - 1) * (v - lo) / (hi - lo))``: two different geometries. Its
own ticks (7 evenly spaced values of ``[lo, hi]``) collide on short charts, and a label can sit a row away from
the values drawn beside it (measured: an ``l0`` of 1.89 on the row labelled 1.38).

So the axis is chosen here: a "nice" value per row (``pitch``: 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 times a
power of ten, the smallest that fits the data in ``H`` rows), row ``r``'s centre at ``first + r * pitch`` with
``first`` a multiple of the pitch (so 0 is a row centre whenever it is in range), and ``lo``/``hi`` set so
that the centre of row ``r`` in the series' geometry is exactly that value:
``lo = first - pitch * (f - 1) / (2 f)``, ``hi = lo + pitch * (f H - 1) / f``. Ticks go at row centres
(every row, or every 2nd, 5th, ... on tall charts, at round multiples), and a tick at a centre falls on that
very row in plotext's tick geometry too. A label then names the value at the centre of its row; what is drawn
on the row lies within half a row of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

NICE = (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)
LABEL_EVERY = (1, 2, 5, 10, 20, 50)
MAX_LABELS = 7  # at most this many labelled rows; at least a blank row between labels once there are more


def marker_rows(marker: str) -> int:
    """Sub-rows per terminal row of a plotext marker."""
    return {"braille": 4, "fhd": 3, "hd": 2}.get(marker, 1)


def nice_at_least(x: float) -> float:
    """The smallest NICE x 10^k that is >= x (x > 0)."""
    k = math.floor(math.log10(x))
    for _ in range(3):
        for m in NICE:
            v = m * 10.0**k
            if v >= x * (1 - 1e-12):
                return v
        k += 1
    return 10.0 ** (k + 1)


def nice_above(x: float) -> float:
    """The next NICE value after ``x`` (a NICE value itself)."""
    return nice_at_least(x * 1.0001)


@dataclass
class Axis:
    """One y axis of a chart of ``rows`` canvas rows: plotext's limits, and the ticks at row centres."""

    rows: int
    pitch: float  # value per row
    first: float  # value at the centre of the bottom row (row 0)
    lo: float  # plotext ylim
    hi: float
    ticks: list  # values at the centres of the labelled rows
    labels: list  # what each tick says
    log: bool = False  # values are log10 of what the labels say

    def centre(self, row: int) -> float:
        """The value at the centre of ``row`` (0 = the bottom row)."""
        return self.first + row * self.pitch

    def row_of(self, value: float) -> float:
        """Where ``value`` sits, in rows from the bottom row's centre (fractional)."""
        return (value - self.first) / self.pitch

    def snap(self, value: float) -> float:
        """The centre of the row nearest to ``value`` (a reference line drawn there is on the row that
        names the nearest value; plotext rounds lines in another geometry than the series)."""
        return self.centre(min(self.rows - 1, max(0, round(self.row_of(value)))))


def _decimals(values: list, step: float) -> int:
    """The fewest decimals that write every value exactly (to a millionth of ``step``)."""
    for d in range(0, 10):
        if all(abs(round(v, d) - v) <= abs(step) * 1e-6 for v in values):
            return d
    return 10


def _fit(vmin: float, vmax: float, rows: int, pitch: float) -> tuple[float, bool]:
    """The bottom row's centre for ``pitch``, and whether [vmin, vmax] fits in ``rows`` rows with it."""
    first = math.floor(vmin / pitch + 1e-9) * pitch
    return first, first + (rows - 1) * pitch >= vmax - abs(pitch) * 1e-9


def choose_pitch(vmin: float, vmax: float, rows: int) -> tuple[float, float]:
    """(pitch, first): the smallest nice pitch whose rows, starting at a multiple of it, cover [vmin, vmax]."""
    span = vmax - vmin
    pitch = nice_at_least(span / max(1, rows - 1)) if span > 0 else nice_at_least(max(abs(vmax), 1e-9) * 0.1)
    for _ in range(40):
        first, ok = _fit(vmin, vmax, rows, pitch)
        if ok:
            return pitch, first
        pitch = nice_above(pitch)
    return pitch, _fit(vmin, vmax, rows, pitch)[0]


def _labelled_rows(axis_rows: int, first: float, pitch: float, keep: tuple = ()) -> list[int]:
    """Which rows get a label: every m-th, at round multiples (m * pitch), plus the rows of ``keep``."""
    for m in LABEL_EVERY:
        rows = [
            r
            for r in range(axis_rows)
            if abs(round((first + r * pitch) / (m * pitch)) * m * pitch - (first + r * pitch)) <= pitch * 1e-6
        ]
        if len(rows) <= MAX_LABELS or m == LABEL_EVERY[-1]:
            break
    for v in keep:
        r = round((v - first) / pitch)
        if 0 <= r < axis_rows and abs(first + r * pitch - v) <= pitch * 1e-6 and r not in rows:
            rows = sorted([x for x in rows if abs(x - r) > 1] + [r])
    return rows


def make_axis(
    vmin: float,
    vmax: float,
    rows: int,
    sub_rows: int = 2,
    include: tuple = (),
    log: bool = False,
    pitch: float | None = None,
    first: float | None = None,
) -> Axis:
    """An axis of ``rows`` canvas rows for data in [vmin, vmax] (and the values of ``include``, e.g. 0 or the
    10 %/50 % lines, which are then labelled), for series drawn with ``sub_rows`` sub-rows per row. ``log``:
    the values are log10 of the quantity; labels say the quantity. ``pitch``/``first``: given (axes that
    share their zero row)."""
    rows = max(1, int(rows))
    vals = [v for v in (vmin, vmax, *include) if v is not None and math.isfinite(v)]
    lo_v, hi_v = (min(vals), max(vals)) if vals else (0.0, 1.0)
    if pitch is None or first is None:
        pitch, first = choose_pitch(lo_v, hi_v, rows)
        # reference values (0, 10 %, 50 %) on row centres, labelled, if a pitch at most twice as coarse allows
        marks = [v for v in include if v is not None and math.isfinite(v)]
        p = pitch
        while marks and p <= 2 * pitch * (1 + 1e-9):
            if all(abs(v / p - round(v / p)) < 1e-6 for v in marks):
                pitch, first = p, _fit(lo_v, hi_v, rows, p)[0]
                break
            p = nice_above(p)
    f = max(1, sub_rows)
    lo = first - pitch * (f - 1) / (2 * f)
    hi = lo + pitch * (f * rows - 1) / f
    labelled = _labelled_rows(rows, first, pitch, tuple(include))
    ticks = [first + r * pitch for r in labelled]
    ticks = [0.0 if abs(t) <= pitch * 1e-6 else t for t in ticks]  # no "-0.00"
    if log:  # the loss itself, with the significant digits that keep it within 2 % of a row of its row
        for digits in range(2, 8):
            labels = [f"{10.0**t:.{digits}g}" for t in ticks]
            if all(abs(math.log10(float(x)) - t) <= 0.02 * pitch for x, t in zip(labels, ticks, strict=True)):
                break
    else:
        d = _decimals(ticks, pitch)
        labels = [f"{t:.{d}f}" for t in ticks]
    return Axis(rows, pitch, first, lo, hi, ticks, labels, log)


def shared_zero_axes(ranges: list, rows: int, sub_rows: int = 2) -> list[Axis]:
    """Axes for several series on their own scales (left and right) that put 0 on the same row, so that one
    zero line serves all and a sign reads at a glance: each range is widened to include 0, and the zero row
    is the one that leaves the finest pitches (the product of the pitches, smallest)."""
    rows = max(1, int(rows))
    spans = []
    for vmin, vmax in ranges:
        vmin = min(0.0, vmin if math.isfinite(vmin) else 0.0)
        vmax = max(0.0, vmax if math.isfinite(vmax) else 0.0)
        spans.append((vmin, vmax))
    best = None
    for z in range(rows):  # the zero row
        pitches = []
        for vmin, vmax in spans:
            need = []
            if vmin < 0:
                need.append(-vmin / z if z > 0 else math.inf)
            if vmax > 0:
                need.append(vmax / (rows - 1 - z) if rows - 1 - z > 0 else math.inf)
            need = max(need, default=0.0)
            if math.isinf(need):
                break
            pitches.append(nice_at_least(need) if need > 0 else nice_at_least(max(abs(vmin), abs(vmax), 1e-9)))
        else:
            score = sum(math.log(p) for p in pitches)
            if best is None or score < best[0]:
                best = (score, z, pitches)
    if best is None:  # one row: nothing but the zero row
        return [make_axis(vmin, vmax, rows, sub_rows, include=(0.0,)) for vmin, vmax in spans]
    _, z, pitches = best
    return [
        make_axis(vmin, vmax, rows, sub_rows, include=(0.0,), pitch=p, first=-z * p)
        for (vmin, vmax), p in zip(spans, pitches, strict=True)
    ]


def x_ticks(lo: float, hi: float, columns: int, label_width: int = 7) -> tuple[list, list]:
    """Round x ticks inside [lo, hi], about one per ``3 * label_width`` columns."""
    if not hi > lo:
        return [lo], [f"{lo:g}"]
    count = max(2, columns // (3 * label_width))
    step = nice_at_least((hi - lo) / count)
    start = math.ceil(lo / step - 1e-9) * step
    ticks = [start + i * step for i in range(int((hi - start) / step + 1e-9) + 1)]
    d = _decimals(ticks, step)
    return ticks, [f"{t:.{d}f}" for t in ticks]


CHROME_ROWS = 3  # what plotext draws around the canvas of our charts: the box's two lines and the x tick labels
# (no title, no axis labels: the dashboard says those on the panel's border; tests/test_axes.py reads it back)


def canvas_rows(plot_height: int, title: bool = False, xlabel: bool = False) -> int:
    """The canvas rows of a chart ``plot_height`` rows tall; a title and an x label take a row each."""
    return max(1, plot_height - CHROME_ROWS - int(title) - int(xlabel))


def finite_range(arrays) -> tuple[float, float]:
    """Min and max over the finite values of ``arrays`` (nan, nan when there is none)."""
    lo, hi = math.inf, -math.inf
    for a in arrays:
        for v in a:
            if math.isfinite(v):
                lo, hi = min(lo, v), max(hi, v)
    return (lo, hi) if lo <= hi else (math.nan, math.nan)


def robust_range(values, low: float = 5.0, high: float = 95.0) -> tuple[float, float]:
    """The ``low``-``high`` percentile range of the finite ``values`` (nan, nan when there is none)."""
    import numpy as np

    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not v.size:
        return (math.nan, math.nan)
    lo, hi = np.percentile(v, [low, high])
    return float(lo), float(hi)


def apply_y(plt, axis: Axis, yside: str = "left") -> None:
    """The axis on a textual-plotext figure: its limits and its ticks at row centres."""
    plt.ylim(axis.lo, axis.hi, yside=yside)
    plt.yticks(axis.ticks, axis.labels, yside=yside)


def apply_x(plt, lo: float, hi: float, columns: int) -> None:
    """The window shown, whole, with round ticks (plotext's own ticks follow the data, not the window)."""
    hi = hi if hi > lo else lo + 1.0
    plt.xlim(lo, hi)
    plt.xticks(*x_ticks(lo, hi, columns))
