"""The examples under ``examples/`` run as a user runs them (a fresh process, from another folder), on this
machine's CPU in seconds, and leave a run every reader reads: the embedded model through the API gives the
numbers ``ttt-tui`` gives on the same audio; the text model's run is a token run."""

import subprocess
import sys
from pathlib import Path

import numpy as np

from ttt_tui.cli import main
from ttt_tui.record.runlog import read_run

ROOT = Path(__file__).resolve().parents[1]


def run_example(name, *args, cwd):
    r = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(cwd)},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_the_embedded_model_through_the_api_gives_ttt_tuis_numbers(tmp_path):
    run_example("embedded_via_api.py", "--out", "api", cwd=tmp_path)
    assert main([str(ROOT / "assets" / "sample.wav"), "--headless", "--no-plots", "--out", str(tmp_path / "cli")]) == 0
    api, cli = read_run(tmp_path / "api"), read_run(tmp_path / "cli")
    assert api.end.state == "finished" and api.header.frame_rate == cli.header.frame_rate == 50.0
    for layer in cli.store.layer_ids:
        np.testing.assert_array_equal(api.store.view(layer)[1], cli.store.view(layer)[1])
    assert (tmp_path / "api" / "figure5_layer2.png").is_file()


def test_the_text_model_is_a_token_run(tmp_path):
    run_example("text_ttt.py", "--tokens", "2048", "--out", "text", cwd=tmp_path)
    run = read_run(tmp_path / "text")
    assert run.header.position_unit == "token" and run.store.n_positions(1) == 2048
    assert "Positions: 2,048 tokens" in (tmp_path / "text" / "ttt_diagnostic_report.txt").read_text()
