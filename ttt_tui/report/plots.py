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
