"""The headless command as a batch job uses it: real processes, real files, real signals."""

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

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "assets" / "sample.wav"


def ttt_tui(*args, timeout=120, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "ttt_tui.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        **kw,
    )


def speech_like(rate, seconds, channels=1):
    """The bundled sample, resampled and repeated (real speech at another rate / channel count)."""
    import soxr

    x, sr = sf.read(str(SAMPLE), dtype="float32")
    x = soxr.resample(x, sr, rate)
    x = np.tile(x, int(np.ceil(seconds * rate / len(x))))[: int(seconds * rate)]
    return np.stack([x, 0.5 * x], 1) if channels == 2 else x


def assert_one_line_error(r, pattern):
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert pattern in lines[0], lines[0]


def test_missing_file(tmp_path):
    assert_one_line_error(ttt_tui(tmp_path / "nope.wav", "--headless"), "no such file")


def test_non_audio_file(tmp_path):
    p = tmp_path / "model.wav"
    p.write_bytes(os.urandom(5000))
    assert_one_line_error(ttt_tui(p, "--headless"), "cannot read")


def test_empty_audio(tmp_path):
    p = tmp_path / "empty.wav"
    sf.write(str(p), np.zeros(0, np.float32), 16000)
    assert_one_line_error(ttt_tui(p, "--headless"), "no audio samples")
    z = tmp_path / "zero.wav"
    z.write_bytes(b"")
    assert_one_line_error(ttt_tui(z, "--headless"), "is empty (0 bytes)")


def test_shorter_than_one_mini_batch(tmp_path):
    p = tmp_path / "short.wav"
    sf.write(str(p), speech_like(16000, 0.2), 16000)
    assert_one_line_error(ttt_tui(p, "--headless"), "shorter than one mini-batch")


def test_bad_usage():
    assert_one_line_error(ttt_tui("--headless"), "no input")
    assert_one_line_error(ttt_tui(SAMPLE, "--lr-scale", "abc"), "invalid float value")


@pytest.mark.parametrize(
    "rate,channels,fmt", [(8000, 1, "WAV"), (48000, 2, "WAV"), (44100, 2, "MP3"), (22050, 1, "OGG")]
)
def test_formats_and_rates(tmp_path, rate, channels, fmt):
    p = tmp_path / f"in.{fmt.lower()}"
    sf.write(str(p), speech_like(rate, 6.0, channels), rate, format=fmt)
    out = tmp_path / "rep"
    r = ttt_tui(p, "--headless", "--out", out, "--no-plots")
    assert r.returncode == 0, r.stderr
    doc = json.loads((out / "report.json").read_text())
    assert doc["run"]["interrupted"] is False
    assert abs(doc["run"]["duration_s"] - 6.0) < 0.1
    for layer in doc["layers"].values():
        assert 290 <= layer["n_positions"] <= 300  # 50 frames per second
        assert layer["verdict"] in ("HEALTHY", "NOT_ADAPTING", "NOT_LEARNING", "DEGENERATIVE", "EXPLODING")


