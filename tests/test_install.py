"""The package as a user installs it: a wheel in a fresh virtual environment, run from another folder."""

import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from ttt_tui import __version__

ROOT = Path(__file__).resolve().parents[1]


def this_interpreters_site_packages() -> list[str]:
    """Where this interpreter finds torch and the rest: its venv's site-packages when it runs in one (a venv's
    ``system_site_packages`` would see the base interpreter's instead, without what the user installed)."""
    paths = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    assert paths, sys.path
    return paths


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A wheel built from a copy of this checkout (a build in place would leave build/ in it), installed into a
    new venv that sees this interpreter's site-packages for the dependencies (torch and the rest) through a
    .pth file: the wheel's own copy comes first, and an editable install of the checkout is not seen (a .pth
    line adds a folder without running the .pth files inside it)."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    shutil.copytree(
        ROOT, src, ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__", "ttt_tui_reports")
    )
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp), str(src)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    wheel = next(tmp.glob("ttt_tui-*.whl"))
    env = tmp / "venv"
    venv.EnvBuilder(system_site_packages=False, with_pip=False).create(env)
    py = env / "bin" / "python"
    own = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True
    ).stdout.strip()
    Path(own, "dependencies-from-the-test-interpreter.pth").write_text("\n".join(this_interpreters_site_packages()))
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
