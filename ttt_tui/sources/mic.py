"""The microphone, through sounddevice (imported only here, only when used).

The PortAudio callback must never wait: it puts blocks into a bounded queue and counts the blocks it had to
drop when the model falls behind. The device's own rate is resampled to the model's with soxr's stream.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import numpy as np
import soxr

from ..errors import InputError

PORTAUDIO_HINT = (
    "the microphone needs the PortAudio library: install it (Debian/Ubuntu: "
    "apt-get install libportaudio2; macOS: brew install portaudio) or give an audio file"
)


def import_sounddevice():
    try:
        import sounddevice
    except OSError:  # "PortAudio library not found"
        raise InputError(PORTAUDIO_HINT) from None
    except ImportError:
        raise InputError("the microphone needs the sounddevice package: pip install sounddevice") from None
    return sounddevice


def list_devices() -> str:
    sd = import_sounddevice()
    rows = []
    for i, d in enumerate(sd.query_devices()):
        if d["max_input_channels"] > 0:
            rows.append(f"{i:3d}  {d['name']}  ({d['max_input_channels']} ch, {d['default_samplerate']:.0f} Hz)")
    return "\n".join(rows) if rows else "no audio input device found"


def _device_arg(device):
    if device is None:
        return None
    return int(device) if str(device).isdigit() else device


class MicSource:
    """Mono float32 blocks at ``target_rate`` from an input device; ``duration_s`` stops it (None: until
    stopped). ``dropped_blocks`` counts the blocks lost to a full queue; ``level_db`` is the last block's RMS."""

    def __init__(
        self,
        target_rate: int,
        device=None,
        duration_s: float | None = None,
        block_seconds: float = 0.5,
        queue_blocks: int = 64,
        stream_factory=None,
    ):
        self.target_rate = int(target_rate)
        self.device = _device_arg(device)
        self.duration_s = duration_s
        self.block_seconds = block_seconds
        self.dropped_blocks = 0
        self.level_db = -120.0
        self.peak_level_db = -120.0  # the loudest block: says in the report whether the microphone heard anything
        self._queue: queue.Queue = queue.Queue(maxsize=queue_blocks)
        self._closed = threading.Event()
        self._factory = stream_factory
        sd = None if stream_factory else import_sounddevice()
        try:
            if sd is not None:
                info = sd.query_devices(self.device, "input")
                self.device_name = info["name"]
                self.device_rate = int(info["default_samplerate"])
            else:
                self.device_name, self.device_rate = "injected", self.target_rate
        except ValueError as e:  # unknown name or index
            raise InputError(f"no such input device: {device} ({e}); see ttt-tui --list-devices") from None
        except Exception as e:  # PortAudioError: no default input device
            raise InputError(
                f"no audio input device ({e}); plug one in, pick one with --device (see "
                "--list-devices) or give an audio file"
            ) from None
        self._sd = sd

    def describe(self) -> dict:
        return {
            "input": "microphone",
            "mic_device": self.device_name,
            "mic_sample_rate": self.device_rate,
            "mic_peak_level_db": round(self.peak_level_db, 1),
        }

    def _callback(self, indata, frames, time_info, status) -> None:
        try:
            self._queue.put_nowait(indata[:, 0].copy())
        except queue.Full:
            self.dropped_blocks += 1

    def close(self) -> None:
        self._closed.set()

    def _open(self):
        blocksize = max(1, int(self.device_rate * self.block_seconds))
        if self._factory is not None:
            return self._factory(self._callback, blocksize)
        try:
            return self._sd.InputStream(
                samplerate=self.device_rate,
                channels=1,
                dtype="float32",
                device=self.device,
                blocksize=blocksize,
                callback=self._callback,
            )
        except Exception as e:
            raise InputError(f"cannot open the input device {self.device_name!r}: {e}") from None

    def blocks(self) -> Iterator[np.ndarray]:
        rs = None
        if self.device_rate != self.target_rate:
            rs = soxr.ResampleStream(self.device_rate, self.target_rate, 1, dtype="float32", quality="HQ")
        got = 0
        limit = None if self.duration_s is None else int(self.duration_s * self.device_rate)
        stream = self._open()
        with stream:
            while not self._closed.is_set() and (limit is None or got < limit):
                try:
                    x = self._queue.get(timeout=0.2)
                except queue.Empty:
                    continue
                if limit is not None:
                    x = x[: limit - got]
                got += len(x)
                self.level_db = float(20 * np.log10(np.sqrt(np.mean(x.astype(np.float64) ** 2)) + 1e-9))
                self.peak_level_db = max(self.peak_level_db, self.level_db)
                last = limit is not None and got >= limit
                y = rs.resample_chunk(x, last=last) if rs is not None else x
                if y.size:
                    yield np.ascontiguousarray(y, dtype=np.float32)
