"""A damaged run log (flipped bits on a disk or in a copy, a torn file, a hand-edited block) is read as far as it
can be: a block whose checksum or shape is wrong is skipped and named (layer, positions, why) on the screen, in
the text report, in report.json and on stderr; its positions are missing rows that no number counts, and the
blocks after it keep their places. On main before this change, flipped bytes gave exit 0, "finished" and values
off by up to 1.91, and one malformed block dropped every later block of its layer."""

import json
import sqlite3

import numpy as np
import pytest

from ttt_tui.analysis.stats import summarize
from ttt_tui.cli import main
from ttt_tui.record.runlog import LOG_NAME, RunLogWriter, read_run
from ttt_tui.record.store import LossStore

RATE = 12.5
HEADER = {
    "input": "x.wav",
    "model": "synthetic",
    "device": "cpu",
    "frame_rate": RATE,
    "layer_ids": [0, 1],
    "signal_names": [],
}
BLOCK = 25  # positions per block; 12 blocks per layer


def losses(n=300, seed=0):
    """Healthy-looking rows: l0 > lprev > lafter with noise."""
    rng = np.random.default_rng(seed)
    lafter = 1.0 + 0.1 * rng.random(n)
    lprev = lafter + 0.05 + 0.01 * rng.random(n)
    l0 = lprev + 0.2 + 0.01 * rng.random(n)
    return np.stack([l0, lprev, lafter], 1).astype(np.float32)


def write_log(folder, data):
    w = RunLogWriter(folder, HEADER)
    n = next(iter(data.values())).shape[0]
    for a in range(0, n, BLOCK):
        w.extend({k: v[a : a + BLOCK] for k, v in data.items()})
    w.close({"state": "finished", "audio_s": n / RATE, "stop_reason": None, "error": None})


@pytest.fixture
def log(tmp_path):
    data = {0: losses(seed=0), 1: losses(seed=1)}
    folder = tmp_path / "run"
    folder.mkdir()
    write_log(folder, data)
    return folder, data


def block_id(folder, layer, start):
    db = sqlite3.connect(folder / LOG_NAME)
    (bid,) = db.execute(
        "SELECT id FROM blocks WHERE layer = ? AND kind = 'losses' AND start = ?", (layer, start)
    ).fetchone()
    db.close()
    return bid


def edit(folder, sql, *args):
    db = sqlite3.connect(folder / LOG_NAME)
    with db:
        db.execute(sql, args)
    db.close()


def expected_without(data, layer, a, b):
    """What the layer's statistics must be: every row but the lost ones."""
    keep = np.ones(data[layer].shape[0], bool)
    keep[a:b] = False
    return summarize(data[layer][keep])


def test_flipped_bits_in_a_file_are_found_named_and_left_out(log, capsys):
    """Bytes flipped in the file itself (not through SQLite): the block that holds them fails its checksum."""
    folder, data = log
    path = folder / LOG_NAME
    raw = bytearray(path.read_bytes())
    target = data[1][100:125].astype("<f4").tobytes()  # layer 1, positions 100-124: the 5th block
    at = raw.find(target)
    assert at > 0
    for k in (7, 90, 200):
        raw[at + k] ^= 0x5A
    path.write_bytes(bytes(raw))

    assert main(["report", str(folder), "--no-plots"]) == 0
    err = capsys.readouterr().err
    assert "damaged run log: layer 1: positions 100-124 (8.00-10.00 s) lost: checksum mismatch" in err, err
    doc = json.loads((folder / "report.json").read_text())
    (d,) = doc["run"]["log_damage"]
    assert (d["layer"], d["kind"], d["start"], d["end"], d["why"]) == (1, "losses", 100, 125, "checksum mismatch")
    lay = doc["layers"]["1"]
    assert lay["n_positions"] == 300 and lay["missing"] == 25  # later blocks kept, in their places
    want = expected_without(data, 1, 100, 125)
    assert lay["avg_improvement"] == pytest.approx(want["avg_improvement"], rel=1e-5)
    assert lay["l0"]["mean"] == pytest.approx(want["l0"]["mean"], rel=1e-5)
    assert lay["nonfinite"] == 0 and lay["violations"] == 0  # the lost rows are not NaN positions
    assert doc["layers"]["0"]["missing"] == 0
    text = (folder / "ttt_diagnostic_report.txt").read_text()
    assert "DAMAGED RUN LOG: 1 part(s)" in text and "layer 1: positions 100-124" in text
    csv = (folder / "losses.csv").read_text().splitlines()
    assert len(csv) == 1 + 600  # every position has its row (the lost ones empty: nan)
    assert csv[1 + 300 + 110].startswith("1,110,8.8000,nan,nan,nan")
    assert csv[1 + 300 + 130].startswith("1,130,10.4000,")


