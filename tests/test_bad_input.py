"""Bad input as new and hostile users give it: one line that names the cause, exit 2, never a traceback or an
'internal error'; input the model should not be blamed for is repaired and reported."""

import json
import os
from pathlib import Path

import moshi_tiny
import numpy as np
import pytest
import soundfile as sf

from ttt_tui.cli import main

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = str(ROOT / "assets" / "sample.wav")


def one_line(capsys, code, want):
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "internal error" not in err and "Traceback" not in err, err
    assert want in err, err


@pytest.mark.parametrize(
    "args,want",
    [
        (["--torch-device", "nonsense"], "not a device name"),
        (["--torch-device", "meta"], "runs on cpu or cuda"),
        (["--block-seconds", "nan"], "--block-seconds"),
        (["--window", "1"], "--window must be within 2..3600"),
        (["--window", "nan"], "--window"),
        (["--mini-batch", "1000000"], "--mini-batch must be within 1..4096"),
        (["--checkpoint", SAMPLE], "is a file; give its folder"),
    ],
)
def test_bad_options(tmp_path, capsys, args, want):
    one_line(capsys, main([SAMPLE, "--headless", "--out", str(tmp_path / "r"), *args]), want)


def test_nan_duration(capsys):
    one_line(capsys, main(["--mic", "--duration", "nan", "--headless"]), "--duration must be a positive number")


def test_special_files_are_named_as_such(tmp_path, capsys):
    fifo = tmp_path / "audio.fifo"
    os.mkfifo(fifo)
    one_line(capsys, main([str(fifo), "--headless"]), "is a pipe (FIFO), not an audio file")
    one_line(capsys, main(["/dev/zero", "--headless"]), "is a device or special file")


def test_permission_denied(tmp_path, capsys, monkeypatch):
    from ttt_tui.sources import file as file_source

    monkeypatch.setattr(file_source.os, "access", lambda *a: False)  # as root every file is readable
    one_line(capsys, main([SAMPLE, "--headless"]), "permission denied")


def test_file_names_with_any_bytes(tmp_path, capsys):
    """A valid FLAC whose name is not UTF-8, and one with a newline: read, and the report stays valid."""
    x = (0.1 * np.random.default_rng(0).standard_normal(16000 * 3)).astype(np.float32)
    for i, raw in enumerate((b"na\xefve.flac", b"two\nlines.flac")):
        path = os.fsencode(tmp_path) + b"/" + raw
        sf.write(str(tmp_path / "t.flac"), x, 16000)
        os.rename(tmp_path / "t.flac", path)
        out = tmp_path / f"r{i}"
        assert main([os.fsdecode(path), "--headless", "--no-plots", "--out", str(out)]) == 0, capsys.readouterr().err
        doc = json.loads((out / "report.json").read_text(encoding="utf-8"))
        assert doc["layers"]["0"]["n_positions"] > 100
        text = (out / "ttt_diagnostic_report.txt").read_text(encoding="utf-8")
        (line,) = [x for x in text.splitlines() if x.startswith("Input:")]
        assert line.endswith(".flac")


def test_non_finite_samples_are_replaced_and_reported(tmp_path, capsys):
    x = (0.1 * np.random.default_rng(0).standard_normal(16000 * 4)).astype(np.float32)
    sf.write(str(tmp_path / "clean.wav"), x, 16000, subtype="FLOAT")
    x[16000:16010], x[32000] = np.nan, np.inf
    sf.write(str(tmp_path / "nan.wav"), x, 16000, subtype="FLOAT")
    docs = {}
    for name in ("clean", "nan"):
        out = tmp_path / f"r-{name}"
        assert main([str(tmp_path / f"{name}.wav"), "--headless", "--no-plots", "--out", str(out)]) == 0
        docs[name] = json.loads((out / "report.json").read_text())
    assert docs["nan"]["run"]["nonfinite_samples"] == 11 and docs["clean"]["run"]["nonfinite_samples"] == 0
    for layer, d in docs["nan"]["layers"].items():
        assert d["nonfinite"] == 0 and d["verdict"] == docs["clean"]["layers"][layer]["verdict"]
    assert "11 non-finite samples" in (tmp_path / "r-nan" / "ttt_diagnostic_report.txt").read_text()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return moshi_tiny.build(tmp_path_factory.mktemp("tiny"))


