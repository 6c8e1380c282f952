"""The run log as a file users move around: a reader sees one state of it (blocks and end together), a finished
log is one self-contained file (read on read-only media, or copied alone), and a finished folder holds the
report, no lock of a dead process."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ttt_tui.cli import main
from ttt_tui.record.runlog import LOG_NAME, RunLogReader, RunLogWriter, read_run

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "assets" / "sample.wav"
HEADER = {
    "input": "x.wav",
    "model": "synthetic",
    "device": "cpu",
    "frame_rate": 50.0,
    "layer_ids": [0],
    "signal_names": [],
}


def block(n, v=1.0):
    return {0: np.full((n, 3), v, np.float32)}


def test_a_reader_sees_blocks_and_end_of_one_moment(tmp_path):
    """The race `ttt-tui report` lost: blocks read, then the writer's last block and end record, then the end
    record read: a report marked finished without the last block. In one read transaction the reader sees
    either neither or both."""
    w = RunLogWriter(tmp_path, HEADER)
    w.extend(block(50))
    r = RunLogReader(tmp_path)
    store = r.new_store()
    with r.snapshot():
        assert r.poll(store) == 1
        w.extend(block(30))  # the writer's last block and its end, between the reader's two queries
        w.close({"state": "finished", "audio_s": 1.6})
        assert r.end() is None and r.poll(store) == 0  # the same moment: not finished, no new block
    assert r.poll(store) == 1 and r.end().state == "finished"
    assert store.n_positions(0) == 80
    r.close()
    run = read_run(tmp_path)
    assert run.end.state == "finished" and run.store.n_positions(0) == 80


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main([str(SAMPLE), "--headless", "--no-plots", "--out", str(out)]) == 0
    return out


def test_a_finished_folder_is_the_report_and_one_log_file(finished):
    names = {p.name for p in finished.iterdir()}
    assert LOG_NAME in names and "report.json" in names
    assert not names & {f"{LOG_NAME}-wal", f"{LOG_NAME}-shm", ".ttt-tui.lock"}, names


def test_a_log_copied_alone_reads_as_the_finished_run(finished, tmp_path):
    shutil.copy(finished / LOG_NAME, tmp_path / LOG_NAME)
    run = read_run(tmp_path)
    doc = json.loads((finished / "report.json").read_text())
    assert run.end.state == "finished"
    assert run.store.n_positions(0) == doc["layers"]["0"]["n_positions"] == 1235
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOG_NAME]  # the reader left nothing beside it


def test_a_finished_log_on_read_only_media(finished, tmp_path, capsys):
    """A read-only bind mount (a shared filesystem mounted read-only, an archive): read, nothing written."""
    src, mnt = tmp_path / "src", tmp_path / "ro"
    shutil.copytree(finished, src)
    mnt.mkdir()
    if subprocess.run(["mount", "--bind", str(src), str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot bind-mount here (needs root)")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(mnt)], check=True, capture_output=True)
        with pytest.raises(OSError):
            (mnt / "probe").write_text("")
        run = read_run(mnt)
        assert run.end.state == "finished" and run.store.n_positions(2) == 1235
        # `report` there: one line that says where else to write; with --out it writes elsewhere
        assert main(["report", str(mnt), "--no-plots"]) == 2
        assert "not writable (read-only media?); write the report elsewhere with --out DIR" in capsys.readouterr().err
        assert main(["report", str(mnt), "--no-plots", "--out", str(tmp_path / "elsewhere")]) == 0
        again = json.loads((tmp_path / "elsewhere" / "report.json").read_text())
        live = json.loads((mnt / "report.json").read_text())
        assert again["layers"] == live["layers"]
        for key in ("wall_s", "realtime_factor"):  # the writer's figures, not 0
            assert again["run"][key] > 0 and again["run"][key] == pytest.approx(live["run"][key], rel=0.05)
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_the_folder_lock_goes_with_the_run(tmp_path, capsys):
    """A run that made its folder and wrote nothing (failed before its first file) leaves no folder holding a
    lock; a folder that holds someone's files is refused and left as it was."""
    from ttt_tui.record.files import prepare_out_dir

    out = tmp_path / "new"
    lock = prepare_out_dir(out)
    assert (out / ".ttt-tui.lock").read_text() == str(__import__("os").getpid())
    lock.close()
    assert not out.exists()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert main([str(SAMPLE), "--headless", "--out", str(busy)]) == 2  # holds files: refused, folder kept
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize(
    "key,value,want",
    [
        ("header", {**HEADER, "frame_rate": 0}, "frame_rate 0 is not a positive number"),
        ("header", {**HEADER, "frame_rate": float("nan")}, "frame_rate nan is not a positive number"),
        ("end", {"audio_s": 1.0}, "its end record is damaged"),
        ("end", {"state": "finished", "audio_s": "x"}, "its end record is damaged"),
    ],
)
def test_bad_header_or_end_values_one_line_exit_2(tmp_path, capsys, key, value, want):
    import sqlite3

    w = RunLogWriter(tmp_path, HEADER)
    w.extend(block(10))
    w.close({"state": "finished", "audio_s": 0.2})
    db = sqlite3.connect(tmp_path / LOG_NAME)
    with db:
        db.execute("UPDATE meta SET value = ? WHERE key = ?", (json.dumps(value), key))
    db.close()
    for argv in (["report", str(tmp_path)], ["compare", str(tmp_path), str(tmp_path), "--headless"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and want in err and "Traceback" not in err, err


def test_the_heartbeat_goes_on_between_blocks(tmp_path):
    w = RunLogWriter(tmp_path, HEADER, heartbeat_s=0.2)
    r = RunLogReader(tmp_path)
    first = r.status()["updated"]
    import time

    time.sleep(0.7)  # no block, no status call: a paused run, a slow model
    assert r.status()["updated"] >= first + 0.4
    w.close({"state": "finished", "audio_s": 0.0})
    r.close()


def test_a_live_process_that_reuses_the_pid_is_not_the_writer(tmp_path):
    """The header's pid now belongs to an unrelated live process (pids are reused): the run was cut short, not
    RUNNING forever."""
    import os
    import sqlite3
    import time

    from ttt_tui.record.runlog import run_info

    w = RunLogWriter(tmp_path, HEADER)
    w.extend(block(10))
    assert run_info(read_run(tmp_path))["state"] == "running"  # its writer (this process) runs
    w._beating.set()  # the writer dies without its end record ...
    w._db.close()
    other = subprocess.Popen(["sleep", "30"])  # ... and its pid is someone else's now
    try:
        db = sqlite3.connect(tmp_path / LOG_NAME)
        header = json.loads(db.execute("SELECT value FROM meta WHERE key = 'header'").fetchone()[0])
        assert header["pid"] == os.getpid() and header["pid_start"]
        header["pid"] = other.pid
        with db:
            db.execute("UPDATE meta SET value = ? WHERE key = 'header'", (json.dumps(header),))
            db.execute("UPDATE status SET updated = ?", (time.time(),))  # even with a fresh heartbeat
        db.close()
        info = run_info(read_run(tmp_path))
        assert info["state"] == "killed" and info["cut_short"]["writer_alive"] is False
    finally:
        other.kill()
        other.wait()


def test_a_writer_in_another_pid_namespace_is_followed_by_its_heartbeat(tmp_path):
    """What a login node sees of a GPU node's job (another PID namespace here, `unshare --pid --fork`): RUNNING
    while it runs (its pid means nothing here), FINISHED at its end; a heartbeat older than the limit: lost."""
    import os
    import sys
    import time

    from ttt_tui.record.runlog import LOST_AFTER_S, run_info, writer_alive

    if shutil.which("unshare") is None or subprocess.run(["unshare", "--pid", "--fork", "true"]).returncode:
        pytest.skip("cannot make a PID namespace here")
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [
        "unshare",
        "--pid",
        "--fork",
        sys.executable,
        "-m",
        "ttt_tui.cli",
        str(SAMPLE),
        "--headless",
        "--realtime",
        "--no-plots",
        "--out",
        str(out),
    ]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        t0 = time.time()
        while not (out / LOG_NAME).exists() and time.time() - t0 < 60:
            time.sleep(0.2)
        time.sleep(4)
        run = read_run(out)
        assert run.header.fields["pid_ns"] != os.stat("/proc/self/ns/pid").st_ino  # not ours: no pid to ask
        info = run_info(run)
        assert info["state"] == "running", info
        assert not writer_alive(run.header, run.status, now=run.status["updated"] + LOST_AFTER_S + 1)
        assert p.wait(120) == 0
    finally:
        p.kill()
    assert read_run(out).end.state == "finished"


def test_temporary_files_of_a_killed_writer_are_removed(finished, tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    alive = subprocess.Popen(["sleep", "30"])
    try:
        run = tmp_path / "run"
        shutil.copytree(finished, run)
        stale = run / f".report.json.{dead.pid}.tmp.json"
        busy = run / f".losses.csv.{alive.pid}.tmp.csv"  # another writer, still at work
        stale.write_text("{")
        busy.write_text("l")
        assert main(["report", str(run), "--no-plots"]) == 0
        assert not stale.exists() and busy.exists()
    finally:
        alive.kill()
        alive.wait()


def test_report_removes_the_lock_of_a_killed_run_and_keeps_a_held_one(finished, tmp_path):
    """SIGKILL leaves the folder's lock file; `ttt-tui report` removes it when no process holds it, and leaves
    the lock of a run that holds its folder."""
    from ttt_tui.record.files import LOCK_NAME, prepare_out_dir

    run = tmp_path / "killed"
    shutil.copytree(finished, run)
    (run / LOCK_NAME).write_text("12345")  # a dead run's
    assert main(["report", str(run), "--no-plots"]) == 0
    assert not (run / LOCK_NAME).exists()
    live = prepare_out_dir(tmp_path / "live")  # a run that holds its folder (this process)
    try:
        shutil.copy(finished / LOG_NAME, tmp_path / "live" / LOG_NAME)
        assert main(["report", str(tmp_path / "live"), "--no-plots"]) == 0
        assert (tmp_path / "live" / LOCK_NAME).exists()
    finally:
        live.close()
