"""``figure5_layer<L>.png``: the two panels of the users' plot (matplotlib, Agg backend), and below them the
layer's regime over time (``windows``) as a coloured strip."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..analysis.decimate import minmax_decimate

# Okabe-Ito's colour-blind-safe palette: green = learning, yellow = learning with warnings, orange/purple = not
# learning / not adapting, vermillion and black for the failures (olive and gold looked alike)
REGIME_COLOURS = {
    "HEALTHY": "#009E73",
    "ELEVATED_VIOLATIONS": "#F0E442",
    "NOT_ADAPTING": "#CC79A7",
    "NOT_LEARNING": "#E69F00",
    "DEGENERATIVE": "#D55E00",
    "EXPLODING": "#000000",
    None: "#d9d9d9",
}
LOSSES = (
    ("l0 (W₀, stream start)", "tab:blue"),
    ("lprev (before update)", "tab:orange"),
    ("lafter (after update)", "tab:green"),
)
IMPROVEMENT_COLOUR, BENEFIT_COLOUR = "purple", "teal"
BINS = 600  # per-bin means above this many positions: about one per two pixels of the 12-inch figure
SPREAD = (10, 90)  # the faint band behind a binned line: these percentiles of the bin's positions


def binned(y: np.ndarray, bins: int = BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Per bin of consecutive positions of ``y`` [n, k]: (centre position, mean, low, high percentile) over
    the finite values; None when ``y`` is short enough to draw every position."""
    n = y.shape[0]
    if n <= 4 * bins:
        return None
    edges = np.linspace(0, n, bins + 1).astype(np.int64)
    size = int(np.max(np.diff(edges)))
    # pad every bin to the same length with NaN, then nan-aware reductions along the bin: one pass
    idx = edges[:-1, None] + np.arange(size)[None, :]
    valid = idx < edges[1:, None]
    idx = np.minimum(idx, n - 1)
    k = y.shape[1]
    blocks = y[idx].astype(np.float64)  # [bins, size, k]
    blocks[~valid] = np.nan
    blocks[~np.isfinite(blocks)] = np.nan
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN bin: NaN, a gap in the line
        mean = np.nanmean(blocks, 1)
        lo, hi = np.nanpercentile(blocks, SPREAD, axis=1)
    centre = (edges[:-1] + edges[1:] - 1) / 2
    return centre, mean.reshape(-1, k), lo.reshape(-1, k), hi.reshape(-1, k)


def draw_series(ax, x_of, y: np.ndarray, colours, labels, lw: float = 1.0) -> bool:
    """The columns of ``y`` [n, k] against position (``x_of`` maps positions to the x axis): every position
    when short; else per-bin means as lines over a faint band of the bins' 10-90 % spread, so that the order
    of the lines and their gaps read at any length. True if binned."""
    b = binned(y)
    if b is None:
        pos = np.arange(y.shape[0])
        for c, (colour, label) in enumerate(zip(colours, labels, strict=True)):
            ax.plot(x_of(pos), y[:, c], color=colour, lw=lw * 0.8, label=label)
        return False
    centre, mean, lo, hi = b
    x = x_of(centre)
    for c, colour in enumerate(colours):
        ax.fill_between(x, lo[:, c], hi[:, c], color=colour, alpha=0.15, lw=0)
    for c, (colour, label) in enumerate(zip(colours, labels, strict=True)):
        ax.plot(x, mean[:, c], color=colour, lw=lw * 1.2, label=label)
    return True


def zero_aligned(ax_left, ax_right, left: np.ndarray, right: np.ndarray) -> None:
    """Limits for two y axes on their own scales, each with 0 in range and 0 at the same height (one zero
    line reads for both; a sign at a glance)."""
    spans = []
    for v in (left, right):
        v = v[np.isfinite(v)]
        lo, hi = (min(0.0, float(v.min())), max(0.0, float(v.max()))) if v.size else (0.0, 1.0)
        if hi == lo:
            hi = lo + 1.0
        pad = 0.05 * (hi - lo)
        spans.append((lo - (pad if lo < 0 else 0.0), hi + (pad if hi > 0 else 0.0)))
    f = max(-lo / (hi - lo) for lo, hi in spans)  # where 0 sits, from the bottom: the higher of the two
    for ax, (lo, hi) in zip((ax_left, ax_right), spans, strict=True):
        if -lo / (hi - lo) < f:  # lower the bottom until 0 sits at f
            lo = -f * hi / (1 - f) if f < 1 else lo
        ax.set_ylim(lo, hi)


