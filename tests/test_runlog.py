"""The run log: a killed run keeps every block but the last, `ttt-tui report DIR` rebuilds its report, and a
log read back gives the same numbers as the run that wrote it."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_tui import tmux_screen

from ttt_tui.cli import main
from ttt_tui.record.runlog import FORMAT, LOG_NAME

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "assets" / "sample.wav"


def cli(*args, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "ttt_tui.cli", *map(str, args)], env=env, text=True, **kw)


def test_sigkill_then_report(tmp_path):
    out = tmp_path / "run"
    p = cli(SAMPLE, "--headless", "--realtime", "--out", out, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(8)
    p.send_signal(signal.SIGKILL)
    p.wait(10)
    assert not (out / "report.json").exists()  # nothing but the log was written
    r = cli("report", out, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = r.communicate(timeout=120)
    assert r.returncode == 0, stderr
    assert "cut short" in stderr and stdout.strip() == str(out)
    doc = json.loads((out / "report.json").read_text())
    run = doc["run"]
    assert run["state"] == "killed" and run["interrupted"] is True and run["cut_short"]["writer_alive"] is False
    # --realtime: about 1 s of audio per second after start-up; every block up to the last one is there
    assert 5.0 <= run["duration_s"] <= 8.0
    for layer in doc["layers"].values():
        assert layer["n_positions"] == run["cut_short"]["positions"] == int(round(run["duration_s"] * 50)) - 1
    text = (out / "ttt_diagnostic_report.txt").read_text()
    assert "RUN CUT SHORT" in text and f"{run['duration_s']:.1f} s of audio" in text


def test_the_log_gives_the_numbers_of_the_run(tmp_path):
    out = tmp_path / "run"
    assert main([str(SAMPLE), "--headless", "--no-plots", "--out", str(out)]) == 0
    live = (out / "losses.csv").read_text()
    live_doc = json.loads((out / "report.json").read_text())
    (out / "losses.csv").unlink()
    assert main(["report", str(out), "--no-plots"]) == 0
    assert (out / "losses.csv").read_text() == live
    doc = json.loads((out / "report.json").read_text())
    assert doc["run"]["state"] == "finished" and doc["run"]["interrupted"] is False
    assert doc["layers"] == live_doc["layers"]
    size = (out / LOG_NAME).stat().st_size
    positions = sum(layer["n_positions"] for layer in doc["layers"].values())
    assert size < 16 * positions + 64 * 1024  # 12 bytes per token per layer, plus a bounded overhead


def test_torn_log_and_bad_folders(tmp_path, capsys):
    out = tmp_path / "run"
    p = cli(SAMPLE, "--headless", "--realtime", "--out", out, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(6)
    p.send_signal(signal.SIGKILL)
    p.wait(10)
    wal = out / (LOG_NAME + "-wal")
    assert wal.exists()
    with open(wal, "r+b") as f:  # the last write cut in the middle
        f.truncate(wal.stat().st_size - 3000)
    assert main(["report", str(out), "--no-plots"]) == 0
    capsys.readouterr()
    doc = json.loads((out / "report.json").read_text())
    assert doc["layers"]["0"]["n_positions"] > 100  # what is readable is used
    for folder, want in (
        (tmp_path / "nope", "no such folder"),
        (tmp_path, f"is not a ttt-tui run: it has no {LOG_NAME}"),
    ):
        assert main(["report", str(folder)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and want in err, err
    newer = tmp_path / "newer"
    newer.mkdir()
    db = sqlite3.connect(newer / LOG_NAME)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("INSERT INTO meta VALUES ('format', ?)", (str(FORMAT + 1),))
    db.commit()
    db.close()
    assert main(["report", str(newer)]) == 2
    assert "written by a newer ttt-tui" in capsys.readouterr().err
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / LOG_NAME).write_bytes(np.random.default_rng(0).bytes(8192))
    assert main(["report", str(garbage)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is not a readable run log" in err


@pytest.mark.parametrize("name", ["report"])
def test_a_file_named_like_a_subcommand_is_still_an_input(tmp_path, monkeypatch, name):
    import shutil

    monkeypatch.chdir(tmp_path)
    shutil.copy(SAMPLE, tmp_path / name)
    assert main([name, "--headless", "--no-plots", "--out", str(tmp_path / "r")]) == 0


def test_no_report_is_replaced_or_mixed(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([str(SAMPLE), "--headless", "--no-plots", "--out", str(out)]) == 0
    first = (out / "report.json").read_text()
    capsys.readouterr()
    assert main([str(SAMPLE), "--headless", "--no-plots", "--out", str(out)]) == 2  # refused, nothing touched
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already holds" in err and "--force" in err
    assert (out / "report.json").read_text() == first
    (out / "output.wav").write_bytes(b"stale")  # an earlier run's files must not join the new report
    (out / "figure5_layer7.png").write_bytes(b"stale")
    (out / "notes.txt").write_text("mine")
    assert main([str(SAMPLE), "--headless", "--no-plots", "--force", "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert "output.wav" not in names and "figure5_layer7.png" not in names and "notes.txt" in names


def test_a_folder_in_use_is_refused(tmp_path):
    out = tmp_path / "run"
    first = cli(SAMPLE, "--headless", "--realtime", "--out", out, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(3)
        second = cli(SAMPLE, "--headless", "--force", "--out", out, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, err = second.communicate(timeout=60)
        assert second.returncode == 2 and f"in use by a running ttt-tui (pid {first.pid})" in err, err
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(30)
    assert first.returncode == 130 and json.loads((out / "report.json").read_text())["run"]["interrupted"] is True


def test_default_folders_never_collide(tmp_path, monkeypatch):
    from ttt_tui.record.files import default_out_dir

    monkeypatch.chdir(tmp_path)
    assert len({default_out_dir("a/in.wav") for _ in range(50)}) == 50  # the same stem, the same second


def test_a_full_disk_never_leaves_a_truncated_file(tmp_path):
    """Small filesystems, full at different points of the run: one line, the file and folder named, and every
    report file there is whole (or absent); never a temporary file left behind."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    for size in ("4k", "64k", "400k"):
        if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)]).returncode:
            pytest.skip("cannot mount a small filesystem here (needs root)")
        try:
            r = cli(SAMPLE, "--headless", "--out", mnt / "r", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            _, err = r.communicate(timeout=120)
            lines = err.strip().splitlines()
            assert r.returncode in (1, 2) and "Traceback" not in err and "internal error" not in err, err
            assert str(mnt / "r") in lines[-1] and ("No space left" in lines[-1] or "full" in lines[-1]), lines[-1]
            # a run that could not even start its log leaves no folder of its own; none leaves its lock
            names = [p.name for p in (mnt / "r").iterdir()] if (mnt / "r").exists() else []
            assert not [n for n in names if ".tmp" in n or n == ".ttt-tui.lock"], names
            if r.returncode == 2:
                assert not (mnt / "r").exists()
            if "report.json" in names:
                json.loads((mnt / "r" / "report.json").read_text())
        finally:
            subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.skipif(__import__("shutil").which("tmux") is None, reason="needs tmux (installed by .ci/run)")
def test_open_follows_a_headless_run_live(tmp_path):
    """A headless run writing; `ttt-tui open DIR` in another terminal: the positions grow on screen, then the
    run is shown finished; the folder is only read."""
    out = tmp_path / "run"
    writer = cli(SAMPLE, "--headless", "--realtime", "--out", out, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    name = f"ttt-open-{os.getpid()}"
    try:
        time.sleep(3)
        cmd = f"cd {ROOT} && PYTHONPATH={ROOT} {sys.executable} -m ttt_tui.cli open {out}; sleep 30"
        subprocess.run(["tmux", "new-session", "-d", "-x", "200", "-y", "50", "-s", name, cmd], check=True)
        seen, t0 = [], time.time()
        while time.time() - t0 < 40 and len(set(seen)) < 3:
            time.sleep(1.0)
            screen = tmux_screen(name)
            for line in screen.splitlines():
                if "positions" in line:
                    seen.append(int(line.split("positions")[1].split()[0]))
                    break
        assert len(set(seen)) >= 3 and seen == sorted(seen), seen  # growing, live
        assert "RUNNING" in screen
        writer.wait(60)
        t0 = time.time()
        while time.time() - t0 < 10 and "FINISHED" not in screen:
            time.sleep(0.5)
            screen = tmux_screen(name)
        assert "FINISHED" in screen and "positions 1235" in screen, screen
        subprocess.run(["tmux", "send-keys", "-t", name, "q"], check=True)
        time.sleep(1.5)
    finally:
        writer.kill()
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)
    assert not (out / "dashboard.svg").exists()  # the writer was headless; open wrote nothing


def test_compare_two_runs(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main([str(SAMPLE), "--headless", "--no-plots", "--out", str(a)]) == 0
    assert main([str(SAMPLE), "--headless", "--no-plots", "--lr-scale", "0", "--out", str(b)]) == 0
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 0
    doc = json.loads((out / "compare.json").read_text())
    assert [r["folder"] for r in doc["runs"]] == [str(a), str(b)] and doc["common_layers"] == [0, 1, 2]
    assert doc["runs"][0]["layers"]["0"]["verdict"] == "HEALTHY"
    assert doc["runs"][1]["layers"]["0"]["verdict"] == "NOT_LEARNING"  # no inner step: the lines overlap
    assert {p.name for p in out.iterdir()} >= {"compare.txt", "compare_layer0.png", "compare_layer2.png"}
    assert "LAYER 2" in (out / "compare.txt").read_text()
    check_compare_screen(a, b, tmp_path)


def check_compare_screen(a, b, tmp_path):
    """On a terminal, compare shows the table and, per layer, each run's benefit and improvement as lines."""
    import asyncio

    from ttt_tui.report.compare import compare_runs
    from ttt_tui.tui.compare_view import CompareApp

    cmp = compare_runs([a, b])
    app = CompareApp(cmp, tmp_path / "cmp")

    async def drive():
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause(0.3)
            table = app.query_one("DataTable")
            assert table.row_count == 6  # 3 common layers x 2 runs
            await pilot.press("tab")
            await pilot.pause(0.3)
            assert app.selected == 1
            app.save_screenshot(filename="compare.svg", path=str(tmp_path))
            await pilot.press("q")

    asyncio.run(drive())
    svg = (tmp_path / "compare.svg").read_text()
    assert "layer&#160;1:&#160;benefit" in svg and "NOT_LEARNING" in svg and "HEALTHY" in svg


def test_compare_what_is_common(tmp_path, capsys):
    import moshi_tiny
    import soundfile as sf

    a, m = tmp_path / "a", tmp_path / "m"
    assert main([str(SAMPLE), "--headless", "--no-plots", "--out", str(a)]) == 0
    paths = moshi_tiny.build(tmp_path / "tiny")  # TTT layers 2 and 3
    wav = tmp_path / "in.wav"
    sf.write(str(wav), (0.1 * np.random.default_rng(0).standard_normal(24000)).astype(np.float32), 24000)
    assert main([str(wav), "--headless", "--no-plots", "--out", str(m), *moshi_tiny.cli_args(paths)]) == 0
    assert main(["compare", str(a), str(m), "--out", str(tmp_path / "cmp"), "--no-plots"]) == 0
    doc = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert doc["common_layers"] == [2]
    notes = " ".join(doc["notes"])
    assert "layers [0, 1] are not in every run" in notes and "different models" in notes
    assert "different lengths of audio" in notes
    capsys.readouterr()
    assert main(["compare", str(a)]) == 2
    assert "two or more" in capsys.readouterr().err


def read_events(folder: Path) -> dict:
    """Scalars of a TensorBoard event file, read with its record format (length, crc, data, crc)."""
    import struct

    from tensorboardX.proto import event_pb2

    out: dict = {}
    for path in folder.glob("events.out.tfevents.*"):
        raw = path.read_bytes()
        i = 0
        while i < len(raw):
            (n,) = struct.unpack("<Q", raw[i : i + 8])
            event = event_pb2.Event.FromString(raw[i + 12 : i + 12 + n])
            i += 12 + n + 4
            for v in event.summary.value:
                out.setdefault(v.tag, []).append((event.step, v.simple_value))
    return out


def test_tensorboard_export(tmp_path):
    pytest.importorskip("tensorboardX")
    out, tb = tmp_path / "run", tmp_path / "tb"
    assert main([str(SAMPLE), "--headless", "--no-plots", "--out", str(out), "--tensorboard", str(tb)]) == 0
    scalars = read_events(tb / "run")
    assert {f"layer{L}/{k}" for L in range(3) for k in ("l0", "lprev", "lafter", "benefit")} <= set(scalars)
    l0 = scalars["layer0/l0"]
    assert [s for s, _ in l0] == list(range(1, 25))  # one point per whole second of the 24.7 s sample
    data = np.loadtxt(out / "losses.csv", delimiter=",", skiprows=1)
    first = data[(data[:, 0] == 0) & (data[:, 1] < 50)][:, 3].mean()
    assert l0[0][1] == pytest.approx(first, rel=1e-5)
    assert main(["tensorboard", str(out), "--logdir", str(tmp_path / "tb2")]) == 0  # a saved run
    assert read_events(tmp_path / "tb2" / "run")["layer2/violation_rate"] == scalars["layer2/violation_rate"]
