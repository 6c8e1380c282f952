"""``ttt-tui compare DIR_A DIR_B [...]``: several runs side by side, read from their run logs ("did TTT get
better between checkpoint_010000 and checkpoint_033000?"). Per common layer: each run's verdict, violation rate,
improvement and benefit, and a plot of each run's ``l0 - lafter`` gap and per-step improvement overlaid. Runs
of different lengths, layers or models: what is common is compared, and what is not is said."""

from __future__ import annotations

import json
from pathlib import Path

from ..analysis import outer as outer_stats
from ..analysis.headline import layer_headline
from ..record.files import atomic
from ..record.runlog import read_run, run_info
from . import _clean
from .plots import BINS, SPREAD, draw_series


def _label(info: dict, folder: Path) -> str:
    ck = info.get("checkpoint")
    if ck:
        parts = Path(ck).parts
        named = [p for p in parts if p.startswith("checkpoint_")]
        return named[-1] if named else Path(ck).name
    return f"{Path(str(info.get('input', folder.name))).name} ({folder.name})"


def compare_runs(folders: list[str | Path]) -> dict:
    """The comparison of the runs in ``folders`` (each a report folder with a run log)."""
    runs = []
    for f in folders:
        logged = read_run(f)
        info = run_info(logged)
        layers = {}
        for layer_id in logged.store.layer_ids:
            s = logged.store.summary(layer_id)
            layers[layer_id] = {
                **layer_headline(logged.store, layer_id, info.get("window_s")),  # verdict, headline, over_time
                "n_positions": s["n_positions"],
                "violation_rate": s["violation_rate"],
                "avg_improvement": s["avg_improvement"],
                "cumulative_benefit": s["cumulative_benefit"],
                "l0_mean": s["l0"]["mean"],
                "lafter_mean": s["lafter"]["mean"],
            }
        runs.append((logged, info, layers))
    labels = [_label(info, logged.folder) for logged, info, _ in runs]
    if len(set(labels)) < len(labels):
        labels = [f"{lab} #{i + 1}" for i, lab in enumerate(labels)]
    common = sorted(set.intersection(*(set(layers) for _, _, layers in runs)))
    notes = []
    for (_, info, layers), lab in zip(runs, labels, strict=True):
        extra = sorted(set(layers) - set(common))
        if extra:
            notes.append(f"{lab}: layers {extra} are not in every run (not compared)")
        if info.get("cut_short"):
            notes.append(f"{lab}: cut short after {info['cut_short']['audio_s']:.1f} s of audio")
    durations = {lab: info.get("duration_s") for (_, info, _), lab in zip(runs, labels, strict=True)}
    if len({d for d in durations.values()}) > 1:
        notes.append(
            "the runs cover different lengths of audio: " + ", ".join(f"{k} {v} s" for k, v in durations.items())
        )
    models = {info.get("model") for _, info, _ in runs}
    if len(models) > 1:
        notes.append("the runs are of different models: " + "; ".join(sorted(map(str, models))))
    return {
        "runs": [
            {
                "label": lab,
                "folder": str(logged.folder),
                "input": info.get("input"),
                "model": info.get("model"),
                "checkpoint": info.get("checkpoint"),
                "duration_s": info.get("duration_s"),
                "state": info.get("state"),
                "layers": {str(k): v for k, v in layers.items()},
                **({"outer_loss": _outer(logged.store)} if logged.store.has_outer else {}),
            }
            for (logged, info, layers), lab in zip(runs, labels, strict=True)
        ],
        "common_layers": common,
        "notes": notes,
        "_stores": [(lab, logged.store) for (logged, _, _), lab in zip(runs, labels, strict=True)],
    }


def _outer(store) -> dict:
    """A teacher-forced run's outer loss: what two checkpoints are compared on first."""
    o = outer_stats.summary(store.outer_view(), store.frame_rate)
    return {k: o[k] for k in ("n_positions", "mean", "at", "slope_per_1k", "slope_ci95_per_1k")}


def render_text(cmp: dict) -> str:
    lines = ["=" * 80, "TTT RUN COMPARISON", "=" * 80, ""]
    for r in cmp["runs"]:
        lines.append(f"{r['label']}: {r['folder']}  ({r['duration_s']} s of audio, {r['state']})")
    lines.append("")
    for note in cmp["notes"]:
        lines.append(f"ℹ️  {note}")
    if cmp["notes"]:
        lines.append("")
    width = max(len(r["label"]) for r in cmp["runs"])
    with_outer = [r for r in cmp["runs"] if "outer_loss" in r]
    if with_outer:
        lines.append("OUTER LOSS (teacher-forced runs)")
        for r in with_outer:
            o = r["outer_loss"]
            lines.append(f"   {r['label']:<{width}}  " + outer_stats.screen_line(o, f"{o['n_positions']} positions"))
        lines.append("")
    for L in cmp["common_layers"]:
        lines += [
            f"LAYER {L}",
            f"   {'run':<{width}}  {'viol %':>7} {'improvement':>12} {'benefit':>10}  verdict",
        ]
        for r in cmp["runs"]:
            d = r["layers"][str(L)]
            lines.append(
                f"   {r['label']:<{width}}  {d['violation_rate']:7.2f} "
                f"{d['avg_improvement']:12.6f} {d['cumulative_benefit']:10.6f}  {d['headline']}"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


def plot_layer(path: Path, layer_id: int, stores: list) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 7), sharex=True)
    binned_ = False
    for i, (label, store) in enumerate(stores):
        _, data = store.view(layer_id)
        if not data.shape[0]:
            continue
        gap = (data[:, 0] - data[:, 2])[:, None]
        imp = (data[:, 1] - data[:, 2])[:, None]
        colour = f"C{i % 10}"
        for ax, y in ((top, gap), (bottom, imp)):  # each on its own panel and scale
            binned_ |= draw_series(ax, lambda p, rate=store.frame_rate: p / rate, y, [colour], [label])
    how = f" (lines: means of {BINS} bins, bands: their {SPREAD[0]}-{SPREAD[1]} %)" if binned_ else ""
    top.set_title(f"Layer {layer_id}: benefit l0 - lafter per run{how}")
    bottom.set_title("per-step improvement lprev - lafter (its own scale)")
    for ax in (top, bottom):
        ax.axhline(0, color="k", ls="--", lw=0.6)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right")
    bottom.set_xlabel("seconds of audio")
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def write_compare(out_dir: Path, cmp: dict, plots: bool = True) -> dict[str, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stores = cmp["_stores"]
    doc = {k: v for k, v in cmp.items() if not k.startswith("_")}
    paths = {"json": out_dir / "compare.json", "text": out_dir / "compare.txt"}
    with atomic(paths["json"]) as tmp:
        tmp.write_text(json.dumps(_clean(doc), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    with atomic(paths["text"]) as tmp:
        tmp.write_text(render_text(doc), encoding="utf-8")
    if plots:
        for L in cmp["common_layers"]:
            p = out_dir / f"compare_layer{L}.png"
            with atomic(p) as tmp:
                plot_layer(tmp, L, stores)
            paths[f"png{L}"] = p
    return paths
