"""The dashboard: a header, one chart + counters per TTT layer, the findings, the keys.

What it shows comes from a run's record: the run log's header (``record.RunHeader``) and the store its engine
fills, whatever fills it (a live run's inference process through its log, ``live.LiveRun``; a saved or remote
run's log, ``tui.opened``; a thread in this process, in tests). The app polls the store from timers (counters
at 4 Hz, charts at ``--refresh`` Hz) and redraws a chart only when its layer's data or the view changed and it
is visible.
"""

from __future__ import annotations

import signal
import time

import numpy as np
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Container, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.screen import ModalScreen
from textual.widgets import Footer, Static
from textual_plotext import PlotextPlot

from ..analysis import outer as outer_stats
from ..analysis.diagnosis import diagnose
from ..analysis.headline import verdict_words
from ..analysis.windows import DEFAULT_WINDOW_S, LayerWindows, sliding_summary
from ..record.runlog import damage_text
from ..run.session import SIGNAL_EXIT, speed_words
from .axes import (
    apply_x,
    apply_y,
    canvas_rows,
    finite_range,
    make_axis,
    marker_rows,
    robust_range,
    shared_zero_axes,
)
from .chart_data import VIEWS, ZOOM_LEVELS, ViewSettings, chart_series
from .texts import (
    STATE_STYLE,
    VIEW_COLOURS,
    condense,
    counters_text,
    faint,
    fmt,
    short_path,
)

# per series (l0, lprev, lafter); "ascii" also tells the series apart without colour (NO_COLOR, monochrome)
MARKERS = {"braille": ("braille",) * 3, "hd": ("hd",) * 3, "dot": ("dot",) * 3, "ascii": ("*", "+", ".")}
BAND_MIN_ROWS = 10  # charts at least this tall get the min/max band
WINDOWS_BUDGET_S = 0.03  # per status refresh, for the windows of an opened long run to catch up
CHART_BUDGET = 0.08  # while inference runs in this process, charts may use at most this share of the time (GIL)
MAX_CHART_GAP_S = 1.0  # but the charts follow the data at least once a second, from the first one
FINDINGS_ROWS, FINDINGS_ROWS_COMPACT = 8, 4  # the findings box's height, borders included (CSS below)

HELP = """\
[b]ttt-tui keys[/b]  (any key closes this)

  space  pause / resume            v    losses / gains / violations
  f      follow / freeze the view  l    logarithmic y axis
  + -    zoom: all, 600, 120,      s    smoothing (10-token moving
         30, 10 s                       average, as in the paper)
  x      x in seconds / tokens     e    expand the selected layer
  tab    next layer (small         r    write the report now
         terminals: its chart)     q    quit (writes the report)
  ?      this help                 ^c   quit (writes the report)

[b]Lines[/b]: [rgb(31,119,180)]l0[/] at the stream-start weights, [rgb(255,127,14)]lprev[/] before the update,
[rgb(44,160,44)]lafter[/] after it. Healthy: blue > orange > green, the gap
widening with context. Gains view: benefit l0 - lafter on the left
scale, per-step improvement lprev - lafter on the right scale.
Each tick label names the value at its row."""


class HelpScreen(ModalScreen):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 76; max-width: 100%; height: auto; max-height: 100%;
                                  border: round $accent; padding: 0 1; background: $surface; }
    HelpScreen Static { width: auto; }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(HELP)

    def on_key(self, event) -> None:
        event.stop()
        if self.is_current and not getattr(self, "_leaving", False):  # keys faster than the pop: dismiss once
            self._leaving = True
            self.dismiss()


class TimedPlot(PlotextPlot):
    """textual-plotext's chart, timing its builds: their cost paces the next round of redraws."""

    def render(self):
        t0 = time.perf_counter()
        panel = self.parent
        if isinstance(panel, LayerPanel):  # the axes are chosen for the canvas' rows (``axes``): a chart resized
            panel.redraw_for_size()  # by the layout is rebuilt first, never shown with its old size's axes
        result = super().render()
        now = time.perf_counter()
        self.app.chart_render_s += now - t0
        self.app.last_render_at = now
        return result


