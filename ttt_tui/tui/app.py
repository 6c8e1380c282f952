"""The dashboard: a header, one chart + counters per TTT layer, the findings, the keys.

Inference runs in the engine's thread; the app polls the store from timers (counters at 4 Hz, charts at
``--refresh`` Hz) and redraws a chart only when its layer's data or the view changed and it is visible.
"""

from __future__ import annotations

import math
import signal
import time

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Container, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.screen import ModalScreen
from textual.widgets import Footer, Static
from textual_plotext import PlotextPlot

from ..diagnosis import diagnose
from ..session import SIGNAL_EXIT, Session
from .chart_data import ZOOM_LEVELS, ViewSettings, chart_series

COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44))  # l0, lprev, lafter: the PNG colours
VERDICT_STYLE = {
    "HEALTHY": "bold black on green",
    "NOT_ADAPTING": "bold black on yellow",
    "NOT_LEARNING": "bold black on yellow",
    "DEGENERATIVE": "bold white on red",
    "EXPLODING": "bold white on red",
    "NO_DATA": "bold white on grey37",
}
STATE_STYLE = {
    "starting": "blue",
    "running": "green",
    "paused": "yellow",
    "finished": "cyan",
    "stopped": "yellow",
    "error": "red",
}
# per series (l0, lprev, lafter); "ascii" also tells the series apart without colour (NO_COLOR, monochrome)
MARKERS = {"braille": ("braille",) * 3, "hd": ("hd",) * 3, "dot": ("dot",) * 3, "ascii": ("*", "+", ".")}
CHART_BUDGET = 0.08  # while inference runs, charts may use at most this share of the time (same GIL)

HELP = """\
[b]ttt-tui keys[/b]

  space   pause / resume inference
  f       follow the newest data / freeze the view
  + / -   zoom the time window (all, 600, 120, 30, 10 s)
  l       logarithmic y axis
  s       smoothing (10-token moving average, as in the paper)
  x       x axis in seconds of audio / token index
  e       expand the selected layer (again: all layers)
  tab     select the next layer
  r       write the report now
  q       quit (writes the report)
  ctrl+c  quit (writes the report)
  ?       this help

[b]Lines[/b]: [rgb(31,119,180)]l0[/] at the stream-start weights, [rgb(255,127,14)]lprev[/] before the
update, [rgb(44,160,44)]lafter[/] after it. Healthy: blue > orange > green, the gap widening with context.

Press any key to close."""


def fmt(x: float, digits: int = 4) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


SIGNAL_LABELS = (("grad_norm", "|grad|"), ("weight_change", "|W-W0|/|W0|"), ("step_size", "step"))


