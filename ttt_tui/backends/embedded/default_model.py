"""The embedded default model: a small causal TTT-MLP audio model on log-mel frames.

It predicts the next few log-mel frames from the past (a self-supervised outer task, like a language
model's next token), with TTT-MLP layers as its only sequence mixers, so that the inner loop has to learn
the speaker and the recording while the audio streams. Weights and config live in ``assets/``; they are
trained by ``scripts/train_default_model.py``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from ...ttt import TTTLayer
from .features import LogMel, LogMelStream

ASSETS = Path(str(resources.files("ttt_tui") / "assets"))  # shipped in the wheel (package data)
CONFIG_FILE = "default_model.json"
WEIGHTS_FILE = "default_model.safetensors"


@dataclass
class DefaultModelConfig:
    sample_rate: int = 16000
    n_fft: int = 512
    hop: int = 320  # 50 frames/s: a mini-batch of 16 frames is 0.32 s of audio
    n_mels: int = 80
    dim: int = 128
    num_heads: int = 4
    num_layers: int = 3
    expansion: int = 4
    mini_batch_size: int = 16
    base_lr: float = 1.0
    predict_frames: int = 4  # frames t+1 .. t+k predicted from frames <= t
    qk_l2norm: bool = False  # XQ, XK L2-normalised per head (as video-dit / Moshi-TTT)
    feat_mean: list = field(default_factory=list)  # per mel bin, from the training corpus
    feat_std: list = field(default_factory=list)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop


class Block(nn.Module):
    def __init__(self, cfg: DefaultModelConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim)
        self.ttt = TTTLayer(
            cfg.dim, cfg.num_heads, "mlp", cfg.mini_batch_size, cfg.base_lr, cfg.expansion, qk_l2norm=cfg.qk_l2norm
        )
        self.norm2 = nn.LayerNorm(cfg.dim)
        self.mlp = nn.Sequential(nn.Linear(cfg.dim, 4 * cfg.dim), nn.GELU(), nn.Linear(4 * cfg.dim, cfg.dim))

    def forward(self, x):
        x = x + self.ttt(self.norm1(x))
        return x + self.mlp(self.norm2(x))

    def stream_step(self, x):
        x = x + self.ttt.stream_step(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class DefaultAudioModel(nn.Module):
    def __init__(self, cfg: DefaultModelConfig):
        super().__init__()
        self.cfg = cfg
        self.logmel = LogMel(cfg.sample_rate, cfg.n_fft, cfg.hop, cfg.n_mels)
        mean = torch.tensor(cfg.feat_mean) if cfg.feat_mean else torch.zeros(cfg.n_mels)
        std = torch.tensor(cfg.feat_std) if cfg.feat_std else torch.ones(cfg.n_mels)
        self.register_buffer("feat_mean", mean.float(), persistent=False)
        self.register_buffer("feat_std", std.float(), persistent=False)
        self.in_proj = nn.Linear(cfg.n_mels, cfg.dim)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.out_norm = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, cfg.n_mels * cfg.predict_frames)
        self._stream = LogMelStream(self.logmel)

    @property
    def ttt_layers(self) -> list[TTTLayer]:
        return [b.ttt for b in self.blocks]

    def normalize(self, feats):
        return (feats - self.feat_mean) / self.feat_std

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Normalised features [B, T, n_mels] -> predictions of frames t+1..t+k, [B, T, k, n_mels]."""
        x = self.in_proj(feats)
        for block in self.blocks:
            x = block(x)
        B, T, _ = x.shape
        return self.head(self.out_norm(x)).view(B, T, self.cfg.predict_frames, self.cfg.n_mels)

    # -- streaming --------------------------------------------------------------------------------------
    def reset_stream(self) -> None:
        self._stream.reset()
        for layer in self.ttt_layers:
            layer.reset_stream()

    @torch.no_grad()
    def stream_step(self, samples: torch.Tensor) -> int:
        """Feed mono samples at the model rate; returns how many frames they completed."""
        feats = self._stream(samples.to(self.feat_mean.device, torch.float32))
        n = feats.shape[0]
        if n:
            x = self.in_proj(self.normalize(feats)[None])
            for block in self.blocks:
                x = block.stream_step(x)
            self.head(self.out_norm(x))
        return n


def load_default_model(assets: Path = ASSETS, device: str | torch.device = "cpu") -> DefaultAudioModel:
    """The trained default model from ``assets/`` (config JSON + safetensors weights)."""
    from safetensors.torch import load_file

    cfg = DefaultModelConfig(**json.loads((assets / CONFIG_FILE).read_text())["model"])
    model = DefaultAudioModel(cfg)
    model.load_state_dict(load_file(str(assets / WEIGHTS_FILE)), strict=True)
    return model.to(device).eval()


def save_default_model(model: DefaultAudioModel, assets: Path, extra: dict | None = None) -> None:
    from safetensors.torch import save_file

    assets.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(assets / WEIGHTS_FILE))
    (assets / CONFIG_FILE).write_text(json.dumps({"model": asdict(model.cfg), **(extra or {})}, indent=1) + "\n")
