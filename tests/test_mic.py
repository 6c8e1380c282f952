"""The microphone source with an injected stream (no audio hardware in CI), and its error messages."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ttt_tui.errors import InputError
from ttt_tui.sources import mic

ROOT = Path(__file__).resolve().parents[1]


class FakeStream:
    """Calls the callback from its own thread with blocks of a 440 Hz tone, like PortAudio does."""

    def __init__(self, callback, blocksize, rate, n_blocks, delay=0.0):
        self.callback, self.blocksize, self.rate, self.n_blocks, self.delay = callback, blocksize, rate, n_blocks, delay
        self._thread = None

    def _run(self):
        t = 0
        for _ in range(self.n_blocks):
            x = 0.1 * np.sin(2 * np.pi * 440 * (t + np.arange(self.blocksize)) / self.rate).astype(np.float32)
            t += self.blocksize
            self.callback(x[:, None], self.blocksize, None, None)
            if self.delay:
                time.sleep(self.delay)

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._thread.join(5)


def make_source(n_blocks, duration, queue_blocks=64, delay=0.0, device_rate=48000):
    src = mic.MicSource(
        16000,
        duration_s=duration,
        block_seconds=0.1,
        queue_blocks=queue_blocks,
        stream_factory=lambda cb, bs: FakeStream(cb, bs, device_rate, n_blocks, delay),
    )
    src.device_rate = device_rate  # an injected 48 kHz device
    return src


def test_blocks_resampled_to_the_model_rate_and_duration_respected():
    src = make_source(n_blocks=40, duration=2.0, delay=0.001)
    y = np.concatenate(list(src.blocks()))
    assert abs(len(y) - 32000) < 200  # 2 s at 16 kHz
    spec = np.abs(np.fft.rfft(y[2000:18000]))
    assert abs(np.argmax(spec) * 16000 / 16000 - 440) < 2
    assert src.dropped_blocks == 0
    assert -25 < src.level_db < -15  # a 0.1-amplitude sine: -23 dBFS


def test_full_queue_counts_dropped_blocks():
    src = make_source(n_blocks=50, duration=None, queue_blocks=4)
    gen = src.blocks()
    next(gen)  # opens the stream; the fake device then delivers 50 blocks at once
    time.sleep(0.5)
    assert src.dropped_blocks > 0
    src.close()
    list(gen)


def test_close_ends_the_stream():
    src = make_source(n_blocks=10, duration=None, delay=0.01)
    got = []

    def consume():
        for b in src.blocks():
            got.append(b)

    t = threading.Thread(target=consume)
    t.start()
    time.sleep(0.3)
    src.close()
    t.join(3)
    assert not t.is_alive() and got


def test_missing_portaudio_is_one_clear_line():
    """Without the PortAudio library (hidden here from sounddevice's lookup, whether or not the machine has it):
    --mic and --list-devices say how to install it."""
    hide = (
        "import ctypes.util as u, runpy, sys\n"
        "find = u.find_library\n"
        "u.find_library = lambda name: None if 'portaudio' in name else find(name)\n"
        "sys.argv = ['ttt-tui'] + sys.argv[1:]\n"
        "runpy.run_module('ttt_tui.cli', run_name='__main__')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for args in (["--mic", "--headless"], ["--list-devices"]):
        r = subprocess.run([sys.executable, "-c", hide, *args], capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "apt-get install libportaudio2" in lines[0], r.stderr


def test_unknown_device_and_no_device(monkeypatch):
    class FakeSd:
        def query_devices(self, device=None, kind=None):
            if device == "nope":
                raise ValueError("No input device matching 'nope'")
            raise RuntimeError("Error querying device -1")

    monkeypatch.setattr(mic, "import_sounddevice", lambda: FakeSd())
    with pytest.raises(InputError, match="no such input device: nope"):
        mic.MicSource(16000, device="nope")
    with pytest.raises(InputError, match="no audio input device"):
        mic.MicSource(16000)


def test_dashboard_shows_level_and_dropped_blocks(tmp_path, monkeypatch):
    import asyncio

    from ttt_tui.cli import build_parser
    from ttt_tui.run import session as session_mod
    from ttt_tui.tui.app import DashboardApp

    monkeypatch.setattr(
        session_mod, "make_source", lambda args, backend: make_source(n_blocks=200, duration=3.0, delay=0.002)
    )
    args = build_parser().parse_args(
        ["--mic", "--duration", "3", "--out", str(tmp_path / "rep"), "--torch-device", "cpu"]
    )
    sess = session_mod.Session(args)

    async def scenario():
        app = DashboardApp(sess, install_signals=False)
        async with app.run_test(size=(200, 60)) as pilot:
            t0 = time.time()
            while not app.finished_handled and time.time() - t0 < 30:
                await pilot.pause(0.2)
            await pilot.pause(0.5)
            return str(app.query_one("#mic").render()), str(app.query_one("#header").render())

    meter, header = asyncio.run(scenario())
    assert "input level" in meter and "dBFS" in meter
    assert f"dropped blocks {sess.source.dropped_blocks}" in meter
    assert "microphone" in header
    assert (tmp_path / "rep" / "report.json").exists()