class LayerPanel(Vertical):
    """One TTT layer: counters with the verdict badge, and the chart of the three losses."""

    DEFAULT_CSS = """
    LayerPanel { border: round $primary-darken-2; height: 1fr; min-height: 6; }
    LayerPanel.selected { border: round $accent; }
    LayerPanel > .counters { height: 3; text-wrap: nowrap; text-overflow: ellipsis; }
    LayerPanel.with-signals > .counters { height: 4; }
    LayerPanel > PlotextPlot { height: 1fr; }
    LayerPanel.collapsed { height: 1; min-height: 1; border: none; padding: 0 1; }
    LayerPanel.collapsed > PlotextPlot { display: none; }
    LayerPanel.collapsed > .counters { height: 1; }
    """

    def __init__(self, layer_id: int):
        super().__init__(id=f"layer-{layer_id}")
        self.layer_id = layer_id
        self.border_title = f"layer {layer_id}"
        self.drawn: tuple | None = None  # (store version, view key, size) of the chart on screen
        self._args: tuple | None = None  # what the last draw() was given: a resize redraws it
        self.redraws = 0

    def compose(self) -> ComposeResult:
        yield Static("", classes="counters")
        yield TimedPlot()

    def set_counters(self, *args, **kw) -> None:
        """The counters above the chart (``texts.counters_text``: its arguments after the layer id)."""
        self.query_one(".counters", Static).update(counters_text(self.layer_id, *args, **kw))

    def redraw_for_size(self) -> None:
        """Rebuild the figure if the plot's size is not the one it was drawn for (no refresh: called while
        the plot renders)."""
        plot = self.query_one(PlotextPlot)
        if self._args is not None and self.drawn is not None and self.drawn[2] != (plot.size.width, plot.size.height):
            self.draw(*self._args, refresh=False)

    def draw(self, data, frame_rate: float, view: ViewSettings, markers: tuple, version: int, refresh=True) -> bool:
        plot = self.query_one(PlotextPlot)
        size = (plot.size.width, plot.size.height)
        key = (version, view.key(), size, markers)
        self._args = (data, frame_rate, view, markers, version)
        if key == self.drawn or size[0] < 4 or size[1] < 3:
            return False
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        unit = getattr(self.app.store, "position_unit", None)
        chart = chart_series(data, frame_rate, view, max(4, size[0] - 10), unit)  # minus the y labels' columns
        colours = VIEW_COLOURS[view.mode]
        shapes = markers if view.mode == "losses" else (markers[0],) * len(colours)
        line_markers = ["hd" if m == "braille" else m for m in shapes]
        rows = canvas_rows(size[1])
        sub = marker_rows(line_markers[0])
        # our own axes (``axes``): every tick label names the value at its row; the gains on two scales
        sides = ["left"] * len(colours)
        if view.mode == "gains":  # improvement (right scale) and benefit (left), 0 on one row for both
            # robust scales from the lines (5-95 % of their points): the first tokens' large steps and the band's
            # extremes would squash an improvement of 0.1 onto the zero row; what lies beyond is cut off
            benefit, improvement = shared_zero_axes(
                [robust_range(chart.lines[1][1]), robust_range(chart.lines[0][1])],
                rows,
                sub,
            )
            apply_y(plt, benefit, "left")
            apply_y(plt, improvement, "right")
            sides, left = ["right", "left"], benefit
        else:
            lo, hi = finite_range([y for _, y in chart.lines] + [y for _, y in chart.bands])
            include = chart.hlines if view.mode == "violations" else ()
            log = view.log_y and view.mode == "losses"
            left = make_axis(lo, hi, rows, sub, include=include, log=log)
            apply_y(plt, left)
        apply_x(plt, *chart.x_range, max(4, size[0] - 10))
        # a faint band of each column's min and max behind the lines: not without colour (ascii), and not in
        # charts too low for it to be more than clutter (8 layers at 200x60: it would also double plotext's work)
        if markers[0] != "*" and size[1] >= BAND_MIN_ROWS:
            for (x, y), colour, side in zip(chart.bands, colours, sides, strict=False):
                if len(x):
                    plt.scatter(x.tolist(), y.tolist(), color=faint(colour), marker=markers[0], yside=side)
        for level in chart.hlines:  # on the row whose centre is nearest (plotext's own rounding differs)
            plt.hline(left.snap(level), (110, 110, 110))
        series = list(zip(chart.lines, colours, line_markers, sides, strict=True))
        if view.mode == "gains":  # the improvement last, on top: where the two meet, the small one stays seen
            series.reverse()
        for (x, y), colour, marker, side in series:
            if len(x):  # counters line = legend
                plt.plot(x.tolist(), y.tolist(), color=colour, marker=marker, yside=side)
        # what the chart shows goes on the panel's bottom border, not in plotext's title and label rows: two
        # canvas rows more (a short chart is 3 rows where it was 1), and ``axes.CHROME_ROWS`` stays fixed
        zoom = ZOOM_LEVELS[view.zoom]
        what = {"losses": "losses", "gains": "gains", "violations": "violations %"}[view.mode]
        self.border_subtitle = " · ".join(
            part
            for part in (
                what + (", log scale" if view.log_y and view.mode == "losses" else ""),
                "all" if zoom is None else f"last {zoom:g} s",
                "" if view.follow else "frozen",
                "smoothed" if view.smooth and view.mode != "violations" else "",
                f"x: {chart.xlabel}",
                "left scale: benefit, right: improvement" if view.mode == "gains" else "",
            )
            if part
        )
        if refresh:
            plot.refresh()
        self.drawn = key
        self.redraws += 1
        return True


