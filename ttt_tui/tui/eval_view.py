"""An evaluation on screen: ``ttt-tui eval`` in a terminal (the files run in a thread, the screen follows), and
``ttt-tui open DIR`` on an eval folder (a finished one, or one that ranks or array tasks are still writing).
Every ``POLL_S`` the aggregate is brought up to date in a thread (``evaluation.aggregate.Merger``: a run is
read once, when it has finished), so the screen shows what the files written so far say: progress over files,
which file runs, per layer the losses averaged across files by position, and the files worst first. Only
reads."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Footer, Static
from textual_plotext import PlotextPlot

from ..analysis import outer as outer_stats
from ..analysis.decimate import column_summary
from .axes import apply_x, apply_y, canvas_rows, finite_range, make_axis
from .texts import COLOURS, VERDICT_STYLE, faint, short_path

POLL_S = 2.0


class EvalApp(App):
    TITLE = "ttt-tui eval"
    CSS = """
    #header { height: auto; padding: 0 1; background: $boost; text-wrap: nowrap; text-overflow: ellipsis; }
    #chart { height: 1fr; min-height: 8; }
    #files { height: auto; max-height: 50%; }
    """
    BINDINGS = [
        Binding("tab", "layer(1)", "next layer", priority=True),
        Binding("q,escape", "quit", "quit"),
    ]

    def __init__(self, folder: str | Path, run=None, stop=None):
        """``run``: the evaluation itself (a callable, run in a thread; the app stays after it ends); ``stop``:
        its ``runner.Stop``, asked to stop when the app ends."""
        super().__init__()
        self.stop = stop
        self.folder = Path(folder)
        self.run_fn = run
        self.doc: dict | None = None
        self.error: str | None = None
        self.layer = 0
        self.running = run is not None
        self.result = None
        self._merging = threading.Lock()
        self.merger = None

    def compose(self) -> ComposeResult:
        yield Static("reading the evaluation...", id="header")
        with Vertical():
            yield PlotextPlot(id="chart")
            yield DataTable(id="files", zebra_stripes=True, cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        if self.run_fn is not None:
            threading.Thread(target=self._run, name="ttt-tui-eval", daemon=True).start()
        self.set_interval(POLL_S, self.refresh_doc)
        self.refresh_doc()

    def _run(self) -> None:
        try:
            self.result = self.run_fn()
        except Exception as e:  # shown on screen, and the command exits 1
            self.error = f"{type(e).__name__}: {e}"
        finally:
            self.running = False
            self.call_from_thread(self.refresh_doc)

    def refresh_doc(self) -> None:
        if self._merging.locked():
            return
        threading.Thread(target=self._merge, daemon=True).start()

    def _merge(self) -> None:
        from ..evaluation.aggregate import Merger

        with self._merging:
            try:
                if self.merger is None:  # reads each finished run once, then only looks at the others
                    self.merger = Merger([self.folder])
                doc = self.merger.update()
            except Exception as e:  # a log read mid-write: the next round reads it whole
                doc = None
                if not self.running:
                    self.error = str(e)
            if doc is not None:
                self.doc = doc
            try:
                self.call_from_thread(self.show)
            except RuntimeError:  # the app has ended
                pass

    # -- drawing ------------------------------------------------------------------------------------------
    def show(self) -> None:
        self.query_one("#header", Static).update(self.header_text())
        if self.doc is None:
            return
        self.draw_table()
        self.draw_chart()

    def header_text(self) -> Text:
        t = Text()
        state = "RUNNING" if self.running else ("ERROR" if self.error and self.doc is None else "DONE")
        t.append(f" {state} ", style="bold reverse " + {"RUNNING": "green", "DONE": "cyan"}.get(state, "red"))
        if self.doc is not None:
            c, n = self.doc["counts"], self.doc["files"]
            t.append(
                f"  {c['finished']} / {n} files finished  {c['failed']} failed  {c['damaged']} damaged  "
                f"{c['running']} running  {c['interrupted']} interrupted"
            )
            now = [e for e in self.doc["runs"] if e["status"] == "running"]
            if now:
                t.append(f"  now: {', '.join(Path(e['input']).name for e in now[:3])}", style="bold")
        t.append(f"\n eval folder: {short_path(self.folder)}/", style="cyan")
        if self.doc is not None:
            for L, d in self.doc["layers"].items():
                t.append(f"\n layer {L} ", style="bold")
                t.append(f" {d['verdict']} ", style=VERDICT_STYLE.get(d["verdict"], ""))
                t.append(
                    f" pooled over {d['files']} files: viol {d['violation_rate']:.1f}%  "
                    f"imp {d['avg_improvement']:.4f}  ben {d['cumulative_benefit']:.3f}  by file: "
                    + ", ".join(f"{v} {k}" for v, k in d["verdicts_by_file"].items() if k)
                )
            o = self.doc.get("outer_loss")
            if o:  # teacher-forced: the model's own loss, averaged over files by position
                t.append("\n outer loss ", style="bold")
                t.append(" " + outer_stats.screen_line(o, f"{o['files']} files"))
        if self.error:
            t.append(f"\n error: {self.error}", style="bold red")
        return t

    def draw_table(self) -> None:
        table = self.query_one("#files", DataTable)
        layers = list(self.doc["layers"])
        table.clear(columns=True)
        outer = "outer_loss" in self.doc
        table.add_columns("#", "worst", *(f"L{L} viol %" for L in layers), *(["outer"] if outer else []), "input")
        runs = {e["index"]: e for e in self.doc["runs"]}
        order = self.doc["worst_first"] + [
            e["index"] for e in self.doc["runs"] if e["index"] not in self.doc["worst_first"]
        ]
        for k in order:
            e = runs[k]
            if e["status"] != "finished":
                label = Text(f" {e['status'].upper()} ", style="bold white on red" if e["status"] == "failed" else "")
                cells = ["-"] * len(layers)
            else:
                label = Text(f" {e['worst']} ", style=VERDICT_STYLE.get(e["worst"], ""))
                cells = [f"{e['layers'][L]['violation_rate']:.2f}" if L in e["layers"] else "-" for L in layers]
            if outer:
                m = (e.get("outer_loss") or {}).get("mean")
                cells.append(f"{m:.4f}" if m is not None and np.isfinite(m) else "-")
            table.add_row(str(k), label, *cells, e["input"] + (f"  ({e['reason']})" if e.get("reason") else ""))

    def draw_chart(self) -> None:
        curves = self.doc.get("_curves") or {}
        layers = list(curves)
        plot = self.query_one("#chart", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        if not layers:
            plot.refresh()
            return
        L = layers[self.layer % len(layers)]
        n, mean, ci = curves[L].mean_ci()
        keep = np.nonzero(n >= 1)[0]
        if len(keep):
            cols = max(4, plot.size.width - 10)
            s = column_summary(mean[keep].astype(np.float32), cols)
            half = np.nan_to_num(ci[keep], nan=0.0)
            # the 95 % band over files, cut at 0: a loss is never negative
            lo = column_summary(np.maximum(mean[keep] - half, 0.0).astype(np.float32), cols)
            hi = column_summary((mean[keep] + half).astype(np.float32), cols)
            rate = self.doc["frame_rate"] or 1.0
            shown = [s["mean"][s["count"] > 0]] + [e["mean"][e["count"] > 0] for e in (lo, hi)]
            axis = make_axis(*finite_range(a.ravel() for a in shown), canvas_rows(plot.size.height, True, True), 2)
            apply_y(plt, axis)
            apply_x(plt, keep[0] / rate, (keep[-1] + 1) / rate, cols)
            for c, colour in enumerate(COLOURS):
                ok = s["count"][c] > 0
                x = ((keep[0] + s["centre"][ok]) / rate).tolist()
                if half[:, c].any():  # the 95 % band over files: faint lines either side of the mean
                    for edge in (lo, hi):
                        plt.plot(x, edge["mean"][c, ok].tolist(), color=faint(colour), marker="braille")
                plt.plot(x, s["mean"][c, ok].tolist(), color=colour, marker="hd")
        plt.title(f"layer {L}: l0 / lprev / lafter averaged over files by position, 95 % band (tab: next layer)")
        plt.xlabel("seconds of audio (position in each file)")
        plot.refresh()

    def on_unmount(self) -> None:
        """Leaving while files run: the file being run stops at its next block and keeps its report; no further
        file starts (the same command resumes)."""
        if self.running and self.stop is not None:
            self.stop.request()
            deadline = time.time() + 15
            while self.running and time.time() < deadline:
                time.sleep(0.1)

    def action_layer(self, step: int) -> None:
        self.layer += step
        if self.doc is not None:
            self.draw_chart()
