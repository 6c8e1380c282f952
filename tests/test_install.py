"""The package as a user installs it: a wheel in a fresh virtual environment, run from another folder."""

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from ttt_tui import __version__

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A wheel built from this checkout, installed (without dependencies: torch and the rest come from this
    interpreter's site-packages) into a new venv."""
    tmp = tmp_path_factory.mktemp("install")
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp), str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    wheel = next(tmp.glob("ttt_tui-*.whl"))
    env = tmp / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env)
    py = env / "bin" / "python"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    return env, tmp


def test_wheel_runs_the_bundled_model_and_sample_from_anywhere(installed):
    env, tmp = installed
    where = subprocess.run(
        [str(env / "bin" / "python"), "-c", "import ttt_tui; print(ttt_tui.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp,
    ).stdout.strip()
    assert where.startswith(str(env))  # the installed copy, not this checkout
    out = tmp / "report"
    r = subprocess.run(
        [str(env / "bin" / "ttt-tui"), "--sample", "--headless", "--no-plots", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads((out / "report.json").read_text())
    assert doc["run"]["input"].endswith("sample.wav") and doc["layers"]["0"]["n_positions"] > 1000


def test_version_and_module_entry_point(installed):
    env, tmp = installed
    for cmd in (
        [str(env / "bin" / "ttt-tui"), "--version"],
        [str(env / "bin" / "python"), "-m", "ttt_tui", "--version"],
    ):
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
        assert r.returncode == 0 and r.stdout.strip() == f"ttt-tui {__version__}", (r.stdout, r.stderr)
