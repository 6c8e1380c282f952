"""The command line as a new user meets it: the help lists every command, a typo is named as one, every
command's help prints, and `open` (which only reads) never says it wrote."""

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_tui_sizes import twelve_minutes  # noqa: F401 (a fixture)

from ttt_tui.cli import SUBCOMMANDS, main
from ttt_tui.tui.app import DashboardApp
from ttt_tui.tui.opened import OpenedRun

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "ttt_tui.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "COLUMNS": "100"},
        timeout=120,
    )


def test_top_level_help_lists_every_command_with_one_line_each(tmp_path):
    r = cli("--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    for name in SUBCOMMANDS:
        rows = [line for line in lines if re.match(rf"  {name} \S", line)]
        assert len(rows) == 1, (name, r.stdout)
        what = SUBCOMMANDS[name][2]
        assert rows[0].endswith(what), rows[0]  # its own line, not wrapped
    assert "usage: ttt-tui [options] INPUT | --sample | --mic" in r.stdout
    assert "ttt-tui COMMAND" in r.stdout


@pytest.mark.parametrize(
    "argv,want",
    [
        (["opne", "DIR"], "unknown command 'opne' (did you mean 'open'?)"),
        (["compair", "a", "b"], "unknown command 'compair' (did you mean 'compare'?)"),
        (["reprot", "DIR"], "unknown command 'reprot' (did you mean 'report'?)"),
        (["evl", "x.wav", "--out", "o"], "unknown command 'evl' (did you mean 'eval'?)"),
        (["tensorbord", "DIR"], "unknown command 'tensorbord' (did you mean 'tensorboard'?)"),
    ],
)
def test_a_mistyped_command_is_named_as_one(capsys, argv, want):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == f"ttt-tui: {want}\n"


def test_a_missing_file_is_still_a_missing_file(capsys, tmp_path):
    """A path (or a file name) that does not exist is not taken for a command: it gets the missing-file line."""
    assert main([str(tmp_path / "opne.wav"), "--headless"]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.parametrize("name", [None, *SUBCOMMANDS])
def test_every_help_prints_and_has_no_format_leftovers(name, tmp_path):
    r = cli(*([name] if name else []), "--help", cwd=tmp_path)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "%%" not in r.stdout and "%(" not in r.stdout, r.stdout
    assert r.stdout.startswith(f"usage: ttt-tui{' ' + name if name else ''} ")


def test_open_only_reads_and_never_says_it_wrote(twelve_minutes, tmp_path):  # noqa: F811
    before = {p.name: p.stat().st_mtime_ns for p in twelve_minutes.iterdir()}

    async def scenario():
        run = OpenedRun(twelve_minutes)
        app = DashboardApp(run, install_signals=False)
        notes = []
        app.notify = lambda message, **kw: notes.append(message)
        async with app.run_test(size=(200, 60)) as pilot:
            for _ in range(100):
                if app.engine.done and app.finished_handled:
                    break
                await pilot.pause(0.1)
            await pilot.pause(0.3)
            finished = str(app.query_one("#header").render())
            await pilot.press("r")
            await pilot.pause(0.3)
            pressed = str(app.query_one("#header").render())
            await pilot.press("q")
        run.reader.close()
        return finished, pressed, notes

    finished, pressed, notes = asyncio.run(scenario())
    assert "written" not in finished and not notes, (finished, notes)
    assert "open only reads" in pressed and "written" not in pressed, pressed
    after = {p.name: p.stat().st_mtime_ns for p in twelve_minutes.iterdir()}
    assert after == before  # nothing written, nothing left beside the log (a finished log is one file)