class HelpScreen(ModalScreen):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Static { width: 76; height: auto; border: round $accent; padding: 1 2; background: $surface; }
    """

    def compose(self) -> ComposeResult:
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
    LayerPanel > .counters { height: 2; }
    LayerPanel > PlotextPlot { height: 1fr; }
    """

    def __init__(self, layer_id: int):
        super().__init__(id=f"layer-{layer_id}")
        self.layer_id = layer_id
        self.border_title = f"layer {layer_id}"
        self.drawn: tuple | None = None  # (store version, view key, size) of the chart on screen
        self.redraws = 0

    def compose(self) -> ComposeResult:
        yield Static("", classes="counters")
        yield TimedPlot()

    def set_counters(
        self,
        s: dict,
        verdict: str,
        frame_rate: float,
        warned: bool = False,
        markers: tuple = (),
        signals: dict | None = None,
        gate: dict | None = None,
    ) -> None:
        t = Text()
        style = "bold black on yellow" if verdict == "HEALTHY" and warned else VERDICT_STYLE.get(verdict, "")
        t.append(f" {verdict}{' (!)' if warned and verdict == 'HEALTHY' else ''} ", style=style)
        n = s["n_positions"]
        t.append(
            f"  positions {n} ({n / frame_rate:.1f} s)  violations {s['violations']} "
            f"({s['violation_rate']:.2f}%)  improvement {fmt(s['avg_improvement'])}  "
            f"benefit {fmt(s['cumulative_benefit'])}"
        )
        t.append(f"  NaN/Inf {s['nonfinite']}", style="bold red" if s["nonfinite"] else "")
        t.append("\n ")
        shapes = markers if len(set(markers)) == 3 else ("", "", "")
        for name, (r, g, b), shape in zip(("l0", "lprev", "lafter"), COLOURS, shapes, strict=True):
            # the legend of the chart below: exactly its colours
            t.append(f"{name}{f' ({shape})' if shape else ''} ", style=f"bold rgb({r},{g},{b})")
            t.append(f"{fmt(s[name]['mean'])}  ")
        if s["trend_available"] and not math.isnan(s["lprev_trend"]):
            t.append(f" trends: l0 {s['l0_trend']:+.4f}  lprev {s['lprev_trend']:+.4f}  gap {s['gap_trend']:+.4f}")
        if signals is not None or gate is not None:  # the inner-loop signals (Moshi-TTT checkpoints)
            t.append("\n ")
            if gate is not None:
                t.append(f"gate {gate['mean']:.3f} [{gate['min']:.3f}..{gate['max']:.3f}]  ")
            for name, label in SIGNAL_LABELS:
                d = (signals or {}).get(name)
                if d is not None:
                    t.append(f"{label} {d['last']:.3g} (mean {d['mean']:.3g})  ")
        self.query_one(".counters", Static).update(t)

    def draw(self, data, frame_rate: float, view: ViewSettings, markers: tuple, version: int) -> bool:
        plot = self.query_one(PlotextPlot)
        size = (plot.size.width, plot.size.height)
        key = (version, view.key(), size, markers)
        if key == self.drawn or size[0] < 4 or size[1] < 3:
            return False
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        xlabel, series, decimated = chart_series(data, frame_rate, view, size[0])
        # Decimated: each bucket's min and max as points (half plotext's cost of joining them with lines,
        # which for noisy losses draws a tall zigzag per column); otherwise the samples joined by lines.
        draw = plt.scatter if decimated else plt.plot
        for (x, y), colour, marker in zip(series, COLOURS, markers, strict=True):  # counters line = legend
            if len(x):
                draw(x.tolist(), y.tolist(), color=colour, marker=marker)
        plt.xlabel(xlabel)
        plt.ylabel("log10 loss" if view.log_y else "")
        zoom = ZOOM_LEVELS[view.zoom]
        plt.title(
            f"{'all' if zoom is None else f'last {zoom:g} s'}{'' if view.follow else ' (frozen)'}"
            f"{' smoothed' if view.smooth else ''}"
        )
        plot.refresh()
        self.drawn = key
        self.redraws += 1
        return True