class DashboardApp(App):
    TITLE = "ttt-tui"
    CSS = """
    #header { height: 2; padding: 0 1; background: $boost; text-wrap: nowrap; text-overflow: ellipsis; }
    #layers { height: 1fr; layout: grid; grid-size: 1; }
    #layers.two-columns { grid-size: 2; }
    #layers.compact { layout: vertical; }
    #findings { height: auto; max-height: 8; border: round $secondary; padding: 0 1; }
    #findings-text { text-wrap: nowrap; text-overflow: ellipsis; }  /* a finding per row: condense() counts rows */
    #findings.compact { max-height: 4; }  /* FINDINGS_ROWS, FINDINGS_ROWS_COMPACT */
    #mic { height: 1; padding: 0 1; }
    #too-small { display: none; width: 100%; height: 100%; content-align: center middle; }
    Screen.too-small > * { display: none; }
    Screen.too-small > #too-small { display: block; }
    """
    MIN_SIZE = (60, 18)  # below this, one line says what size is needed
    SHORT_SCREEN = 30  # fewer rows: the findings box shrinks to 4 rows
    PANEL_ROWS = 12  # a panel with a readable chart: borders, counters, 7 chart rows (8 layers fit 200x60)
    ENABLE_COMMAND_PALETTE = False  # its ^p took the footer's last columns; every action has a key
    # the footer shows what fits 80 columns (about 60 of them); ? lists every key
    BINDINGS = [
        Binding("space", "toggle_pause", "pause"),
        Binding("f", "toggle_follow", "follow", show=False),
        Binding("plus,equals_sign", "zoom(1)", "zoom in", key_display="+", show=False),
        Binding("minus", "zoom(-1)", "zoom out", key_display="-", show=False),
        Binding("l", "toggle('log_y')", "log y", show=False),
        Binding("s", "toggle('smooth')", "smooth", show=False),
        Binding("x", "toggle('x_seconds')", "s/tokens", show=False),
        Binding("v", "next_view", "view"),
        Binding("e", "expand", "expand"),
        Binding("tab", "next_layer", "layer", priority=True),
        Binding("r", "report", "report"),
        Binding("question_mark", "help", "all keys", key_display="?"),
        Binding("q", "quit_report", "quit"),
        Binding("ctrl+c", "quit_report", "quit", show=False, priority=True),
    ]

    def __init__(
        self,
        session,
        refresh_hz: float = 2.0,
        marker: str = "braille",
        exit_on_finish: bool = False,
        install_signals: bool = True,
    ):
        """``session``: the run (``live.LiveRun``, ``tui.opened.OpenedRun``, or a ``session.Session``): its
        ``header``, ``store``, ``engine``, ``settings``, ``out_dir``, ``write_report()``, ``exit_code()``."""
        super().__init__()
        self.session = session
        self.engine = session.engine
        self.store = session.store
        self.refresh_hz = refresh_hz
        self.marker = marker
        self.exit_on_finish = exit_on_finish
        self.install_signals = install_signals
        self.view = ViewSettings()
        self.selected = 0
        self.expanded = False
        self.finished_handled = False
        self.finished_code: int | None = None
        self.report_note = ""
        self.chart_render_s = 0.0  # plotext build time since the last round (TimedPlot adds to it)
        self.last_render_at = 0.0  # when the last chart build ended
        self.last_forced_at = 0.0  # when a key last asked for a redraw
        self._round_at = 0.0
        self._round_cost = 0.0
        header = session.header  # the run log's header (``record.RunHeader``): all the app knows of the model
        self.header = header
        self.notes = list(header.notes)
        self.audit = list(header.audit)
        self.gates = header.model_details.get("effective_gate", {})
        self.compact = False  # too few rows for every chart: the selected layer's chart, the others one line each
        self.window_s = float(session.settings.window or DEFAULT_WINDOW_S)
        self._outer_now: tuple[int, dict] | None = None  # (positions, outer_now) of the last computation
        self._drawn_status: tuple | None = None  # _status_key() of the last status refresh
        unit = self.store.position_unit
        self.windows = {i: LayerWindows(self.store.frame_rate, self.window_s, unit=unit) for i in self.store.layer_ids}

    # -- layout -------------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static("", id="too-small")
        yield Static("", id="header")
        with Container(id="layers"):
            for layer_id in self.store.layer_ids:
                yield LayerPanel(layer_id)
        if self.session.settings.mic:
            yield Static("", id="mic")
        yield VerticalScroll(Static("", id="findings-text"), id="findings")
        yield Footer()

    def panels(self) -> list[LayerPanel]:
        return list(self.query(LayerPanel))

    @property
    def markers(self) -> tuple:
        # no colour (NO_COLOR, monochrome): braille series would look alike, so give each its own shape
        return MARKERS["ascii" if self.no_color and self.marker == "braille" else self.marker]

    def on_mount(self) -> None:
        self.query_one("#findings").border_title = "findings"
        if len(self.store.layer_ids) > 4:  # many layers: two columns keep every chart on screen
            self.query_one("#layers").add_class("two-columns")
        if self.store.signal_names or self.gates:  # a fourth counters line: the inner-loop signals
            for panel in self.panels():
                panel.add_class("with-signals")
        self._fit(self.size.width, self.size.height)
        self._select(0)
        if self.install_signals:
            for sig in SIGNAL_EXIT:
                signal.signal(sig, self._on_signal)
        if self.engine.started_at is None:  # a live run's inference process started before (``LiveRun``)
            self.engine.start()
        self.set_interval(0.25, self.refresh_status)
        self.set_interval(1.0 / self.refresh_hz, self.refresh_charts)
        self.refresh_status()

    # -- periodic reads of the store ----------------------------------------------------------------------
    def header_text(self) -> Text:
        """Two lines that never wrap (a long one is cut, not pushed off): the state and progress first, then
        what runs and where the report goes."""
        st = self.engine.status
        total = self.header.input_duration_s
        narrow = self.size.width < 120
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(f" {st.state.upper()} ", style=f"bold reverse {STATE_STYLE.get(st.state, '')}")
        if self.store.position_unit == "token":  # a text model's run: positions, no seconds
            n = max((self.store.n_positions(i) for i in self.store.layer_ids), default=0)
            prog = f"  positions {n:,}"
        else:
            prog = f"  audio {st.audio_s:.1f}" + (
                f" / {total:.1f} s ({100 * st.audio_s / total:.0f}%)" if total else " s"
            )
        paced = self.session.settings.realtime or self.session.settings.mic
        rt = speed_words(st.realtime_factor, paced)
        if narrow:
            rt = rt.replace(" real time", "")
        if self.store.position_unit == "token":
            rt = ""  # no real time to compare with
        t.append(prog + (f"  {rt}" if rt else "") + f"  elapsed {self.engine.wall_s:.1f} s")
        outer = self.outer_now()
        if outer is not None:  # teacher-forced: the model's own loss, the number the outer loop trains
            t.append(f"  outer loss {fmt(outer['mean'], 3)}", style="bold")
            t.append(f" (last {self.window_s:g} s {fmt(outer['recent'], 3)})")
        if st.error:
            t.append(f"  error: {st.error}", style="bold red")
        t.append("\n")
        t.append(" ttt-tui ", style="bold reverse")
        t.append(f" report: {short_path(self.session.out_dir)}/", style="bold cyan" if self.report_note else "cyan")
        if self.report_note:
            t.append(f"  {self.report_note}", style="bold red" if self.report_note.startswith("report failed") else "")
        t.append(f"  {'microphone' if self.session.settings.mic else self.session.settings.input}", style="bold")
        t.append(f"  model: {self.header.model}  device: {self.header.device}")
        return t

    def outer_now(self) -> dict | None:
        """The outer loss so far (``outer.summary``) and its mean over the last window; None if the run has none.
        Computed once per number of positions (the header and the findings both ask, every status refresh; rows
        already stored never change)."""
        if not self.store.has_outer:
            return None
        v = self.store.outer_view()
        if not v.shape[0]:
            return None
        if self._outer_now is not None and self._outer_now[0] == v.shape[0]:
            return self._outer_now[1]
        s = outer_stats.summary(v, self.store.frame_rate)
        recent = v[-max(1, int(self.window_s * self.store.frame_rate)) :]
        recent = recent[np.isfinite(recent)]
        s["recent"] = float(recent.mean()) if recent.size else float("nan")
        self._outer_now = (v.shape[0], s)
        return s

    # -- sizes --------------------------------------------------------------------------------------------
    def on_resize(self, event) -> None:
        self._fit(event.size.width, event.size.height)

    def _fit(self, width: int, height: int) -> None:
        """Below the minimum size, one line says what is needed; with too few rows for every layer's chart,
        the selected layer gets the chart and the others one line each (tab selects)."""
        min_w, min_h = self.MIN_SIZE
        small = width < min_w or height < min_h
        self.screen.set_class(small, "too-small")
        if small:
            self.query_one("#too-small", Static).update(
                f"ttt-tui needs a terminal of at least {min_w}x{min_h} (this one: {width}x{height}); "
                f"the run goes on and writes its report to {self.session.out_dir}/"
            )
        n = len(self.store.layer_ids)
        columns = 2 if n > 4 and not small else 1
        rows = height - 2 - 1 - 6 - (1 if self.session.settings.mic else 0)  # header, footer, findings, mic
        compact = n > 1 and rows / -(-n // columns) < self.PANEL_ROWS
        # the findings take at most 4 rows on short screens (they scroll), so that a chart keeps its rows
        self.query_one("#findings").set_class(height < self.SHORT_SCREEN, "compact")
        if compact != self.compact:
            self.compact = compact
            self.query_one("#layers").set_class(compact, "compact")
            self._select(self.selected)
            self.call_after_refresh(self.refresh_charts, True)

    def _status_key(self) -> tuple:
        """Everything the header, counters and findings are drawn from; the same key twice on a run that has
        ended means nothing to redraw (an idle finished dashboard cost 5 % of a core redrawing the same text)."""
        windows = tuple(len(lw.windows) for lw in self.windows.values())
        return (
            self.store.version,
            len(self.engine.damaged),
            windows,
            self.view.mode,
            self.size,
            self.report_note,
            self.selected,
            self.expanded,
            self.compact,
            self.engine.status.state,
            self.finished_handled,
        )

    def refresh_status(self) -> None:
        try:
            header = self.query_one("#header", Static)
        except NoMatches:  # a timer that fires while the screen is torn down at exit: nothing left to update
            return
        key = self._status_key()
        if self.engine.done and self.finished_handled and key == self._drawn_status:
            return
        self._drawn_status = key
        header.update(self.header_text())
        entries: list[tuple[object, Text]] = []  # (layer id, or None for the run's own lines; one line)

        def entry(group, *parts) -> None:
            t = Text(no_wrap=True, overflow="ellipsis")
            for text, style in parts:
                t.append(text, style=style)
            entries.append((group, t))

        outer = self.outer_now()
        if outer is not None:
            entry(
                None,
                ("outer loss: ", "bold"),
                (outer_stats.screen_line(outer, f"{outer['n_positions']} positions"), ""),
            )
        for item in self.audit:  # what their code does at run time, and what it implies for the numbers
            entry(None, ("audit: ", "bold magenta"), (f"{item['finding']}: ", "magenta"), (item["consequence"], "cyan"))
        for note in self.notes:  # ttt-tui's own choices for this run
            entry(None, ("note: ", "bold cyan"), (note, "cyan"))
        for d in self.engine.damaged:  # blocks of the run log that could not be used: never silently
            entry(None, ("damaged log: ", "bold red"), (damage_text(d, self.store.frame_rate), "red"))
        narrow = self.size.width < 120
        deadline = time.perf_counter() + WINDOWS_BUDGET_S
        same: dict[tuple, list] = {}  # (finding, colour): the layers that have it
        for panel in self.panels():
            layer = panel.layer_id
            s = self.store.summary(layer)
            verdict, fs = diagnose(s)
            sig = self.store.signal_summary(layer) if self.store.signal_names else None
            _, data = self.store.view(layer)
            valid = self.store.valid(layer)  # None unless a damaged log lost positions
            lw = self.windows[layer]
            lw.update(data, deadline, valid)  # the windows completed since the last call (they never change)
            panel.set_counters(
                s,
                verdict,
                self.store.frame_rate,
                verdict_words(verdict, fs),
                self.markers,
                sig,
                self.gates.get(str(layer)),
                mode=self.view.mode,
                recent=sliding_summary(data, self.store.frame_rate, lw.window_s, valid),
                windows=lw,
                narrow=narrow,
                collapsed=panel.has_class("collapsed"),
                labels=self.header.signal_labels,
                unit=self.store.position_unit,
            )
            for c in lw.changes(layer):  # what the whole-run means hide: the regime changed, and when
                entry(layer, ("change: ", "bold yellow"), (c["finding"], "yellow"))
            for f in fs:  # the same finding of several layers: one line ("layers 0, 1, 2: ...")
                colour = {"error": "red", "warning": "yellow", "info": "dim"}[f.severity]
                same.setdefault((f.text, colour), []).append(layer)
            if s["n_positions"] and not fs:
                same.setdefault(("TTT LEARNING APPEARS HEALTHY", "green"), []).append(layer)
        for (text, colour), layers in same.items():
            who = f"layer {layers[0]}" if len(layers) == 1 else f"layers {', '.join(map(str, layers))}"
            entry(tuple(layers), (f"{who}: ", "bold"), (text, colour))
        box = self.query_one("#findings")
        rows = (FINDINGS_ROWS_COMPACT if box.has_class("compact") else FINDINGS_ROWS) - 2  # minus its border
        shown = condense(entries, rows)
        newline = Text("\n", no_wrap=True, overflow="ellipsis")  # join() keeps the separator's settings
        text = newline.join(shown) if shown else Text("waiting for data...", style="dim")
        self.query_one("#findings-text", Static).update(text)
        if self.session.settings.mic:
            live = self.engine.live()  # the microphone's level, from the process that reads it
            level_db, dropped = float(live.get("level_db", -120.0)), int(live.get("dropped_blocks", 0))
            bar = int((max(-60.0, min(0.0, level_db)) + 60) / 60 * 30)
            self.query_one("#mic", Static).update(
                Text(
                    f" input level {'█' * bar}{'·' * (30 - bar)} {level_db:6.1f} dBFS   dropped blocks {dropped}",
                    style="bold red" if dropped else "",
                )
            )
        if self.engine.done and not self.finished_handled:
            self.finished_handled = True
            self.on_run_end()

    def refresh_charts(self, force: bool = False) -> None:
        """Redraw the visible charts whose data or view changed. While inference runs in this process (the
        engine's thread shares the GIL with the UI), a round waits until the last one's cost (data
        preparation + plotext builds) is at most CHART_BUDGET of the time since, but never more than
        MAX_CHART_GAP_S; the dashboard's own inference runs in a child process and is not paced. A key press
        (force) redraws at once."""
        now = time.perf_counter()
        if force:
            self.last_forced_at = now
        cost = self._round_cost + self.chart_render_s
        paced = getattr(self.engine, "shares_gil", False) and self.engine.status.state == "running"
        since = now - self._round_at
        if not force and paced and since * CHART_BUDGET < cost and since < MAX_CHART_GAP_S:
            return
        self.chart_render_s = 0.0
        for panel in self.panels():
            if panel.display:
                version, data = self.store.view(panel.layer_id)
                panel.draw(data, self.store.frame_rate, self.view, self.markers, version)
        self._round_at = now
        self._round_cost = time.perf_counter() - now

    def on_unmount(self) -> None:
        """However the app ends, the inference ends with it."""
        self.engine.stop_and_wait("quit")

    # -- end of the run -----------------------------------------------------------------------------------
    def on_run_end(self) -> None:
        self.refresh_charts(force=True)
        self.write_report(final=True)
        if self.exit_on_finish:
            self.finish(self.session.exit_code())

    def write_report(self, final: bool = False) -> None:
        """Write the report (a live run) and say so in the header's second line, where no number is covered
        (a toast in the corner hid the counters). ``ttt-tui open`` only reads: it says where the run's own
        report lies and how to rewrite it."""
        if getattr(self.session, "read_only", False):
            if not final:  # `r` pressed
                n = len(self.session.write_report())
                self.report_note = f"open only reads: {n} report files in the folder; `ttt-tui report DIR` rewrites"
                self.refresh_status()
            return
        try:
            paths = self.session.write_report()
        except Exception as e:  # never lose the app over a report error; say it
            self.report_note = f"report failed: {e}"
            self.refresh_status()
            return
        if final:
            self.call_after_refresh(self._save_svg)
        self.report_note = f"report written ({len(paths)} files, {time.strftime('%H:%M:%S')})"
        self.refresh_status()

    def _save_svg(self) -> None:
        if getattr(self.session, "read_only", False):  # ttt-tui open: readers only read
            return
        try:
            self.save_screenshot(filename="dashboard.svg", path=str(self.session.out_dir))
        except Exception as e:
            self.notify(f"screenshot failed: {e}", severity="error")

    # -- keys ---------------------------------------------------------------------------------------------
    def action_toggle_pause(self) -> None:
        self.engine.toggle_pause()
        self.refresh_status()

    def action_toggle_follow(self) -> None:
        v = self.view
        v.follow = not v.follow
        v.frozen_n = None if v.follow else max(self.store.n_positions(i) for i in self.store.layer_ids)
        self.refresh_charts(force=True)

    def action_zoom(self, step: int) -> None:
        self.view.zoom = max(0, min(len(ZOOM_LEVELS) - 1, self.view.zoom + step))
        self.refresh_charts(force=True)

    def action_toggle(self, name: str) -> None:
        setattr(self.view, name, not getattr(self.view, name))
        self.refresh_charts(force=True)

    def _select(self, index: int) -> None:
        panels = self.panels()
        self.selected = index % len(panels)
        for i, p in enumerate(panels):
            p.set_class(i == self.selected, "selected")
            p.set_class(self.compact and i != self.selected, "collapsed")
            p.display = i == self.selected or not self.expanded
        self.refresh_status()

    def action_next_view(self) -> None:
        """The losses; the gains (improvement, benefit); the violation rate."""
        self.view.mode = VIEWS[(VIEWS.index(self.view.mode) + 1) % len(VIEWS)]
        self.refresh_status()
        self.refresh_charts(force=True)

    def action_next_layer(self) -> None:
        self._select(self.selected + 1)
        self.refresh_charts(force=True)

    def action_expand(self) -> None:
        self.expanded = not self.expanded
        self._select(self.selected)
        self.call_after_refresh(self.refresh_charts, True)

    def action_report(self) -> None:
        self.write_report()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_quit_report(self) -> None:
        if not self.engine.done:
            self.engine.stop_and_wait("quit")
        if not self.finished_handled:
            self.finished_handled = True
            self.write_report(final=False)
            self._save_svg()
        self.finish(self.session.exit_code())

    def finish(self, code: int) -> None:
        """Leave with the run's exit code (an exit code set anywhere else means the app itself failed)."""
        self.finished_code = code
        self.exit(result=code, return_code=code)

    # -- signals: the report first ------------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:
        self.session._on_signal(signum, frame)  # records it and stops the engine
        self.engine.stop_and_wait(signal.Signals(signum).name)  # within a second if the model is still loading
        try:
            self.session.write_report()
        finally:
            if signum == getattr(signal, "SIGHUP", None):
                import os

                release = getattr(self.session, "release", None)  # the folder's lock (``open`` holds none)
                if release is not None:
                    release()
                os._exit(SIGNAL_EXIT[signum])  # the terminal is gone: nothing to restore
            self.call_later(self.finish, SIGNAL_EXIT[signum])
