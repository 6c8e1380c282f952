"""``ttt-tui eval``: a data set in one process, in shards merged afterwards, and on torchrun ranks gives the same
answer; a killed eval resumes without running the finished files again; bad data sets get one line."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ttt_tui.cli import main

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "assets" / "sample.wav"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Four recordings of different lengths (parts of the sample) and a manifest that also lists a missing file."""
    d = tmp_path_factory.mktemp("data")
    x, sr = sf.read(str(SAMPLE), dtype="float32")
    for i, (a, b) in enumerate([(0, 6), (3, 12), (10, 15), (12, 24)]):
        sf.write(str(d / f"f{i}.wav"), x[int(a * sr) : int(b * sr)], sr)
    (d / "list.txt").write_text("f0.wav\nf1.wav\n# a comment\n\nf2.wav\nf3.wav\nmissing.wav\n")
    return d


def load(folder: Path) -> dict:
    doc = json.loads((folder / "eval.json").read_text())
    for r in doc["runs"]:
        r.pop("folder", None)
    return doc


def assert_same(a: dict, b: dict) -> None:
    """The same per-file results, and the same aggregate to 1e-6."""
    assert a["runs"] == b["runs"] and a["worst_first"] == b["worst_first"] and a["counts"] == b["counts"]
    for L in a["layers"]:
        x, y = a["layers"][L], b["layers"][L]
        assert x["verdict"] == y["verdict"] and x["files"] == y["files"]
        for key in ("violation_rate", "avg_improvement", "cumulative_benefit", "context_gain"):
            assert x[key] == pytest.approx(y[key], rel=1e-6, abs=1e-9)
        for name in ("l0", "lprev", "lafter"):
            np.testing.assert_allclose(x["by_position"]["mean"][name], y["by_position"]["mean"][name], rtol=1e-6)