class DashboardApp(App):
    TITLE = "ttt-tui"
    CSS = """
    #header { height: 2; padding: 0 1; background: $boost; }
    #layers { height: 1fr; layout: grid; grid-size: 1; }
    #layers.two-columns { grid-size: 2; }
    #findings { height: auto; max-height: 8; border: round $secondary; padding: 0 1; }
    #mic { height: 1; padding: 0 1; }
    """
    BINDINGS = [
        Binding("space", "toggle_pause", "pause"),
        Binding("f", "toggle_follow", "follow"),
        Binding("plus,equals_sign", "zoom(1)", "zoom in", key_display="+"),
        Binding("minus", "zoom(-1)", "zoom out", key_display="-"),
        Binding("l", "toggle('log_y')", "log y"),
        Binding("s", "toggle('smooth')", "smooth"),
        Binding("x", "toggle('x_seconds')", "s/tokens"),
        Binding("e", "expand", "expand"),
        Binding("tab", "next_layer", "next layer", priority=True),
        Binding("r", "report", "report"),
        Binding("question_mark", "help", "help", key_display="?"),
        Binding("q", "quit_report", "quit"),
        Binding("ctrl+c", "quit_report", "quit", show=False, priority=True),
    ]

    def __init__(
        self,
        session: Session,
        refresh_hz: float = 2.0,
        marker: str = "braille",
        exit_on_finish: bool = False,
        install_signals: bool = True,
    ):
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
        self.notes = session.backend.notes()
        self.audit = session.backend.audit()
        self.gates = session.backend.describe().get("effective_gate", {})

    # -- layout -------------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static("", id="header")
        with Container(id="layers"):
            for layer_id in self.store.layer_ids:
                yield LayerPanel(layer_id)
        if self.session.args.mic:
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
        if self.store.signal_names or self.gates:  # a third counters line: the inner-loop signals
            for panel in self.panels():
                panel.query_one(".counters", Static).styles.height = 3
        self._select(0)
        if self.install_signals:
            for sig in SIGNAL_EXIT:
                signal.signal(sig, self._on_signal)
        self.engine.start()
        self.set_interval(0.25, self.refresh_status)
        self.set_interval(1.0 / self.refresh_hz, self.refresh_charts)
        self.refresh_status()

    # -- periodic reads of the store ----------------------------------------------------------------------
    def header_text(self) -> Text:
        st = self.engine.status
        src = self.session.source
        total = getattr(src, "duration_s", None)
        t = Text()
        t.append(" ttt-tui ", style="bold reverse")
        t.append(f"  {'microphone' if self.session.args.mic else self.session.args.input}", style="bold")
        t.append(f"  model: {self.session.backend.name}  device: {self.session.backend.device}\n")
        t.append(f" {st.state.upper()} ", style=f"bold reverse {STATE_STYLE.get(st.state, '')}")
        prog = f"  audio {st.audio_s:.1f}" + (f" / {total:.1f} s ({100 * st.audio_s / total:.0f}%)" if total else " s")
        t.append(prog + f"   {st.realtime_factor:.1f}x real time   elapsed {self.engine.wall_s:.1f} s")
        if st.error:
            t.append(f"   error: {st.error}", style="bold red")
        if self.report_note:
            t.append(f"   {self.report_note}", style="bold cyan")
        return t

    def refresh_status(self) -> None:
        try:
            header = self.query_one("#header", Static)
        except NoMatches:  # a timer that fires while the screen is torn down at exit: nothing left to update
            return
        header.update(self.header_text())
        lines = Text()
        for item in self.audit:  # what their code does at run time, and what it implies for the numbers
            lines.append("audit: ", style="bold magenta")
            lines.append(f"{item['finding']}: ", style="magenta")
            lines.append(item["consequence"] + "\n", style="cyan")
        for note in self.notes:  # ttt-tui's own choices for this run
            lines.append("note: ", style="bold cyan")
            lines.append(note + "\n", style="cyan")
        for panel in self.panels():
            s = self.store.summary(panel.layer_id)
            verdict, fs = diagnose(s)
            sig = self.store.signal_summary(panel.layer_id) if self.store.signal_names else None
            panel.set_counters(
                s,
                verdict,
                self.store.frame_rate,
                any(f.severity == "warning" for f in fs),
                self.markers,
                sig,
                self.gates.get(str(panel.layer_id)),
            )
            for f in fs:
                lines.append(f"layer {panel.layer_id}: ", style="bold")
                lines.append(f.text + "\n", style={"error": "red", "warning": "yellow", "info": "dim"}[f.severity])
            if s["n_positions"] and not fs:
                lines.append(f"layer {panel.layer_id}: ", style="bold")
                lines.append("TTT LEARNING APPEARS HEALTHY\n", style="green")
        self.query_one("#findings-text", Static).update(lines if lines else Text("waiting for data...", style="dim"))
        if self.session.args.mic:
            src = self.session.source
            level = max(-60.0, min(0.0, src.level_db))
            bar = int((level + 60) / 60 * 30)
            self.query_one("#mic", Static).update(
                Text(
                    f" input level {'█' * bar}{'·' * (30 - bar)} {src.level_db:6.1f} dBFS   "
                    f"dropped blocks {src.dropped_blocks}",
                    style="bold red" if src.dropped_blocks else "",
                )
            )
        if self.engine.done and not self.finished_handled:
            self.finished_handled = True
            self.on_run_end()

    def refresh_charts(self, force: bool = False) -> None:
        """Redraw the visible charts whose data or view changed. While inference runs, a round waits until
        the last one's cost (data preparation + plotext builds) is at most CHART_BUDGET of the time since:
        the UI shares the GIL with the inference thread. A key press (force) redraws at once."""
        now = time.perf_counter()
        if force:
            self.last_forced_at = now
        cost = self._round_cost + self.chart_render_s
        if not force and self.engine.status.state == "running" and (now - self._round_at) * CHART_BUDGET < cost:
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
        try:
            paths = self.session.write_report()
        except Exception as e:  # never lose the app over a report error; say it
            self.report_note = f"report failed: {e}"
            self.notify(self.report_note, severity="error")
            return
        if final:
            self.call_after_refresh(self._save_svg)
        self.report_note = f"report: {self.session.out_dir}/"
        self.notify(f"report written to {self.session.out_dir}/ ({len(paths)} files)", timeout=8)

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
            p.display = i == self.selected or not self.expanded

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

                os._exit(SIGNAL_EXIT[signum])  # the terminal is gone: nothing to restore
            self.call_later(self.finish, SIGNAL_EXIT[signum])