def test_bad_training_config_numbers(tmp_path, capsys, tiny):
    import shutil

    ck = tmp_path / "ck"
    shutil.copytree(tiny["checkpoint"], ck)
    tc = json.loads((ck / "training_config.json").read_text())
    tc["ttt"]["mini_batch_size"] = 0
    (ck / "training_config.json").write_text(json.dumps(tc))
    args = moshi_tiny.cli_args({**tiny, "checkpoint": ck})
    one_line(capsys, main([SAMPLE, "--headless", *args]), "ttt.mini_batch_size = 0 is not valid")


def test_corrupt_and_swapped_weights_are_named(tmp_path, capsys, tiny):
    bad = tmp_path / "moshi.safetensors"
    bad.write_bytes(b"\x00" * 64)
    args = moshi_tiny.cli_args({**tiny, "moshi": bad})
    one_line(capsys, main([SAMPLE, "--headless", *args]), f"--moshi-weight {bad} is not a readable safetensors file")
    swapped = moshi_tiny.cli_args({**tiny, "moshi": tiny["mimi"], "mimi": tiny["moshi"]})
    one_line(capsys, main([SAMPLE, "--headless", *swapped]), "are --moshi-weight and --mimi-weight swapped?")


def test_decoder_messages_do_not_reach_the_terminal(tmp_path, capfd, monkeypatch):
    """What the C decoder writes to fd 2 while a file is opened (libmpg123 on some MP3s) stays off the terminal
    and is kept in the report."""
    import soundfile

    from ttt_tui.sources import file as file_source

    real_info = soundfile.info

    def chatty_info(target):
        os.write(2, b"[src/libmpg123/parse.c:1234] warning: Encountered a ghost frame\n")
        return real_info(target)

    monkeypatch.setattr(file_source.sf, "info", chatty_info)
    out = tmp_path / "r"
    assert main([SAMPLE, "--headless", "--no-plots", "--out", str(out)]) == 0
    assert "libmpg123" not in capfd.readouterr().err
    doc = json.loads((out / "report.json").read_text())
    assert doc["run"]["decoder_messages"] == ["[src/libmpg123/parse.c:1234] warning: Encountered a ghost frame"]


def test_non_finite_samples_are_reported_by_the_dashboard_too(tmp_path):
    """The dashboard's report said 0 whatever the input held: its process counted on a source of its own that
    never read the file. Now the inference process's source counts, and its count reaches the run log's end
    record, the report and the text."""
    import asyncio

    from ttt_tui.cli import build_parser
    from ttt_tui.run.live import LiveRun
    from ttt_tui.run.settings import RunSettings
    from ttt_tui.tui.app import DashboardApp

    x = (0.1 * np.random.default_rng(0).standard_normal(16000 * 4)).astype(np.float32)
    x[16000:16010], x[32000] = np.nan, np.inf
    sf.write(str(tmp_path / "nan.wav"), x, 16000, subtype="FLOAT")
    out = tmp_path / "rep"
    args = build_parser().parse_args([str(tmp_path / "nan.wav"), "--out", str(out), "--no-plots"])
    run = LiveRun(RunSettings.from_args(args))
    run.start()

    async def scenario():
        app = DashboardApp(run, install_signals=False)
        async with app.run_test(size=(200, 60)) as pilot:
            for _ in range(300):
                if app.finished_handled:
                    break
                await pilot.pause(0.1)
            await pilot.press("q")

    asyncio.run(scenario())
    run.release()
    doc = json.loads((out / "report.json").read_text())
    assert doc["run"]["nonfinite_samples"] == 11
    assert "11 non-finite samples" in (out / "ttt_diagnostic_report.txt").read_text()