@pytest.mark.parametrize(
    "change, sql, where, why",
    [
        ("a value rewritten", "UPDATE blocks SET data = ? WHERE id = ?", 50, "checksum mismatch"),
        ("columns", "UPDATE blocks SET cols = 4 WHERE id = ?", 50, "malformed"),
        ("a negative start", "UPDATE blocks SET start = -5 WHERE id = ?", 50, "malformed"),
        ("not bytes", "UPDATE blocks SET data = 'text' WHERE id = ?", 50, "malformed"),
        ("a block deleted", "DELETE FROM blocks WHERE id = ?", 50, "no block holds them"),
    ],
)
def test_one_bad_block_keeps_every_later_one(log, change, sql, where, why):
    folder, data = log
    bid = block_id(folder, 0, where)
    if change == "a value rewritten":
        bad = data[0][where : where + BLOCK].copy()
        bad[3, 0] += 1.91  # the size of error a flipped exponent bit gave on main
        edit(folder, sql, bad.astype("<f4").tobytes(), bid)
    else:
        edit(folder, sql, bid)
    run = read_run(folder)
    assert run.end.state == "finished"
    assert run.store.n_positions(0) == 300 and run.store.n_positions(1) == 300
    assert run.store.missing(0) == [(50, 25)]
    _, rows = run.store.view(0)
    np.testing.assert_array_equal(rows[75:], data[0][75:])  # every later block, in place
    np.testing.assert_array_equal(rows[:50], data[0][:50])
    assert np.isnan(rows[50:75]).all()
    s = run.store.summary(0)
    want = expected_without(data, 0, 50, 75)
    assert s["missing"] == 25 and s["nonfinite"] == 0 and s["violation_rate"] == 0.0
    assert s["avg_improvement"] == pytest.approx(want["avg_improvement"], rel=1e-5)
    # quarters of the run's positions (its time), over the rows it holds
    gap = (data[0][:, 0] - data[0][:, 2]).astype(np.float64)
    assert s["gap_trend"] == pytest.approx(gap[225:].mean() - gap[:50].mean(), rel=1e-4)
    assert run.damaged and why in run.damaged[0]["why"]
    # where its own place is unknown (a bad start, bad bytes), the next block's start tells which positions
    # were lost: one entry names them
    assert any(d["start"] == 50 and d["end"] == 75 for d in run.damaged), run.damaged


@pytest.mark.parametrize("cut", [1, 5000])
def test_a_torn_copy_reads_or_says_why(log, capsys, cut):
    """A copy that lost its last bytes: what its pages hold is read and what is lost is named. Cut by a byte,
    SQLite opens it and the cut block fails its checksum; cut by 5,000 bytes, SQLite refuses it, and it is read
    from memory, padded to the length its header gives (Python 3.11+: ``sqlite3.Connection.deserialize``; on
    3.10 one line and exit 2). Nothing is wrong silently."""
    import sys

    folder, data = log
    path = folder / LOG_NAME
    raw = path.read_bytes()
    path.write_bytes(raw[:-cut])
    code = main(["report", str(folder), "--no-plots"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if sys.version_info >= (3, 11):
        assert code == 0, err
    if cut == 5000 and code == 0:
        assert "damaged run log: the file is cut short" in err, err
        assert "unreadable" in err or "checksum mismatch" in err, err
    if code == 0:
        doc = json.loads((folder / "report.json").read_text())
        for k in ("0", "1"):
            lay = doc["layers"][k]
            n_ok = lay["n_positions"] - lay["missing"]
            assert n_ok <= 300
            if lay["missing"] == 0 and lay["n_positions"] == 300:
                assert lay["avg_improvement"] == pytest.approx(summarize(data[int(k)])["avg_improvement"], rel=1e-5)
    else:
        assert code == 2 and err.count("\n") == 1 and str(folder) in err, err


def test_windows_skip_the_lost_positions():
    """The over-time verdicts: a window with lost rows is judged on the rows it holds (no EXPLODING for NaN
    that the model never produced)."""
    store = LossStore([0], RATE)
    data = losses(3000)
    store.append(0, data[:1000])
    store.append_missing(0, 500)
    store.append(0, data[1500:])
    from ttt_tui.analysis.headline import layer_headline

    h = layer_headline(store, 0, 30.0)
    assert h["verdict"] == "HEALTHY" and "EXPLODING" not in json.dumps(h), h
    s = store.summary(0)
    assert s["n_positions"] == 3000 and s["missing"] == 500 and s["nonfinite"] == 0


def test_open_names_the_damage_on_screen(log, tmp_path):
    from test_tui_sizes import show

    folder, data = log
    edit(folder, "UPDATE blocks SET crc = crc + 1 WHERE id = ?", block_id(folder, 1, 200))
    seen = show(folder, (200, 60), tmp_path)  # the dashboard of `ttt-tui open`, read as it is drawn
    text, counters = seen["findings"], seen["counters"][1]  # layers 0, 1
    assert "damaged log: layer 1: positions 200-224 (16.00-18.00 s) lost: checksum mismatch" in text, text
    assert "positions 300 " in counters and "lost 25" in counters, counters


def test_a_log_of_format_1_still_reads(tmp_path):
    """Logs written before the checksums (format 1, no crc column) read as before."""
    folder = tmp_path / "old"
    folder.mkdir()
    data = {0: losses(seed=0), 1: losses(seed=1)}
    write_log(folder, data)
    db = sqlite3.connect(folder / LOG_NAME)
    with db:
        db.execute("ALTER TABLE blocks DROP COLUMN crc")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'format'")
    db.close()
    run = read_run(folder)
    assert not run.damaged and run.store.n_positions(1) == 300
    np.testing.assert_array_equal(run.store.view(1)[1], data[1])
