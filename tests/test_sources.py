"""Audio files: any rate and channel count, block by block; bad input is an InputError (one line, exit 2)."""

import numpy as np
import pytest
import soundfile as sf

from ttt_tui.errors import InputError
from ttt_tui.sources import FileSource


def tone(rate, seconds, channels=1, freq=440.0):
    t = np.arange(int(rate * seconds)) / rate
    x = 0.3 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.stack([x] * channels, 1) if channels > 1 else x


@pytest.mark.parametrize(
    "rate,channels,fmt", [(8000, 1, "WAV"), (48000, 2, "WAV"), (44100, 2, "FLAC"), (22050, 1, "OGG"), (44100, 1, "MP3")]
)
def test_reads_resamples_and_downmixes(tmp_path, rate, channels, fmt):
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(str(path), tone(rate, 3.0, channels), rate, format=fmt)
    src = FileSource(path, 16000, block_seconds=0.5)
    blocks = list(src.blocks())
    assert len(blocks) >= 6 and all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
    y = np.concatenate(blocks)
    assert abs(len(y) - 48000) < 1200  # 3 s at 16 kHz (MP3 adds encoder padding)
    # the tone survives: dominant frequency 440 Hz at the new rate
    spec = np.abs(np.fft.rfft(y[4000:36000]))
    assert abs(np.argmax(spec) * 16000 / 32000 - 440) < 3


def test_streaming_resampler_equals_one_shot(tmp_path):
    import soxr

    x = np.random.default_rng(0).normal(size=44100 * 2).astype(np.float32) * 0.1
    sf.write(str(tmp_path / "n.wav"), x, 44100, subtype="FLOAT")
    y = np.concatenate(list(FileSource(tmp_path / "n.wav", 16000, block_seconds=0.1).blocks()))
    ref = soxr.resample(x, 44100, 16000, quality="HQ")
    assert len(y) == len(ref)
    np.testing.assert_allclose(y, ref, atol=1e-5)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        FileSource(tmp_path / "nope.wav", 16000)


def test_not_audio(tmp_path):
    p = tmp_path / "notes.wav"
    p.write_text("this is not audio\n" * 100)
    with pytest.raises(InputError, match="cannot read .* as audio"):
        FileSource(p, 16000)


def test_empty_audio(tmp_path):
    p = tmp_path / "empty.wav"
    sf.write(str(p), np.zeros(0, np.float32), 16000)
    with pytest.raises(InputError, match="no audio samples"):
        FileSource(p, 16000)


def test_truncated_file_reads_what_is_there(tmp_path):
    p = tmp_path / "t.wav"
    sf.write(str(p), tone(16000, 2.0), 16000)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    y = np.concatenate(list(FileSource(p, 16000).blocks()))
    assert 0 < len(y) <= 16000
