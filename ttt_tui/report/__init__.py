"""The exported report: text, JSON, CSV and PNG plots of everything the store holds."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..analysis import outer as outer_stats
from ..analysis.diagnosis import diagnose
from ..analysis.headline import describe
from ..analysis.windows import DEFAULT_WINDOW_S, layer_windows
from ..record.files import atomic, default_out_dir, remove_stale_lock, remove_stale_temps  # noqa: F401 (default_out_dir: the report folder's default)
from ..record.store import LossStore
from .plots import plot_layer, plot_outer
from .text import render

REPORT_TXT = "ttt_diagnostic_report.txt"
REPORT_JSON = "report.json"
LOSSES_CSV = "losses.csv"
OUTER_CSV = "outer_loss.csv"
OUTER_PNG = "outer_loss.png"


def _clean(x):
    """JSON has no NaN: write null. Strings become valid UTF-8 (a file name may hold any bytes)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, str):
        return x.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    return x


def layer_results(store: LossStore, window_s: float = DEFAULT_WINDOW_S) -> dict:
    """Per layer (summary, verdict, findings, windows): the whole run, and the run over time."""
    out = {}
    for layer_id in store.layer_ids:
        s = store.summary(layer_id)
        s["signals"] = store.signal_summary(layer_id)
        verdict, fs = diagnose(s)
        _, data = store.view(layer_id)
        lw = layer_windows(data, store.frame_rate, window_s, store.valid(layer_id), store.position_unit)
        out[layer_id] = (s, verdict, fs, lw)
    return out


WINDOW_KEYS = (
    "start_s",
    "end_s",
    "n_positions",
    "violation_rate",
    "avg_improvement",
    "cumulative_benefit",
    "context_gain",
    "verdict",
)


def write_csv(path: Path, store: LossStore, chunk: int = 200_000) -> None:
    with open(path, "w", newline="") as f:
        f.write("layer,position,time_s,l0,lprev,lafter\n")
        for layer_id in store.layer_ids:
            _, data = store.view(layer_id)
            for s in range(0, data.shape[0], chunk):
                part = data[s : s + chunk]
                pos = np.arange(s, s + part.shape[0])
                rows = np.column_stack([np.full(part.shape[0], layer_id), pos, pos / store.frame_rate, part])
                np.savetxt(f, rows, fmt=["%d", "%d", "%.4f", "%.7g", "%.7g", "%.7g"], delimiter=",")


def plot_note(run: dict) -> str | None:
    """The one line a plot's title carries: why lprev hides l0, where the audit says so, else the first note."""
    for a in run.get("audit") or []:
        if a["key"] == "no_write_back":
            return a["consequence"].split(";")[0]
    return (run.get("notes") or [None])[0]


def write_report(out_dir: Path, store: LossStore, run: dict, plots: bool = True) -> dict[str, Path]:
    """Write every file of the report; returns their paths. ``run`` is the run block of report.json."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = _clean(run)
    window_s = float(run.get("window_s") or DEFAULT_WINDOW_S)
    run["window_s"] = window_s
    remove_stale_temps(out_dir)  # what a killed report writer left
    remove_stale_lock(out_dir)  # and the lock of a run killed with SIGKILL (a live run's lock stays)
    results = layer_results(store, window_s)
    outer = store.outer_view() if store.has_outer else None
    outer_s = outer_stats.summary(outer, store.frame_rate) if outer is not None else None
    paths = {"text": out_dir / REPORT_TXT, "json": out_dir / REPORT_JSON, "csv": out_dir / LOSSES_CSV}
    with atomic(paths["text"]) as tmp:
        tmp.write_text(render(run, results, outer_s), encoding="utf-8")
    layers = {}
    for layer_id, (s, verdict, fs, lw) in results.items():
        states = lw.window_states()
        layers[str(layer_id)] = {
            **describe(verdict, fs, lw),  # verdict, its headline (the words of every screen), over_time
            "n_positions": s["n_positions"],
            "violation_rate": s["violation_rate"],
            "violations": s["violations"],
            "avg_improvement": s["avg_improvement"],
            "cumulative_benefit": s["cumulative_benefit"],
            "context_gain": s["context_gain"],
            "nonfinite": s["nonfinite"],
            "missing": s["missing"],  # positions a damaged run log lost (run.log_damage says where)
            "l0": s["l0"],
            "lprev": s["lprev"],
            "lafter": s["lafter"],
            "trends": {
                k: s[k] for k in ("l0_trend", "lprev_trend", "gap_first_quarter", "gap_last_quarter", "gap_trend")
            },
            "findings": [f.text for f in fs],
            "signals": s["signals"],
            # over time: per window the report's statistics and verdict, and the regime it belongs to
            # (``windows`` module: decided with standard errors, so that noise does not flicker)
            "windows": [
                {**{k: w[k] for k in WINDOW_KEYS}, "regime": st} for w, st in zip(lw.windows, states, strict=True)
            ],
            "changes": lw.changes(layer_id),
        }
        gate = (run.get("model_details") or {}).get("effective_gate", {}).get(str(layer_id))
        if gate is not None:
            layers[str(layer_id)]["effective_gate"] = gate
    doc = {"run": run, "layers": layers}
    if outer_s is not None:
        doc["outer_loss"] = outer_s
    with atomic(paths["json"]) as tmp:
        tmp.write_text(json.dumps(_clean(doc), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    with atomic(paths["csv"]) as tmp:
        write_csv(tmp, store)
    if outer is not None:
        paths["outer_csv"] = out_dir / OUTER_CSV
        with atomic(paths["outer_csv"]) as tmp:
            pos = np.arange(outer.shape[0])
            np.savetxt(
                tmp,
                np.column_stack([pos, pos / store.frame_rate, outer]),
                fmt=["%d", "%.4f", "%.7g"],
                delimiter=",",
                header="position,time_s,outer_loss",
                comments="",
            )
    if plots:
        for layer_id in store.layer_ids:
            _, data = store.view(layer_id)
            if data.shape[0]:
                p = out_dir / f"figure5_layer{layer_id}.png"
                with atomic(p) as tmp:
                    plot_layer(
                        tmp,
                        layer_id,
                        data,
                        store.frame_rate,
                        note=plot_note(run),
                        windows=results[layer_id][3],
                        lost=results[layer_id][0]["missing"],
                        position_unit=store.position_unit,
                    )
                paths[f"png{layer_id}"] = p
        if outer is not None and outer.shape[0]:
            paths["outer_png"] = out_dir / OUTER_PNG
            with atomic(paths["outer_png"]) as tmp:
                plot_outer(tmp, outer, outer_s, store.frame_rate)
    return paths


def write_run_report(run, out_dir: Path, plots: bool = True, tensorboard: str | None = None, window_s=None) -> dict:
    """The report of a run from its record (``runlog.LoggedRun``: a run log read back, or a run in memory whose
    log could not be kept whole): the one path by which every run's report is written (headless, dashboard,
    each file of eval, ``ttt-tui report``)."""
    from ..record.runlog import run_info

    info = run_info(run)
    if window_s is not None:
        info["window_s"] = window_s
    paths = write_report(out_dir, run.store, info, plots=plots)
    if tensorboard:
        from .tensorboard import export

        export(run.store, tensorboard, Path(out_dir).name)
    audio = Path(run.folder) / "output.wav"  # what the model said, written by the engine when the run ended
    if audio.exists():
        paths["audio"] = audio
    return paths
