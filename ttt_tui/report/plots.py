"""``figure5_layer<L>.png``: the two panels of the users' plot (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..decimate import minmax_decimate


def plot_layer(
    path: Path, layer_id: int, data: np.ndarray, frame_rate: float, max_points: int = 4000, note: str | None = None
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = data.shape[0]
    pos = np.arange(n)
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
    bottom.set_xlabel("token position")
    bottom.set_ylabel("loss difference")
    bottom.legend(loc="upper right")
    bottom.grid(alpha=0.3)
    sec = top.secondary_xaxis("top", functions=(lambda p: p / frame_rate, lambda s: s * frame_rate))
    sec.set_xlabel("seconds of audio")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
