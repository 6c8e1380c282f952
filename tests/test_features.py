"""Log-mel features: against a numpy reference, and block-by-block = whole."""

import numpy as np
import torch

from ttt_tui.backends.embedded.features import LogMel, LogMelStream, mel_filterbank


def test_filterbank_shape_and_coverage():
    fb = mel_filterbank(16000, 512, 80)
    assert fb.shape == (257, 80)
    assert (fb >= 0).all() and (fb <= 1).all()
    assert (fb.sum(0) > 0).all(), "every filter covers some FFT bin"
    peaks = fb.argmax(0)
    assert (peaks[1:] >= peaks[:-1]).all(), "filters ordered by frequency"


def test_logmel_matches_numpy_reference():
    rng = np.random.default_rng(0)
    x = rng.normal(size=16000).astype(np.float32)
    lm = LogMel(16000, 512, 320, 80)
    got = lm(torch.from_numpy(x)).numpy()
    n = 1 + (len(x) - 512) // 320
    win = np.hanning(513)[:-1]  # periodic Hann
    frames = np.stack([x[k * 320 : k * 320 + 512] * win for k in range(n)])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    ref = np.log(power @ mel_filterbank(16000, 512, 80).double().numpy() + 1e-6)
    assert got.shape == (n, 80)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-3)


def test_stream_equals_whole():
    x = torch.randn(16000 * 2)
    lm = LogMel(16000, 512, 320, 80)
    whole = lm(x)
    st = LogMelStream(lm)
    parts, s = [], 0
    for n in [100, 511, 1, 320, 4000, 7, 10000, 16000, 1000000]:
        parts.append(st(x[s : s + n]))
        s += n
    torch.testing.assert_close(torch.cat(parts), whole, rtol=1e-5, atol=1e-4)