def plot_layer(
    path: Path,
    layer_id: int,
    data: np.ndarray,
    frame_rate: float,
    note: str | None = None,
    windows=None,
    lost: int = 0,
    position_unit: str | None = None,
) -> None:
    """``windows``: the layer's ``LayerWindows``, drawn as the regime strip (none: two panels only); ``lost``:
    positions a damaged run log lost (NaN rows, drawn as gaps), said in the title. Long runs
    are drawn as per-bin means over a faint spread band (``draw_series``); the lower panel has the benefit
    on the left scale and the per-step improvement on its own right scale, zeros aligned."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = data.shape[0]
    strip = windows is not None and bool(windows.windows)
    if strip:
        fig, (top, bottom, band) = plt.subplots(3, 1, figsize=(12, 7.6), sharex=True, height_ratios=[3, 2, 0.35])
    else:
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 7), sharex=True, height_ratios=[3, 2])

    def same(p):
        return p

    binned_ = draw_series(top, same, data, [c for _, c in LOSSES], [name for name, _ in LOSSES])
    top.set_ylabel("loss (MSE per element)")
    how = f"; lines: means of bins of {n / BINS:.0f} positions, bands: their {SPREAD[0]}-{SPREAD[1]} %"
    timed = position_unit != "token"  # a text model's run: token positions, no seconds
    title = f"Layer {layer_id}: TTT Figure 5 ({n} positions" + (
        f", {_duration(n / frame_rate)} of audio" if timed else ""
    )
    title += (how if binned_ else "") + ")"
    if lost:
        title += f"; {lost} positions lost to a damaged run log (gaps)"
    if note:  # what the model's runtime semantics imply (e.g. l0 hidden under lprev by construction)
        title += f"\n{note}"
    top.set_title(title, fontsize=9 if (note or binned_) else None)
    top.legend(loc="upper right")
    top.grid(alpha=0.3)
    benefit = (data[:, 0] - data[:, 2])[:, None]
    improvement = (data[:, 1] - data[:, 2])[:, None]
    right = bottom.twinx()
    draw_series(bottom, same, benefit, [BENEFIT_COLOUR], ["cumulative benefit l0 - lafter (left scale)"])
    draw_series(right, same, improvement, [IMPROVEMENT_COLOUR], ["per-step improvement lprev - lafter (right scale)"])
    zero_aligned(bottom, right, benefit[:, 0], improvement[:, 0])
    bottom.axhline(0.0, color="black", ls="--", lw=0.8)
    bottom.set_ylabel("benefit l0 - lafter", color=BENEFIT_COLOUR)
    right.set_ylabel("improvement lprev - lafter", color=IMPROVEMENT_COLOUR)
    handles = bottom.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    bottom.legend(handles=handles, loc="upper right", fontsize=8)
    bottom.grid(alpha=0.3)
    last = bottom
    if strip:
        _regime_strip(band, windows, frame_rate)
        last = band
    last.set_xlabel("token position")
    if timed:
        unit, scale = ("minutes", 60.0) if n / frame_rate >= 600 else ("seconds", 1.0)
        sec = top.secondary_xaxis("top", functions=(lambda p: p / frame_rate / scale, lambda s: s * scale * frame_rate))
        sec.set_xlabel(f"{unit} of audio")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _duration(seconds: float) -> str:
    if seconds < 600:
        return f"{seconds:.1f} s"
    h, m = divmod(int(round(seconds / 60)), 60)
    return f"{h} h {m:02d} min" if h else f"{m} min"


def _regime_strip(ax, windows, frame_rate: float) -> None:
    """One coloured span per window: the regime it belongs to; the changes marked and named."""
    from matplotlib.patches import Patch

    states = windows.window_states()
    for w, st in zip(windows.windows, states, strict=True):
        ax.axvspan(w["start_s"] * frame_rate, w["end_s"] * frame_rate, color=REGIME_COLOURS.get(st, "#d9d9d9"), lw=0)
    for c in windows.changes():
        ax.axvline(c["at_s"] * frame_rate, color="black", lw=1.0)
    ax.set_yticks([])
    ax.set_ylabel("regime", rotation=0, ha="right", va="center")
    seen = list(dict.fromkeys(states))
    ax.legend(
        handles=[Patch(color=REGIME_COLOURS[s], label=s or "no regime decided (yet)") for s in seen],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.9),
        ncol=max(1, len(seen)),
        fontsize=8,
        frameon=False,
    )


def plot_outer(
    path: Path,
    values: np.ndarray,
    s: dict,
    frame_rate: float,
    note: str | None = None,
    band: np.ndarray | None = None,
    files: np.ndarray | None = None,
    max_points: int = 4000,
) -> None:
    """``outer_loss.png``: the outer loss per position (faint: every position, min/max decimated; solid: the
    running mean), the marks at 8k/16k/24k and the least-squares slope (``outer``). For a data set, ``values`` is
    the mean over files, ``band`` its 95 % half-width and ``files`` the files per position."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..analysis.outer import HALF, MARKS, mark_name

    v = np.asarray(values, dtype=np.float64)
    n = v.shape[0]
    pos = np.arange(n)
    fig, ax = plt.subplots(figsize=(12, 5.5))
    x, yy = minmax_decimate(pos, np.nan_to_num(v, nan=np.nanmean(v) if np.isfinite(v).any() else 0.0), max_points)
    ax.plot(x, yy, color="tab:red", lw=0.5, alpha=0.25, label="per position")
    w = max(min(25, n // 10), n // 200, 1)  # a few seconds at least, 1/200 of the run at most
    if n >= w:
        fin = np.isfinite(v)
        c = np.convolve(np.where(fin, v, 0.0), np.ones(w), "valid")
        k = np.convolve(fin.astype(float), np.ones(w), "valid")
        with np.errstate(invalid="ignore", divide="ignore"):
            ax.plot(pos[w - 1 :] - (w - 1) / 2, c / k, color="tab:red", lw=1.4, label=f"running mean ({w} positions)")
    if band is not None:
        lower = np.maximum(v - band, 0.0)  # a cross-entropy is never negative
        ax.fill_between(pos, lower, v + band, color="tab:red", alpha=0.15, lw=0, label="95 % band over files")
    for m in MARKS:
        val = s["at"].get(mark_name(m))
        if val is not None and np.isfinite(val):
            ax.axvspan(m - HALF, m + HALF, color="grey", alpha=0.15, lw=0)
            ax.annotate(f"{mark_name(m)}: {val:.3f}", (m, val), textcoords="offset points", xytext=(4, 8), fontsize=8)
    slope = s.get("slope_per_1k")
    if slope is not None and np.isfinite(slope):
        start = s["slope_from"]
        xs = np.array([start, n - 1], dtype=float)
        seg = v[start:]
        fin = np.isfinite(seg)
        mid = (start + n - 1) / 2
        y0 = float(seg[fin].mean()) if fin.any() else 0.0
        xf = np.arange(start, n)[fin].mean() if fin.any() else mid
        ax.plot(xs, y0 + (xs - xf) * slope / 1000, color="black", ls="--", lw=1.0, label=f"slope {slope:+.4f} / 1k")
    if files is not None:
        tw = ax.twinx()
        tw.plot(pos, files, color="grey", lw=0.8, ls=":")
        tw.set_ylabel("files at this position", color="grey")
        from matplotlib.ticker import MaxNLocator

        tw.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("token position")
    ax.set_ylabel("outer loss (audio-token cross-entropy)")
    title = f"Outer loss by position ({n} positions, {n / frame_rate:.1f} s), teacher-forced"
    if note:
        title += f"\n{note}"
    ax.set_title(title, fontsize=None if not note else 9)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    sec = ax.secondary_xaxis("top", functions=(lambda p: p / frame_rate, lambda s: s * frame_rate))
    sec.set_xlabel("seconds of audio")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
