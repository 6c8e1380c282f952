"""The backend of the embedded default model (``assets/``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...recording import host_copy
from ..base import Backend
from .default_model import ASSETS, load_default_model


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class EmbeddedBackend(Backend):
    """Options: ``lr_scale`` scales the inner step size (0: the three lines overlap; negative: a sign bug,
    degenerative; 1e14: float32 overflow, exploding), ``mini_batch_size`` overrides the trained 16, ``device``
    defaults to CUDA if present."""

    def __init__(
        self,
        lr_scale: float = 1.0,
        mini_batch_size: int | None = None,
        device: str | None = None,
        assets: Path = ASSETS,
        record_losses: bool = True,
    ):
        self.device = device or default_device()
        self.model = load_default_model(assets, self.device)
        cfg = self.model.cfg
        for layer in self.model.ttt_layers:
            layer.lr_scale = lr_scale
            layer.record_losses = record_losses
            if mini_batch_size:
                layer.mini_batch_size = int(mini_batch_size)
        self.lr_scale = lr_scale
        self.mini_batch_size = self.model.ttt_layers[0].mini_batch_size
        if self.device == "cpu":
            self._one_thread()  # here, in the thread that builds the backend (see prepare_thread)
        self.name = "embedded default (3 TTT-MLP layers, log-mel, 16 kHz)"
        self.sample_rate = cfg.sample_rate
        self.frame_rate = cfg.frame_rate
        self.reset()

    @property
    def layer_ids(self) -> list[int]:
        return list(range(len(self.model.ttt_layers)))

    @property
    def min_audio_s(self) -> float:
        cfg = self.model.cfg  # the first frame needs n_fft samples, each further one hop more
        return (cfg.n_fft + (self.mini_batch_size - 1) * cfg.hop) / self.sample_rate

    def reset(self) -> None:
        self.model.reset_stream()

    def prepare_thread(self) -> None:
        """One intra-op thread on CPU: this model is bound by per-op dispatch, and a second OpenMP team in a
        worker thread competes with the main thread's for the cores (measured on 2 cores, 60 s of audio:
        0.40 s with one thread, 1.57 s with two; bench/RESULTS.md). Set once, from the thread that builds
        the backend: changing the pool from the worker thread made the process abort at exit now and then
        ("terminate called without an active exception", 1 run in 12)."""
        if self.device == "cpu":
            self._one_thread()

    @staticmethod
    def _one_thread() -> None:
        if torch.get_num_threads() != 1:
            torch.set_num_threads(1)

    def process(self, samples: np.ndarray) -> int:
        return self.model.stream_step(torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32)))

    def take_losses(self) -> dict[int, np.ndarray]:
        out = {}
        for i, layer in enumerate(self.model.ttt_layers):
            block = layer.take_losses()
            if block is not None:
                (out[i],) = host_copy(block[0])  # the one host copy per block
        return out

    def describe(self) -> dict:
        return {
            **super().describe(),
            "lr_scale": self.lr_scale,
            "mini_batch_size": self.mini_batch_size,
            "frame_rate": self.frame_rate,
        }
