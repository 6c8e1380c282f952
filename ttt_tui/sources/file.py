"""Audio files read block by block: memory does not grow with the file's length."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ..errors import InputError

SUPPORTED = "WAV, FLAC, OGG/Vorbis, Opus or MP3"


class FileSource:
    """Any sample rate, any channel count: downmixed to mono and resampled with soxr's streaming resampler
    (resampling blocks one by one would lose quality at block edges)."""

    def __init__(self, path: str | Path, target_rate: int, block_seconds: float = 1.0, realtime: bool = False):
        self.path = Path(path)
        self.realtime = realtime  # pace the blocks at the speed of the audio (demos, like a live stream)
        self.target_rate = int(target_rate)
        if not self.path.exists():
            raise InputError(f"no such file: {self.path} (give the path of an audio file, or --mic)")
        if self.path.is_dir():
            raise InputError(f"{self.path} is a folder, not an audio file")
        if self.path.stat().st_size == 0:
            raise InputError(f"{self.path} is empty (0 bytes); give a recording")
        try:
            info = sf.info(str(self.path))
        except Exception as e:  # soundfile raises LibsndfileError (a RuntimeError) on non-audio files
            raise InputError(f"cannot read {self.path} as audio ({_short(e)}); use a {SUPPORTED} file") from None
        if info.frames <= 0:
            raise InputError(f"{self.path} contains no audio samples")
        self.file_rate = int(info.samplerate)
        self.channels = int(info.channels)
        self.n_frames_in = int(info.frames)
        self.duration_s = info.frames / info.samplerate
        self.block_in = max(1, int(round(block_seconds * self.file_rate)))

    def describe(self) -> dict:
        return {
            "input": str(self.path),
            "file_sample_rate": self.file_rate,
            "channels": self.channels,
            "duration_s": self.duration_s,
        }

    def blocks(self) -> Iterator[np.ndarray]:
        """Mono float32 blocks at ``target_rate``."""
        rs = None
        if self.file_rate != self.target_rate:
            rs = soxr.ResampleStream(self.file_rate, self.target_rate, 1, dtype="float32", quality="HQ")
        t0, sent = time.monotonic(), 0
        try:
            with sf.SoundFile(str(self.path)) as f:
                while True:
                    if self.realtime:
                        time.sleep(max(0.0, t0 + sent / self.file_rate - time.monotonic()))
                    x = f.read(self.block_in, dtype="float32", always_2d=True)
                    sent += x.shape[0]
                    last = x.shape[0] < self.block_in
                    mono = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
                    if rs is not None:
                        mono = rs.resample_chunk(np.ascontiguousarray(mono), last=last)
                    if mono.size:
                        yield np.ascontiguousarray(mono, dtype=np.float32)
                    if last:
                        return
        except sf.LibsndfileError as e:
            raise InputError(f"{self.path} is damaged or truncated ({_short(e)})") from None


def _short(e: Exception) -> str:
    return str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