def test_report_files_and_consistency(tmp_path):
    out = tmp_path / "rep"
    r = ttt_tui(SAMPLE, "--headless", "--out", out)
    assert r.returncode == 0, r.stderr
    assert "report written to" in r.stderr
    assert r.stdout == f"{out}\n"  # for scripts: the report folder, and nothing else, on stdout
    progress = [x for x in r.stderr.splitlines() if x.startswith("[")]
    assert len(progress) == len(set(progress))  # an unchanged progress line is not repeated
    names = {p.name for p in out.iterdir()}
    assert {
        "ttt_diagnostic_report.txt",
        "report.json",
        "losses.csv",
        "figure5_layer0.png",
        "figure5_layer1.png",
        "figure5_layer2.png",
    } <= names
    doc = json.loads((out / "report.json").read_text())
    run = doc["run"]
    for key in (
        "input",
        "duration_s",
        "sample_rate",
        "model",
        "checkpoint",
        "device",
        "versions",
        "wall_s",
        "realtime_factor",
        "interrupted",
    ):
        assert key in run
    csv = np.loadtxt(out / "losses.csv", delimiter=",", skiprows=1)
    for layer_id, layer in doc["layers"].items():
        rows = csv[csv[:, 0] == int(layer_id)]
        assert len(rows) == layer["n_positions"] == 1235
        assert np.array_equal(rows[:, 1], np.arange(len(rows)))
        np.testing.assert_allclose(rows[:, 2], rows[:, 1] / 50.0, atol=1e-4)
        l0, lprev, lafter = rows[:, 3], rows[:, 4], rows[:, 5]
        assert layer["l0"]["mean"] == pytest.approx(l0.mean(), rel=1e-5)
        assert layer["lafter"]["max"] == pytest.approx(lafter.max(), rel=1e-5)
        viol = np.sum(~((l0 >= lprev) & (lprev >= lafter)))
        assert abs(layer["violation_rate"] - 100 * viol / len(rows)) < 0.2  # CSV rounds to 7 digits
    text = (out / "ttt_diagnostic_report.txt").read_text()
    assert "LAYER 0 ANALYSIS" in text and "Valid positions: 1235" in text and "Ordering violations:" in text


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_signal_mid_run_still_writes_the_report(tmp_path, sig, code):
    p = tmp_path / "long.flac"
    sf.write(str(p), speech_like(16000, 600.0), 16000)
    out = tmp_path / "rep"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ttt_tui.cli", str(p), "--headless", "--out", str(out), "--block-seconds", "0.5"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    # wait until it reports progress (data is flowing), then interrupt
    deadline = time.time() + 60
    line = ""
    while time.time() < deadline and "real time" not in line:
        line = proc.stderr.readline()
    proc.send_signal(sig)
    rest = proc.communicate(timeout=60)[1]
    assert proc.returncode == code, rest
    doc = json.loads((out / "report.json").read_text())
    assert doc["run"]["interrupted"] is True
    assert doc["run"]["stop_reason"] == sig.name
    assert 0 < doc["run"]["duration_s"] < 600
    assert all(layer["n_positions"] > 0 for layer in doc["layers"].values())
    assert "RUN INTERRUPTED" in (out / "ttt_diagnostic_report.txt").read_text()


def test_model_exception_writes_report_and_exits_1(tmp_path, monkeypatch, capsys):
    """An exception in the model mid-run: one line on stderr, the report of what was seen, exit code 1."""
    from ttt_tui.backends.embedded.backend import EmbeddedBackend
    from ttt_tui.cli import build_parser
    from ttt_tui.run.session import Session, run_headless

    calls = {"n": 0}
    real = EmbeddedBackend.process

    def failing(self, samples):
        calls["n"] += 1
        if calls["n"] == 6:
            raise RuntimeError("CUDA error: device-side assert triggered")
        return real(self, samples)

    monkeypatch.setattr(EmbeddedBackend, "process", failing)
    args = build_parser().parse_args(
        [str(SAMPLE), "--headless", "--out", str(tmp_path / "rep"), "--no-plots", "--torch-device", "cpu"]
    )
    code = run_headless(Session(args), progress_every=0.2)
    assert code == 1
    err = capsys.readouterr().err
    assert "model error: RuntimeError: CUDA error: device-side assert triggered" in err and "Traceback" not in err
    doc = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert doc["run"]["interrupted"] is True and "device-side assert" in doc["run"]["error"]
    assert doc["layers"]["0"]["n_positions"] == 249  # five 1 s blocks: 49 + 4 x 50 frames
    assert "MODEL ERROR" in (tmp_path / "rep" / "ttt_diagnostic_report.txt").read_text()


def test_unwritable_out_dir_fails_before_the_run(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    r = ttt_tui(SAMPLE, "--headless", "--out", blocker / "rep")
    assert_one_line_error(r, "cannot write the report to")
