"""Run the dashboard with the terminal to itself: library output that would corrupt the screen goes to a log."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

from ..run.live import LiveRun
from ..run.session import SIGNAL_EXIT
from ..run.settings import RunSettings


@contextlib.contextmanager
def library_output_to(log_path: Path):
    """Textual draws through ``sys.__stderr__`` and sizes itself from ``sys.__stdout__``: give it private
    copies of the terminal and point fds 1 and 2 (C libraries such as libmpg123, model code that prints) at
    ``log_path`` while the app runs."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    enc = sys.__stderr__.encoding or "utf-8"
    term_out = os.fdopen(os.dup(1), "w", encoding=enc, errors="replace")
    term_err = os.fdopen(os.dup(2), "w", encoding=enc, errors="replace")
    original = sys.__stdout__, sys.__stderr__
    log = open(log_path, "ab", buffering=0)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        sys.__stdout__, sys.__stderr__ = term_out, term_err
        yield
    finally:
        sys.__stdout__, sys.__stderr__ = original
        for fd, dup in saved.items():
            os.dup2(dup, fd)
            os.close(dup)
        term_out.close()
        term_err.close()
        log.close()
        with contextlib.suppress(OSError):
            if log_path.stat().st_size == 0:
                log_path.unlink()


def size_from_the_terminal() -> None:
    """Stale COLUMNS/LINES (exported by some shells and tools, pytest too) would pin the app's size: drop them,
    so that Textual reads the terminal itself."""
    for var in ("COLUMNS", "LINES"):
        os.environ.pop(var, None)


class _Interrupted(Exception):
    def __init__(self, signum: int):
        self.signum = signum


def start_live_run(settings: RunSettings) -> LiveRun:
    """The dashboard's run, started: the inference process loads the model and makes the run log while a line
    on the terminal says how long it has waited. A signal meanwhile (ctrl+c, SIGTERM, a closed SSH session)
    ends the child and leaves nothing behind (nothing was run); bad input: ``InputError``."""
    run = LiveRun(settings)

    def on_signal(signum, frame):
        raise _Interrupted(signum)

    previous = {s: signal.signal(s, on_signal) for s in SIGNAL_EXIT}
    tty = sys.stderr.isatty()

    def waiting(seconds: float) -> None:
        if tty and seconds >= 2:
            sys.stderr.write(f"\rttt-tui: loading the model ({seconds:.0f} s)\x1b[K")
            sys.stderr.flush()

    try:
        run.start(waiting)
    except _Interrupted as e:
        run.engine.abandon()
        run.engine.wait(5)
        run.release()
        raise SignalExit(e.signum) from None
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        if tty:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
    return run


class SignalExit(Exception):
    """A signal before the run started: nothing to report; the exit code is the signal's."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name} while the model loaded; nothing was run")
        self.code = SIGNAL_EXIT[signum]


def run_dashboard(
    settings: RunSettings, refresh: float = 2.0, marker: str = "braille", exit_on_finish: bool = False
) -> int:
    from .app import DashboardApp

    try:
        session = start_live_run(settings)
    except SignalExit as e:
        print(f"ttt-tui: {e}", file=sys.stderr)
        return e.code
    size_from_the_terminal()
    app = DashboardApp(session, refresh_hz=refresh, marker=marker, exit_on_finish=exit_on_finish)
    with library_output_to(session.out_dir / "library_output.log"):  # the model runs in the child process
        app.run()
    try:
        return _after(app, session)
    finally:
        session.release()


def _after(app, session: LiveRun) -> int:
    """The exit code and the last lines, once the app has ended."""
    if app.finished_code is None and app.return_code:  # the app itself failed: keep what was seen, say so
        session.engine.stop("dashboard error")
        session.engine.wait(10)
        error = getattr(app, "_exception", None)
        what = f"{type(error).__name__}: {error}" if error is not None else f"exit code {app.return_code}"
        try:
            session.write_report()
        finally:
            print(
                f"ttt-tui: internal error in the dashboard: {what} (details in {session.out_dir}/library_output.log)",
                file=sys.stderr,
            )
        if session.report_paths:
            print(f"report written to {session.out_dir}/", file=sys.stderr)
        return 1
    if session.report_paths:  # stdout: a clean quit says nothing on stderr
        print(f"report written to {session.out_dir}/")
    if session.engine.status.error:
        print(f"ttt-tui: error during the run: {session.engine.status.error}", file=sys.stderr)
    return app.finished_code if app.finished_code is not None else session.exit_code()