def test_one_process_shards_and_torchrun_agree(dataset, tmp_path, capsys):
    manifest = str(dataset / "list.txt")
    one = tmp_path / "one"
    assert main(["eval", manifest, "--out", str(one), "--torch-device", "cpu"]) == 3  # missing.wav failed
    doc = load(one)
    assert doc["counts"] == {"finished": 4, "failed": 1, "damaged": 0, "interrupted": 0, "running": 0, "missing": 0}
    assert doc["worst_first"][0] == 4 and "no such file" in doc["runs"][4]["reason"]
    assert [r["status"] for r in doc["runs"]] == ["finished"] * 4 + ["failed"]
    for k in range(4):  # each file has the report folder of a single run
        run = one / "runs" / f"0000{k}-f{k}"
        assert {"report.json", "ttt_diagnostic_report.txt", "run.sqlite"} <= {p.name for p in run.iterdir()}
    layer = doc["layers"]["0"]
    assert layer["files"] == 4 and layer["n_positions"] == sum(r["layers"]["0"]["n_positions"] for r in doc["runs"][:4])
    by = layer["by_position"]
    assert by["n_files"][0] == 4 and by["n_files"][-1] == 1  # the longest file alone at its end
    assert (one / "eval_layer0.png").stat().st_size > 10_000 and "Files, worst first" in (one / "eval.txt").read_text()
    three = tmp_path / "three"  # pooled rows span files: no quarter trends across recordings
    assert main(["eval", *(str(dataset / f"f{k}.wav") for k in range(3)), "--out", str(three), "--no-plots"]) == 0
    assert {d["verdict"] for d in load(three)["layers"].values()} == {"HEALTHY"}
    single = json.loads((one / "runs" / "00003-f3" / "report.json").read_text())
    assert doc["runs"][3]["layers"]["0"]["violation_rate"] == single["layers"]["0"]["violation_rate"]

    shards = tmp_path / "shards"
    for i in range(2):
        main(["eval", manifest, "--out", str(shards), "--torch-device", "cpu", "--no-plots", "--shard", f"{i}/2"])
    assert not (shards / "eval.json").exists()
    assert main(["eval", "--merge", str(shards), "--no-plots"]) == 3
    assert_same(doc, load(shards))
    elsewhere = tmp_path / "new" / "merged"  # --out a folder that does not exist yet: made
    assert main(["eval", "--merge", str(shards), "--out", str(elsewhere), "--no-plots"]) == 3
    assert_same(doc, load(elsewhere))

    ranks = tmp_path / "ranks"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "ttt_tui", "eval"]
    p = subprocess.run(
        [*cmd, manifest, "--out", str(ranks), "--torch-device", "cpu", "--no-plots"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (ranks / "eval.json").exists(), p.stderr[-3000:]
    assert_same(doc, load(ranks))
    assert p.stdout.strip() == str(ranks)  # rank 0 alone says where


def test_a_killed_eval_resumes_without_the_finished_files(dataset, tmp_path):
    files = [str(dataset / f"f{k}.wav") for k in range(3)]
    out = tmp_path / "e"
    cmd = [sys.executable, "-m", "ttt_tui", "eval", *files, "--out", str(out), "--torch-device", "cpu", "--no-plots"]
    p = subprocess.Popen([*cmd, "--realtime"], env=ENV, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while time.time() - t0 < 60 and not (out / "runs" / "00001-f1" / "run.sqlite").exists():
        time.sleep(0.2)
    time.sleep(1.0)
    p.send_signal(signal.SIGKILL)
    p.wait(10)
    first = p.stderr.read()
    assert "[1/3] " in first and "[2/3] " not in first  # f0 finished, f1 was running
    again = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "[1/3] " not in again.stderr and "[2/3] " in again.stderr and "[3/3] " in again.stderr
    doc = load(out)
    assert doc["counts"]["finished"] == 3
    whole = tmp_path / "whole"
    assert main(["eval", *files, "--out", str(whole), "--torch-device", "cpu", "--no-plots"]) == 0
    assert_same(load(whole), doc)


@pytest.mark.parametrize(
    "make,args,want",
    [
        (lambda d: (d / "empty.txt").write_text("# nothing\n\n"), ["empty.txt"], "lists no file"),
        (lambda d: (d / "sub").mkdir(), ["sub"], "holds no audio file"),
        (lambda d: None, ["x.wav", "--shard", "2/2", "--out", "o"], "--shard 2/2"),
        (lambda d: None, ["x.wav", "--shard", "1/2"], "needs --out"),
        (lambda d: None, ["--mic"], "not --mic"),
        (lambda d: None, ["--merge", "nowhere"], "not a ttt-tui eval folder"),
    ],
)
def test_bad_data_sets_one_line_exit_2(tmp_path, capsys, monkeypatch, make, args, want):
    monkeypatch.chdir(tmp_path)
    make(tmp_path)
    assert main(["eval", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and want in err and "Traceback" not in err, err


def test_eval_on_screen_and_open_afterwards(dataset, tmp_path):
    """In a terminal the files run in a thread while the screen follows the aggregate (progress over files, the
    averaged losses, the files worst first); `ttt-tui open DIR` shows the same folder afterwards."""
    import asyncio

    from ttt_tui.cli import build_parser
    from ttt_tui.evaluation.inputs import record, shard
    from ttt_tui.evaluation.runner import Stop, run_shard
    from ttt_tui.run.settings import RunSettings
    from ttt_tui.tui.eval_view import EvalApp

    files = [dataset / "f0.wav", dataset / "f2.wav"]
    out = tmp_path / "e"
    a = build_parser(dataset=True).parse_args([*map(str, files), "--torch-device", "cpu", "--no-plots"])
    settings = RunSettings.from_args(a)
    record(out, files)
    stop = Stop()
    app = EvalApp(out, run=lambda: run_shard(settings, shard(files, 0, 1), out, 2, stop=stop), stop=stop)

    async def live():
        async with app.run_test(size=(120, 40)) as pilot:
            t0 = time.time()
            while app.running and time.time() - t0 < 60:
                await pilot.pause(0.2)
            await pilot.pause(2.5)  # one more merge after the end
            header = str(app.query_one("#header").render())
            rows = app.query_one("#files").row_count
            app.save_screenshot(filename="eval.svg", path=str(tmp_path))
            await pilot.press("q")
        return header, rows

    header, rows = asyncio.run(live())
    assert "DONE" in header and "2 / 2 files finished" in header and "layer 0" in header, header
    assert rows == 2 and len(app.result.finished) == 2
    assert "averaged&#160;over&#160;files" in (tmp_path / "eval.svg").read_text()

    async def reopen():
        again = EvalApp(out)
        async with again.run_test(size=(80, 24)) as pilot:
            await pilot.pause(2.5)
            header = str(again.query_one("#header").render())
            await pilot.press("q")
        return header

    assert "2 / 2 files finished" in asyncio.run(reopen())


def test_following_an_eval_reads_each_finished_run_once(dataset, tmp_path, monkeypatch):
    """The eval screen's merger: brought up to date as shards finish, it reads every run once and ends with the
    aggregate that a merge at once gives."""
    from ttt_tui.evaluation import aggregate

    files = [str(dataset / f"f{k}.wav") for k in range(4)]
    out = tmp_path / "e"
    opts = ["--out", str(out), "--torch-device", "cpu", "--no-plots"]
    assert main(["eval", *files, "--shard", "0/2", *opts]) == 0
    reads = []
    real = aggregate.read_run
    monkeypatch.setattr(aggregate, "read_run", lambda folder: (reads.append(Path(folder).name), real(folder))[1])
    m = aggregate.Merger([out])
    first = m.update()
    assert first["counts"]["finished"] == 2 and first["counts"]["missing"] == 2
    assert m.update()["counts"] == first["counts"] and len(reads) == 2  # nothing new: nothing read
    assert main(["eval", *files, "--shard", "1/2", *opts]) == 0
    doc = m.update()
    assert sorted(reads) == ["00000-f0", "00001-f1", "00002-f2", "00003-f3"]  # each run read once
    at_once = aggregate.merge([out])
    for d in (doc, at_once):
        d["runs"] = [{k: v for k, v in r.items() if k != "folder"} for r in d["runs"]]
    assert_same(doc, at_once)


def test_eval_text_says_why_no_file_has_the_pooled_verdict():
    from ttt_tui.evaluation.aggregate import render_text

    def layer(verdict, by_file):
        m = {"mean": 1.0}
        return {
            "verdict": verdict,
            "files": 3,
            "n_positions": 300,
            "violation_rate": 20.0,
            "avg_improvement": 0.01,
            "cumulative_benefit": 0.1,
            "context_gain": 0.09,
            "l0": m,
            "lprev": m,
            "lafter": m,
            "findings": [],
            "verdicts_by_file": by_file,
        }

    counts = {"finished": 3, "failed": 0, "interrupted": 0, "running": 0, "missing": 0}
    doc = {"files": 3, "counts": counts, "runs": [], "worst_first": []}
    doc["layers"] = {"0": layer("HEALTHY", {"HEALTHY": 0, "NOT_ADAPTING": 3}), "1": layer("HEALTHY", {"HEALTHY": 3})}
    text = render_text(doc)
    layer0, layer1 = text.split("LAYER 1")
    assert "no file has the pooled verdict" in layer0 and "no file has the pooled verdict" not in layer1


def test_a_file_killed_between_its_end_record_and_its_report_gets_its_report_on_resume(dataset, tmp_path):
    out = tmp_path / "e"
    files = [str(dataset / "f0.wav"), str(dataset / "f2.wav")]
    args = ["eval", *files, "--out", str(out), "--no-plots", "--torch-device", "cpu", "--headless"]
    assert main(args) == 0
    run = out / "runs" / "00000-f0"
    want = json.loads((run / "report.json").read_text())
    log_time = (run / "run.sqlite").stat().st_mtime_ns
    for name in ("report.json", "ttt_diagnostic_report.txt", "losses.csv"):  # as if killed before the report
        (run / name).unlink()
    assert main(args) == 0
    assert (run / "run.sqlite").stat().st_mtime_ns == log_time  # not run again
    got = json.loads((run / "report.json").read_text())
    assert got["layers"] == want["layers"] and got["run"]["state"] == "finished"
    assert (run / "ttt_diagnostic_report.txt").is_file() and (run / "losses.csv").is_file()


def test_a_damaged_per_file_log_is_listed_as_damaged_with_the_reason(dataset, tmp_path, capsys):
    out = tmp_path / "e"
    files = [str(dataset / "f0.wav"), str(dataset / "f2.wav")]
    assert main(["eval", *files, "--out", str(out), "--no-plots", "--torch-device", "cpu", "--headless"]) == 0
    (out / "runs" / "00001-f2" / "run.sqlite").write_bytes(b"not a database, garbage" * 100)
    capsys.readouterr()
    assert main(["eval", "--merge", str(out), "--no-plots"]) == 3
    doc = load(out)
    assert doc["counts"]["damaged"] == 1 and doc["counts"]["missing"] == 0
    entry = doc["runs"][1]
    assert entry["status"] == "damaged" and "not a readable run log" in entry["reason"], entry
    text = (out / "eval.txt").read_text()
    assert "1 with a damaged log" in text and "DAMAGED" in text
