"""Audio files read block by block: memory does not grow with the file's length."""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ..errors import InputError, MissingInput

SUPPORTED = "WAV, FLAC, OGG/Vorbis, Opus or MP3"


class FileSource:
    """Any sample rate, any channel count: downmixed to mono and resampled with soxr's streaming resampler
    (resampling blocks one by one would lose quality at block edges)."""

    def __init__(self, path: str | Path, target_rate: int, block_seconds: float = 1.0, realtime: bool = False):
        self.path = Path(path)
        self.realtime = realtime  # pace the blocks at the speed of the audio (demos, like a live stream)
        self.target_rate = int(target_rate)
        if not self.path.exists():
            raise MissingInput(f"no such file: {self.path}")
        if self.path.is_dir():
            raise InputError(f"{self.path} is a folder, not an audio file")
        mode = self.path.stat().st_mode
        if not stat.S_ISREG(mode):  # a FIFO, /dev/zero, /dev/urandom, a socket: no length, no header to trust
            kind = "a pipe (FIFO)" if stat.S_ISFIFO(mode) else "a device or special file"
            raise InputError(f"{self.path} is {kind}, not an audio file; save the audio to a file first")
        if not os.access(self.path, os.R_OK):
            raise InputError(f"cannot read {self.path}: permission denied")
        if self.path.stat().st_size == 0:
            raise InputError(f"{self.path} is empty (0 bytes); give a recording")
        self.nonfinite_samples = 0  # NaN/Inf in the file, replaced by 0 (counted, reported as an input finding)
        self.decoder_messages: list[str] = []  # what the C decoder wrote to stderr while opening (libmpg123)
        try:
            with _sf_target(self.path) as target, _stderr_to(self.decoder_messages):
                info = sf.info(target)
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
            "nonfinite_samples": self.nonfinite_samples,
            "decoder_messages": self.decoder_messages,
        }

    def blocks(self) -> Iterator[np.ndarray]:
        """Mono float32 blocks at ``target_rate``."""
        rs = None
        if self.file_rate != self.target_rate:
            rs = soxr.ResampleStream(self.file_rate, self.target_rate, 1, dtype="float32", quality="HQ")
        t0, sent = time.monotonic(), 0
        try:
            with _sf_target(self.path) as target, sf.SoundFile(target) as f:
                while True:
                    if self.realtime:
                        time.sleep(max(0.0, t0 + sent / self.file_rate - time.monotonic()))
                    x = f.read(self.block_in, dtype="float32", always_2d=True)
                    bad = ~np.isfinite(x)
                    if bad.any():  # one NaN would make every later position NaN and blame the model
                        self.nonfinite_samples += int(bad.sum())
                        x[bad] = 0.0
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


@contextlib.contextmanager
def _stderr_to(lines: list[str]):
    """File descriptor 2 into ``lines`` for the duration: libsndfile's MP3 decoder (libmpg123) writes warnings
    there while it scans a file, which would break the one-line messages and the progress line. Used while
    opening, in the one thread that runs then; the messages are kept for the report."""
    import tempfile

    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines += [x for x in tmp.read().decode("utf-8", "replace").splitlines() if x.strip()][:20]


@contextlib.contextmanager
def _sf_target(path: Path):
    """What soundfile opens: the path, or for a name that is not valid UTF-8 (soundfile encodes names as UTF-8;
    Linux allows any bytes), the open file."""
    name = str(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        with open(path, "rb") as f:
            yield f
        return
    yield name


def _short(e: Exception) -> str:
    return str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
