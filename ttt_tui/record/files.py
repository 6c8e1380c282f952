"""Files of a run: its report folder (made, locked for the run, never mixed with an earlier report) and atomic
writes (a temporary file renamed over the target)."""

from __future__ import annotations

import contextlib
import os
import secrets
from datetime import datetime
from pathlib import Path

from ..errors import InputError

LOCK_NAME = ".ttt-tui.lock"
# what a run writes into its folder; --force removes these (and nothing else) before a new run
RUN_FILES = (
    "ttt_diagnostic_report.txt",
    "report.json",
    "losses.csv",
    "output.wav",
    "dashboard.svg",
    "library_output.log",
    "run.sqlite",
    "run.sqlite-wal",
    "run.sqlite-shm",
    "outer_loss.csv",
    "outer_loss.png",
)
RUN_GLOBS = ("figure5_layer*.png",)


def default_out_dir(input_name: str, base: Path | None = None) -> Path:
    """``ttt_tui_reports/<stem>-<time>-<4 hex>``: two runs of inputs with the same name started in the same
    second get two folders."""
    stem = Path(input_name).stem or "run"
    stamp = f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    return (base or Path.cwd()) / "ttt_tui_reports" / f"{stem}-{stamp}"


class WriteError(OSError):
    """A report file could not be written (full disk, ...): names the file and the folder."""

    def __init__(self, path: Path, error: OSError):
        super().__init__(
            error.errno,
            f"cannot write {path.name} in {path.parent}/ ({error.strerror or error}); the run log is "
            f"kept there: `ttt-tui report {path.parent}` writes the report again once the problem is fixed",
        )

    def __str__(self) -> str:
        return self.strerror


def remove_stale_temps(folder: Path) -> list[str]:
    """Remove the temporary files of ``atomic`` that a killed process left in ``folder`` (``.NAME.PID.tmp...``
    of a pid that no longer runs); returns their names."""
    gone = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return gone
    for p in entries:
        parts = p.name.split(".")
        if not (p.name.startswith(".") and len(parts) >= 4 and any(x.startswith("tmp") for x in parts)):
            continue
        pids = [int(x) for x in parts if x.isdigit()]
        if not pids or pids[-1] == os.getpid() or pid_runs(pids[-1]):
            continue
        try:
            p.unlink()
            gone.append(p.name)
        except OSError:
            pass
    return gone


def remove_stale_lock(folder: Path) -> bool:
    """Remove the folder's lock file if no process holds it (its run was killed: SIGKILL leaves it); a lock
    held by a run, this process's own included, stays. True if removed."""
    import fcntl

    path = Path(folder) / LOCK_NAME
    try:
        f = open(path, "r+")
    except OSError:
        return False
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return False
    try:
        path.unlink(missing_ok=True)  # while we hold it: no run takes it meanwhile
        return True
    except OSError:
        return False
    finally:
        f.close()


def pid_runs(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (one we may not signal runs too)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError, ValueError):
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def atomic(path: Path):
    """A temporary file beside ``path``, renamed over it when written: a reader, a crash or a full disk sees the
    old file or the new one (or none), never a truncated one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise WriteError(path, e) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class FolderLock:
    """The report folder's lock, held for the run (``flock`` on ``.ttt-tui.lock``, which says the pid). ``close``
    removes the lock file, and the folder too if this run made it and left nothing in it (a run refused or
    failed before its first file): a finished folder holds the report, not a lock of a dead process."""

    def __init__(self, file, folder: Path, made: bool):
        self.file, self.folder, self.made = file, folder, made

    def close(self) -> None:
        if self.file is None:
            return
        (self.folder / LOCK_NAME).unlink(missing_ok=True)  # while still held: no other run takes it meanwhile
        self.file.close()
        self.file = None
        if self.made:
            try:
                self.folder.rmdir()  # only if empty
            except OSError:
                pass


def prepare_out_dir(out_dir: Path, force: bool = False) -> FolderLock:
    """Make the report folder and lock it for this run; returns the lock (keep it open for the run).

    A folder in use by a running ttt-tui is refused; so is one that already holds files (an earlier report
    would be replaced or mixed with this one) unless ``force``, which removes the files a run writes there and
    nothing else. One line, exit 2, before the run."""
    import fcntl

    made = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        lock = open(out_dir / LOCK_NAME, "a+")
    except OSError as e:
        raise InputError(f"cannot write the report to {out_dir} ({e.strerror or e}); choose another --out") from None
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.seek(0)
        pid = lock.read().strip() or "?"
        lock.close()  # not ours: its lock file stays
        raise InputError(f"{out_dir} is in use by a running ttt-tui (pid {pid}); choose another --out") from None
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    lock = FolderLock(lock, out_dir, made)
    ours = [p for p in out_dir.iterdir() if p.name != LOCK_NAME]
    if ours and not force:
        lock.close()
        raise InputError(
            f"{out_dir} already holds {len(ours)} files (an earlier report?); give a new --out, or --force to "
            "replace the files ttt-tui writes there"
        )
    if force:
        for p in ours:
            if p.name in RUN_FILES or any(p.match(g) for g in RUN_GLOBS):
                p.unlink(missing_ok=True)
    try:  # fail now, not after an hour of audio
        probe = out_dir / ".ttt-tui-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        lock.close()
        raise InputError(f"cannot write the report to {out_dir} ({e.strerror or e}); choose another --out") from None
    return lock
