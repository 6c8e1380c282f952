"""``figure5_layer<L>.png``: the two panels of the users' plot (matplotlib, Agg backend), and below them the
layer's regime over time (``windows``) as a coloured strip."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..decimate import minmax_decimate

REGIME_COLOURS = {
    "HEALTHY": "#2ca02c",
    "ELEVATED_VIOLATIONS": "#bcbd22",
    "NOT_ADAPTING": "#ff7f0e",
    "NOT_LEARNING": "#ffd700",
    "DEGENERATIVE": "#d62728",
    "EXPLODING": "#7f0000",
    None: "#d9d9d9",
}


def plot_layer(
    path: Path,
    layer_id: int,
    data: np.ndarray,
    frame_rate: float,
    max_points: int = 4000,
    note: str | None = None,
    windows=None,
) -> None:
    """``windows``: the layer's ``LayerWindows``, drawn as the regime strip (none: two panels only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = data.shape[0]
    pos = np.arange(n)
    strip = windows is not None and bool(windows.windows)
    if strip:
        fig, (top, bottom, band) = plt.subplots(3, 1, figsize=(12, 7.6), sharex=True, height_ratios=[3, 2, 0.35])
    else:
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 7), sharex=True, height_ratios=[3, 2])
    series = [
        ("l0 (W₀, stream start)", data[:, 0], "tab:blue"),
        ("lprev (before update)", data[:, 1], "tab:orange"),
        ("lafter (after update)", data[:, 2], "tab:green"),
    ]
    for label, y, colour in series:
        x, yy = minmax_decimate(pos, y, max_points)
        top.plot(x, yy, color=colour, lw=0.8, label=label)
    top.set_ylabel("loss (MSE per element)")
    title = f"Layer {layer_id}: TTT Figure 5 ({n} positions, {n / frame_rate:.1f} s of audio)"
    if note:  # what the model's runtime semantics imply (e.g. l0 hidden under lprev by construction)
        title += f"\n{note}"
    top.set_title(title, fontsize=None if not note else 9)
    top.legend(loc="upper right")
    top.grid(alpha=0.3)
    for label, y, colour in (
        ("per-step improvement lprev - lafter", data[:, 1] - data[:, 2], "purple"),
        ("cumulative benefit l0 - lafter", data[:, 0] - data[:, 2], "teal"),
    ):
        x, yy = minmax_decimate(pos, y, max_points)
        bottom.plot(x, yy, color=colour, lw=0.8, label=label)
    bottom.axhline(0.0, color="black", ls="--", lw=0.8)
    bottom.set_ylabel("loss difference")
    bottom.legend(loc="upper right")
    bottom.grid(alpha=0.3)
    last = bottom
    if strip:
        _regime_strip(band, windows, frame_rate)
        last = band
    last.set_xlabel("token position")
    sec = top.secondary_xaxis("top", functions=(lambda p: p / frame_rate, lambda s: s * frame_rate))
    sec.set_xlabel("seconds of audio")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
    seen = [s for s in dict.fromkeys(states) if s is not None]
    ax.legend(
        handles=[Patch(color=REGIME_COLOURS[s], label=s) for s in seen],
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

    from ..outer import HALF, MARKS, mark_name

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
        ax.fill_between(pos, v - band, v + band, color="tab:red", alpha=0.15, lw=0, label="95 % band over files")
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
