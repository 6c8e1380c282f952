"""The data set's answer, from the finished runs' logs: per layer the three losses averaged across files by
position with a 95 % confidence band (the TTT paper's way), pooled statistics and verdicts, and a table of
per-file verdicts, worst first. Reading the runs' logs in the data set's order makes the answer the same
whether the files ran in one process, on torchrun ranks or in SLURM array tasks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..analysis import outer as outer_stats
from ..analysis.diagnosis import VERDICTS, diagnose
from ..analysis.headline import layer_headline
from ..analysis.stats import LayerStats
from ..errors import InputError
from ..record.files import atomic, remove_stale_temps
from ..record.runlog import LOG_NAME, RunLogReader, read_run, writer_alive
from ..report import _clean
from .inputs import recorded, run_name

FAILED_NAME = "failed.json"
STATUSES = ("finished", "failed", "damaged", "interrupted", "running", "missing")
CURVE_POINTS = 500  # positions kept of each averaged curve in eval.json (the PNG uses all)
SEVERITY = {v: i for i, v in enumerate(("FAILED", *VERDICTS[1:], "NO_DATA"))}  # worst first


def run_state(folder: Path) -> str | None:
    """How the run in ``folder`` ended ('finished', 'stopped', 'error'...), 'running' while its writer runs,
    'killed' if it is gone without an end, 'damaged: <why>' if its log cannot be read; None if it never ran."""
    if not (folder / LOG_NAME).is_file():
        return None
    try:
        reader = RunLogReader(folder)
        try:
            end, header, status = reader.end(), reader.header, reader.status()
        finally:
            reader.close()
    except Exception as e:  # a log that cannot be read is not a file that was never run: say why
        return f"damaged: {e}"
    if end:
        return end.state
    return "running" if writer_alive(header, status) else "killed"


class _Curve:
    """Per position, across files: count, sum and sum of squares of ``cols`` series (the three losses; the outer
    loss), grown as needed."""

    def __init__(self, cols: int = 3):
        self.n = np.zeros(0)
        self.s = np.zeros((0, cols))
        self.ss = np.zeros((0, cols))

    def add(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, self.s.shape[1])
        m = rows.shape[0]
        if m > self.n.shape[0]:
            grow = m - self.n.shape[0]
            self.n = np.concatenate([self.n, np.zeros(grow)])
            self.s = np.concatenate([self.s, np.zeros((grow, self.s.shape[1]))])
            self.ss = np.concatenate([self.ss, np.zeros((grow, self.s.shape[1]))])
        finite = np.isfinite(rows).all(1)
        r = np.where(finite[:, None], rows, 0.0)
        self.n[:m] += finite
        self.s[:m] += r
        self.ss[:m] += r * r

    def mean_ci(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(files per position, mean [n, 3], 95 % half-width [n, 3]; NaN where fewer than 2 files)."""
        n = self.n[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self.s / n
            var = np.maximum(self.ss - n * mean**2, 0.0) / (n - 1)
            ci = 1.96 * np.sqrt(var / n)
        ci[self.n < 2] = np.nan
        return self.n, mean, ci


class Merger:
    """The evaluation of the runs in the eval folders ``dirs`` (one, or one per shard), brought up to date by
    ``update``: a finished run is read once, its rows added to the per-position sums and the pooled statistics
    and never read again, so that following a data set of thousands of files costs per poll only a look at
    the files not finished yet. ``merge`` is one ``update`` (files in data-set order, so one process, torchrun
    ranks and array shards give the same numbers); a screen that follows a running evaluation adds runs as
    they finish (sums in another order: the same up to float rounding)."""

    def __init__(self, dirs: list[str | Path]):
        self.dirs = [Path(d) for d in dirs]
        self.files = recorded(self.dirs[0])
        for d in self.dirs[1:]:
            if [str(f) for f in recorded(d)] != [str(f) for f in self.files]:
                raise InputError(
                    f"{d} is an evaluation of other inputs than {self.dirs[0]}; merge the shards of one data set"
                )
        self.entries: dict[int, dict] = {}
        self.curves: dict[int, _Curve] = {}
        self.outer_curve = _Curve(1)
        self.pooled: dict[int, LayerStats] = {}
        self.frame_rate: float | None = None

    def _status(self, k: int, f: Path) -> dict:
        name = run_name(k, f)
        entry = {"index": k, "input": str(f), "run": name, "status": "missing"}
        for d in self.dirs:
            folder = d / "runs" / name
            state = run_state(folder)
            if state == "finished":
                entry.update(status="finished", folder=str(folder))
                break
            failed = folder / FAILED_NAME
            if failed.exists():
                try:
                    entry.update(status="failed", folder=str(folder), reason=json.loads(failed.read_text())["reason"])
                except (OSError, ValueError, KeyError):
                    entry.update(status="failed", folder=str(folder), reason="unreadable failure record")
            elif state == "running" and entry["status"] == "missing":
                entry.update(status="running", folder=str(folder))
            elif state is not None and state.startswith("damaged") and entry["status"] == "missing":
                entry.update(status="damaged", folder=str(folder), reason=state.split(": ", 1)[1])
            elif state is not None and entry["status"] == "missing":
                entry.update(status="interrupted", folder=str(folder), reason=f"run ended as {state}")
        return entry

    def _add(self, entry: dict) -> None:
        """A finished run, read once: its rows into the sums, its own numbers into its entry."""
        run = read_run(entry["folder"])
        self.frame_rate = self.frame_rate or run.store.frame_rate
        entry["duration_s"] = run.header.input_duration_s
        layers = {}
        for L in run.store.layer_ids:
            _, data = run.store.view(L)
            self.curves.setdefault(L, _Curve()).add(data)
            self.pooled.setdefault(L, LayerStats()).update(data, run.store.valid(L))
            s = run.store.summary(L)
            layers[str(L)] = {
                **layer_headline(run.store, L, run.header.window_s),  # verdict, headline, over_time
                "n_positions": s["n_positions"],
                "violation_rate": s["violation_rate"],
                "avg_improvement": s["avg_improvement"],
                "cumulative_benefit": s["cumulative_benefit"],
            }
        entry["layers"] = layers
        if run.store.has_outer:
            values = run.store.outer_view()
            self.outer_curve.add(values)
            o = outer_stats.summary(values, run.store.frame_rate)
            entry["outer_loss"] = {k: o[k] for k in ("mean", "at", "slope_per_1k", "slope_ci95_per_1k")}
        entry["worst"] = min((v["verdict"] for v in layers.values()), key=SEVERITY.get, default="NO_DATA")

    def update(self) -> dict:
        """Look at every file not finished at the last update; read the runs that finished since; the doc."""
        for k, f in enumerate(self.files):
            if self.entries.get(k, {}).get("status") == "finished":
                continue
            entry = self._status(k, f)
            if entry["status"] == "finished":
                self._add(entry)
            self.entries[k] = entry
        return self.doc()

    def doc(self) -> dict:
        per_file = [self.entries[k] for k in range(len(self.files))]
        frame_rate = self.frame_rate
        layers_doc = {}
        for L, st in self.pooled.items():
            # No trends over the pooled rows: their order is the data set's file order, so "last quarter minus
            # first quarter" would compare different recordings (all-HEALTHY files came out NOT_ADAPTING). Over
            # context, the by-position curve answers it.
            s = st.summary(None)
            verdict, fs = diagnose(s)
            n, mean, ci = self.curves[L].mean_ci()
            idx = np.unique(np.linspace(0, len(n) - 1, min(CURVE_POINTS, len(n))).astype(int)) if len(n) else []
            layers_doc[str(L)] = {
                "verdict": verdict,
                "files": int(sum(1 for e in per_file if str(L) in e.get("layers", {}))),
                "n_positions": s["n_positions"],
                "violation_rate": s["violation_rate"],
                "avg_improvement": s["avg_improvement"],
                "cumulative_benefit": s["cumulative_benefit"],
                "context_gain": s["context_gain"],
                "l0": s["l0"],
                "lprev": s["lprev"],
                "lafter": s["lafter"],
                "findings": [f.text for f in fs],
                "verdicts_by_file": {
                    v: sum(1 for e in per_file if e.get("layers", {}).get(str(L), {}).get("verdict") == v)
                    for v in VERDICTS
                    if v != "NO_DATA"
                },
                "by_position": {
                    "position": [int(i) for i in idx],
                    "time_s": [round(int(i) / frame_rate, 4) for i in idx],
                    "n_files": [int(n[i]) for i in idx],
                    "mean": {
                        name: [float(mean[i, c]) for i in idx] for c, name in enumerate(("l0", "lprev", "lafter"))
                    },
                    "ci95": {name: [float(ci[i, c]) for i in idx] for c, name in enumerate(("l0", "lprev", "lafter"))},
                },
            }
        order = sorted(
            per_file,
            key=lambda e: (
                SEVERITY["FAILED"] if e["status"] != "finished" else SEVERITY.get(e["worst"], 99),
                -max((v["violation_rate"] for v in e.get("layers", {}).values()), default=0.0),
                e["index"],
            ),
        )
        counts = {s: sum(1 for e in per_file if e["status"] == s) for s in STATUSES}
        doc = {
            "files": len(self.files),
            "counts": counts,
            "frame_rate": frame_rate,
            "layers": layers_doc,
            "runs": per_file,
            "worst_first": [e["index"] for e in order],
            "_curves": self.curves,
        }
        if len(self.outer_curve.n):
            doc["outer_loss"] = _outer_doc(self.outer_curve, per_file, frame_rate)
            doc["_outer_curve"] = self.outer_curve
        return doc


def merge(dirs: list[str | Path]) -> dict:
    """The evaluation of the runs in the eval folders ``dirs`` (one, or one per shard), read at once."""
    return Merger(dirs).update()


def _outer_doc(curve: _Curve, per_file: list, frame_rate: float) -> dict:
    """The outer loss over the data set: averaged across files by position (each position over the files that
    reach it), then the marks and the slope of that curve, as their evaluation reads its averaged curve."""
    n, mean, ci = curve.mean_ci()
    s = outer_stats.summary(mean[:, 0], frame_rate)
    idx = np.unique(np.linspace(0, len(n) - 1, min(CURVE_POINTS, len(n))).astype(int))
    return {
        **s,
        "files": int(sum(1 for e in per_file if "outer_loss" in e)),
        "files_at": {k: int(n[m]) if len(n) > m else 0 for k, m in zip(s["at"], outer_stats.MARKS, strict=True)},
        "by_position": {
            "position": [int(i) for i in idx],
            "n_files": [int(n[i]) for i in idx],
            "mean": [float(mean[i, 0]) for i in idx],
            "ci95": [float(ci[i, 0]) for i in idx],
        },
    }


def render_text(doc: dict) -> str:
    c = doc["counts"]
    lines = ["=" * 80, "TTT DATA-SET EVALUATION - Figure 5 over many files", "=" * 80, ""]
    lines.append(
        f"{doc['files']} files: {c['finished']} finished, {c['failed']} failed, "
        + (f"{c['damaged']} with a damaged log, " if c.get("damaged") else "")
        + f"{c['interrupted']} interrupted, {c['running']} running, {c['missing']} not run yet"
    )
    lines.append("")
    o = doc.get("outer_loss")
    if o:
        lines += outer_stats.text_lines(o, title=f"OUTER LOSS, mean over {o['files']} files by position")
        lines.append("   files reaching each mark: " + "  ".join(f"{k}: {v}" for k, v in o["files_at"].items()))
        lines.append("")
    for L, d in doc["layers"].items():
        lines += [
            f"LAYER {L}: {d['verdict']} (pooled over {d['files']} files, {d['n_positions']} positions)",
            f"   violations {d['violation_rate']:.2f}%  improvement {d['avg_improvement']:.6f}  "
            f"benefit {d['cumulative_benefit']:.6f}  context gain {d['context_gain']:.6f}",
            f"   mean l0 {d['l0']['mean']:.6f}  lprev {d['lprev']['mean']:.6f}  lafter {d['lafter']['mean']:.6f}",
            "   verdicts by file: " + ", ".join(f"{v} {n}" for v, n in d["verdicts_by_file"].items() if n),
        ]
        if d["files"] and not d["verdicts_by_file"].get(d["verdict"]):  # say why the two can differ
            lines.append(
                "   (no file has the pooled verdict: it applies the report's rules to every position of every file "
                "without the quarter trends, which each file's own verdict also uses)"
            )
        lines += [f"   - {f}" for f in d["findings"]]
        lines.append("")
    runs = {e["index"]: e for e in doc["runs"]}
    layer_ids = list(doc["layers"])
    lines.append("Files, worst first:")
    has_outer = "outer_loss" in doc
    lines.append(
        "   "
        + f"{'#':>5}  {'worst':<14} "
        + " ".join(f"{'L' + L + ' viol%':>10}" for L in layer_ids)
        + (f" {'outer':>8}" if has_outer else "")
        + "  input"
    )
    for k in doc["worst_first"]:
        e = runs[k]
        if e["status"] != "finished":
            lines.append(f"   {k:>5}  {e['status'].upper():<14} {e.get('reason', '')}  {e['input']}")
            continue
        cells = " ".join(
            f"{e['layers'][L]['violation_rate']:10.2f}" if L in e["layers"] else f"{'-':>10}" for L in layer_ids
        )
        if has_outer:
            m = (e.get("outer_loss") or {}).get("mean")
            cells += f" {m:8.4f}" if m is not None and np.isfinite(m) else f" {'-':>8}"
        lines.append(f"   {k:>5}  {e['worst']:<14} {cells}  {e['input']}")
    stories = [
        f"   {k:>5}  layer {L}: {d['headline']}"
        for k in doc["worst_first"]
        for L, d in (runs[k].get("layers") or {}).items()
        if d.get("over_time")
    ]
    if stories:  # each file's verdict is a whole-run mean: where its regimes over time disagree, say so
        lines += ["", "Over time: files whose regimes disagree with their own verdict (README: the headline)"]
        lines += stories
    return "\n".join(lines) + "\n"


def plot_layer(path: Path, layer_id: str, curve: _Curve, frame_rate: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    n, mean, ci = curve.mean_ci()
    keep = n >= 1
    t = np.arange(len(n))[keep] / frame_rate
    fig, ax = plt.subplots(figsize=(12, 6))
    for c, (name, colour) in enumerate((("l0", "tab:blue"), ("lprev", "tab:orange"), ("lafter", "tab:green"))):
        m, h = mean[keep, c], ci[keep, c]
        ax.plot(t, m, color=colour, lw=0.9, label=f"{name} (mean over files)")
        ax.fill_between(t, np.maximum(m - h, 0.0), m + h, color=colour, alpha=0.2, lw=0)  # a loss is >= 0
    ax.set_xlabel("seconds of audio (position in each file)")
    ax.set_ylabel("loss (mean over files, 95 % band)")
    ax.set_title(f"Layer {layer_id}: Figure 5 over {int(n.max()) if len(n) else 0} files")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    files = ax.twinx()
    files.plot(t, n[keep], color="grey", lw=0.8, ls="--")
    files.set_ylabel("files at this position", color="grey")
    files.yaxis.set_major_locator(MaxNLocator(integer=True))  # a count of files: 1, 2, 3, not 1.25
    files.set_ylim(0, max(1, int(n.max()) if len(n) else 1) + 0.5)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def write_eval(out_dir: Path, doc: dict, plots: bool = True) -> dict[str, Path]:
    out_dir = Path(out_dir)
    remove_stale_temps(out_dir)  # what a killed merge left
    paths = {"json": out_dir / "eval.json", "text": out_dir / "eval.txt"}
    public = {k: v for k, v in doc.items() if not k.startswith("_")}
    with atomic(paths["json"]) as tmp:
        tmp.write_text(json.dumps(_clean(public), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    with atomic(paths["text"]) as tmp:
        tmp.write_text(render_text(public), encoding="utf-8")
    if plots and doc["frame_rate"]:
        for L, curve in doc["_curves"].items():
            p = out_dir / f"eval_layer{L}.png"
            with atomic(p) as tmp:
                plot_layer(tmp, str(L), curve, doc["frame_rate"])
            paths[f"png{L}"] = p
        if "_outer_curve" in doc:
            from ..report.plots import plot_outer

            n, mean, ci = doc["_outer_curve"].mean_ci()
            p = out_dir / "eval_outer_loss.png"
            with atomic(p) as tmp:
                plot_outer(tmp, mean[:, 0], doc["outer_loss"], doc["frame_rate"], band=ci[:, 0], files=n)
            paths["outer_png"] = p
    return paths
