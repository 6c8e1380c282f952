"""Every test runs in its own temporary folder, and the suite fails if it wrote anything into the checkout
(a report folder, a lock file, a build folder): a user's clone stays as they left it."""

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
SKIP = {".git", "__pycache__", ".pytest_cache"}


def _checkout_entries() -> set[str]:
    found = set()
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP]
        rel = os.path.relpath(folder, ROOT)
        found.update(os.path.normpath(os.path.join(rel, name)) for name in [*dirs, *files])
    return found


def pytest_sessionstart(session):
    session.config.stash[ENTRIES] = _checkout_entries()


def pytest_sessionfinish(session, exitstatus):
    before = session.config.stash.get(ENTRIES, None)
    if before is None:
        return
    new = sorted(_checkout_entries() - before)
    if new:
        print(f"\ntests wrote into the checkout ({ROOT}): {', '.join(new[:10])}", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


ENTRIES = pytest.StashKey[set]()


@pytest.fixture(autouse=True)
def _in_a_temporary_folder(tmp_path_factory, monkeypatch):
    """Default report folders (ttt_tui_reports/ in the working folder) land in a temporary folder."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
