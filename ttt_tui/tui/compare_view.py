"""``ttt-tui compare`` on a terminal: the comparison on screen (the same numbers as compare.txt/json). A table of
every run's verdict, violation rate, improvement and benefit per common layer, and for the selected layer each
run's benefit ``l0 - lafter`` and per-step improvement ``lprev - lafter`` overlaid, as per-column mean lines
(a run's level, readable at any length). Only reads."""

from __future__ import annotations

import numpy as np
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Footer, Static
from textual_plotext import PlotextPlot

from ..analysis import outer as outer_stats
from ..analysis.decimate import column_means
from .axes import apply_x, apply_y, canvas_rows, make_axis
from .texts import VERDICT_STYLE, fmt

# one colour per run (matplotlib's tab10 order, as the PNGs)
RUN_COLOURS = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
)


def _rgb(colour: tuple) -> str:
    return "rgb({},{},{})".format(*colour)


class CompareApp(App):
    TITLE = "ttt-tui compare"
    CSS = """
    #header { height: auto; padding: 0 1; background: $boost; }
    #table { height: auto; max-height: 40%; }
    #charts { height: 1fr; min-height: 8; }
    #charts > PlotextPlot { height: 1fr; }
    """
    BINDINGS = [
        Binding("tab,right", "layer(1)", "next layer", priority=True),
        Binding("shift+tab,left", "layer(-1)", "previous layer", priority=True),
        Binding("q,escape", "quit", "quit"),
    ]

    def __init__(self, cmp: dict, out_dir=None):
        super().__init__()
        self.cmp = cmp
        self.out_dir = out_dir
        self.layers = list(cmp["common_layers"])
        self.selected = 0

    def compose(self) -> ComposeResult:
        yield Static(self._header(), id="header")
        yield DataTable(id="table", zebra_stripes=True, cursor_type="none")
        with Vertical(id="charts"):
            yield PlotextPlot(id="benefit")
            yield PlotextPlot(id="improvement")
        yield Footer()

    def _header(self) -> Text:
        t = Text()
        t.append(" ttt-tui compare ", style="bold reverse")
        t.append(f"  {len(self.cmp['runs'])} runs, layers in common: {self.layers}")
        if self.out_dir is not None:
            t.append(f"\n written to {self.out_dir}/ (the run folders are in compare.txt)", style="cyan")
        t.append("\n")
        for i, r in enumerate(self.cmp["runs"]):
            colour = RUN_COLOURS[i % len(RUN_COLOURS)]
            t.append(f" ■ {r['label']}", style=f"bold {_rgb(colour)}")
            t.append(f" {r['duration_s']} s, {r['state']} ", style="dim")
        for i, r in enumerate(self.cmp["runs"]):  # teacher-forced runs: their outer loss first
            o = r.get("outer_loss")
            if o:
                t.append("\n ■ outer loss ", style=f"bold {_rgb(RUN_COLOURS[i % len(RUN_COLOURS)])}")
                t.append(outer_stats.screen_line(o, f"{o['n_positions']} positions"))
        for note in self.cmp["notes"]:
            t.append(f"\n note: {note}", style="yellow")
        return t

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("layer", "run", "verdict", "viol %", "improvement", "benefit", "positions")
        for L in self.layers:
            for i, r in enumerate(self.cmp["runs"]):
                d = r["layers"][str(L)]
                colour = RUN_COLOURS[i % len(RUN_COLOURS)]
                table.add_row(
                    str(L),
                    Text(r["label"], style=_rgb(colour)),
                    Text(f" {d.get('headline', d['verdict'])} ", style=VERDICT_STYLE.get(d["verdict"], "")),
                    f"{d['violation_rate']:.2f}",
                    fmt(d["avg_improvement"], 6),
                    fmt(d["cumulative_benefit"], 6),
                    str(d["n_positions"]),
                )
        self.call_after_refresh(self.draw)

    def on_resize(self) -> None:
        self.call_after_refresh(self.draw)

    def action_layer(self, step: int) -> None:
        self.selected = (self.selected + step) % len(self.layers)
        self.draw()

    def draw(self) -> None:
        L = self.layers[self.selected]
        for plot_id, (col_a, col_b), title in (
            ("benefit", (0, 2), f"layer {L}: benefit l0 - lafter per run"),
            ("improvement", (1, 2), f"layer {L}: per-step improvement lprev - lafter"),
        ):
            plot = self.query_one(f"#{plot_id}", PlotextPlot)
            plt = plot.plt
            plt.clear_data()
            plt.clear_figure()
            width = max(8, plot.size.width - 12)
            lows, highs, lines, end = [], [], [], 1.0
            for i, (_label, store) in enumerate(self.cmp["_stores"]):
                _, data = store.view(L)
                if not data.shape[0]:
                    continue
                ((x, y),) = column_means(data[:, col_a] - data[:, col_b], width)
                if not len(y):
                    continue
                lines.append(((x / store.frame_rate).tolist(), y.tolist(), RUN_COLOURS[i % len(RUN_COLOURS)]))
                end = max(end, data.shape[0] / store.frame_rate)
                lows.append(float(np.percentile(y, 2)))
                highs.append(float(np.percentile(y, 98)))
            # the first positions' large values would squash the rest into one row: a robust range, with 0 (the
            # sign), on our own axis (``axes``: every label names the value at its row)
            axis = make_axis(
                min(lows, default=0.0),
                max(highs, default=1.0),
                canvas_rows(plot.size.height, True, True),
                2,
                include=(0.0,),
            )
            apply_y(plt, axis)
            apply_x(plt, 0.0, end, width)
            plt.hline(axis.snap(0.0), "gray")  # first: the runs' lines are drawn over it
            for x, y, colour in lines:
                plt.plot(x, y, color=colour, marker="hd")
            plt.title(f"{title}   (tab: next layer)")
            plt.xlabel("seconds of audio")
            plot.refresh()
