"""--mic for real: PortAudio through ALSA's PulseAudio plugin, a private PulseAudio daemon whose default source
is the monitor of a null sink, and speech played into that sink (as a demo machine or a remote desktop would
route it). Skipped only where no PulseAudio daemon can start (.ci/run installs pulseaudio, pulseaudio-utils,
libportaudio2 and libasound2-plugins)."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_tui import tmux_screen

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "assets" / "sample.wav"


@pytest.fixture(scope="module")
def pulse(tmp_path_factory):
    if not (shutil.which("pulseaudio") and shutil.which("pactl") and shutil.which("paplay")):
        pytest.skip("no PulseAudio here (apt-get install pulseaudio pulseaudio-utils libasound2-plugins)")
    rt = tmp_path_factory.mktemp("pulse-runtime")
    rt.chmod(0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(rt), "PULSE_RUNTIME_PATH": str(rt / "pulse")}
    start = [
        "pulseaudio",
        "-D",
        "-n",
        "--exit-idle-time=-1",
        "--load=module-native-protocol-unix",
        "--load=module-null-sink sink_name=ttt_null",
    ]
    subprocess.run(start, env=env, capture_output=True, timeout=20)
    for _ in range(50):
        if subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode == 0:
            break
        time.sleep(0.1)
    else:
        pytest.skip("the PulseAudio daemon did not start here")
    subprocess.run(["pactl", "set-default-sink", "ttt_null"], env=env, check=True)
    subprocess.run(["pactl", "set-default-source", "ttt_null.monitor"], env=env, check=True)
    yield env
    subprocess.run(["pulseaudio", "--kill"], env=env, capture_output=True)


def run_mic(env, out, seconds, play=None):
    player = None
    if play is not None:
        player = subprocess.Popen(["paplay", str(play)], env=env)
    try:
        r = subprocess.run(
            [sys.executable, "-m", "ttt_tui.cli", "--mic", "--duration", str(seconds), "--headless", "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**env, "PYTHONPATH": str(ROOT)},
        )
    finally:
        if player is not None:
            player.kill()
            player.wait()
    assert r.returncode == 0, r.stderr
    return json.loads((out / "report.json").read_text())


def test_the_microphone_hears_speech(pulse, tmp_path):
    speech = run_mic(pulse, tmp_path / "speech", 6, play=SAMPLE)
    silence = run_mic(pulse, tmp_path / "silence", 3)
    run = speech["run"]
    assert run["input"] == "microphone" and run["dropped_blocks"] == 0
    assert run["mic_peak_level_db"] > -40 > -80 > silence["run"]["mic_peak_level_db"]
    for layer in speech["layers"].values():
        assert 250 <= layer["n_positions"] <= 301  # 50 frames per second of audio
        assert layer["verdict"] == "HEALTHY"


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (installed by .ci/run)")
def test_dashboard_level_meter_and_dropped_blocks(pulse, tmp_path):
    name = f"ttt-mic-{os.getpid()}"
    env = " ".join(f"{k}={v}" for k, v in pulse.items() if k in ("XDG_RUNTIME_DIR", "PULSE_RUNTIME_PATH"))
    cmd = (
        f"cd {ROOT} && {env} PYTHONPATH={ROOT} {sys.executable} -m ttt_tui.cli --mic --duration 10 "
        f"--out {tmp_path / 'rep'} --exit-on-finish; echo EXIT=$? > {tmp_path / 'exit'}; sleep 30"
    )
    subprocess.run(["tmux", "new-session", "-d", "-x", "200", "-y", "60", "-s", name, cmd], check=True)
    player = subprocess.Popen(["paplay", str(SAMPLE)], env=pulse)
    try:
        loud, t0 = None, time.time()
        while time.time() - t0 < 30 and loud is None:
            time.sleep(0.3)
            screen = tmux_screen(name)
            for line in screen.splitlines():
                if "input level" in line and "dropped blocks 0" in line:
                    level = float(line.split("dBFS")[0].split()[-1])
                    if level > -40:  # the meter moves with the speech
                        loud = line
        assert loud is not None, screen
        t0 = time.time()
        while time.time() - t0 < 40 and not (tmp_path / "exit").exists():
            time.sleep(0.3)
        assert (tmp_path / "exit").read_text().strip() == "EXIT=0"
    finally:
        player.kill()
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)
    doc = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert doc["run"]["dropped_blocks"] == 0 and doc["run"]["mic_peak_level_db"] > -40
