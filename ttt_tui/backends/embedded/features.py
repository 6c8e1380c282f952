"""Log-mel features with ``torch.stft`` and our own mel filter bank (there is no CPU torchaudio wheel).

``LogMelStream`` carries the samples a frame still needs between calls, so that features computed block by
block equal the features of the whole signal (frame k covers samples ``[k*hop, k*hop + n_fft)``).
"""

from __future__ import annotations

import math

import torch


def hz_to_mel(f):
    return 2595.0 * math.log10(1.0 + f / 700.0)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None):
    """Triangular filters on the HTK mel scale: [n_fft // 2 + 1, n_mels]."""
    fmax = sample_rate / 2 if fmax is None else fmax
    mels = torch.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2, dtype=torch.float64)
    hz = 700.0 * (10 ** (mels / 2595.0) - 1.0)
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    lower, center, upper = hz[:-2, None], hz[1:-1, None], hz[2:, None]
    up = (freqs[None] - lower) / (center - lower)
    down = (upper - freqs[None]) / (upper - center)
    return torch.clamp(torch.minimum(up, down), min=0.0).T.float()


class LogMel(torch.nn.Module):
    """Stateless log-mel: waveform [..., N] -> frames [..., n_frames, n_mels] (no centring, no padding)."""

    def __init__(self, sample_rate: int, n_fft: int, hop: int, n_mels: int):
        super().__init__()
        self.sample_rate, self.n_fft, self.hop, self.n_mels = sample_rate, n_fft, hop, n_mels
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.register_buffer("fbank", mel_filterbank(sample_rate, n_fft, n_mels), persistent=False)

    def n_frames(self, n_samples: int) -> int:
        return 0 if n_samples < self.n_fft else 1 + (n_samples - self.n_fft) // self.hop

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        lead = wave.shape[:-1]
        if self.n_frames(wave.shape[-1]) == 0:
            return wave.new_zeros(*lead, 0, self.n_mels)
        spec = torch.stft(
            wave.reshape(-1, wave.shape[-1]),
            self.n_fft,
            self.hop,
            window=self.window,
            center=False,
            return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()  # [batch, freq, frames]
        mel = torch.matmul(power.transpose(-1, -2), self.fbank)
        return torch.log(mel + 1e-6).reshape(*lead, -1, self.n_mels)


class LogMelStream:
    """Block-by-block log-mel of one stream, equal to the whole-signal features."""

    def __init__(self, logmel: LogMel):
        self.logmel = logmel
        self.reset()

    def reset(self) -> None:
        self._buf = None

    def __call__(self, samples: torch.Tensor) -> torch.Tensor:
        """samples [N] (model rate, mono) -> the frames they complete, [n, n_mels]."""
        buf = samples if self._buf is None else torch.cat([self._buf, samples])
        n = self.logmel.n_frames(buf.shape[0])
        feats = self.logmel(buf[: (n - 1) * self.logmel.hop + self.logmel.n_fft]) if n else buf.new_zeros(0, 0)
        self._buf = buf[n * self.logmel.hop :]
        return feats.reshape(n, self.logmel.n_mels)
