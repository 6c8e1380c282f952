"""What every model backend offers the engine."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Backend(ABC):
    """A streaming model whose TTT layers record the three Figure-5 losses.

    ``process`` may keep losses on the device; ``take_losses`` copies them to the host in one block per layer,
    so the cost of a host synchronisation is paid per block of audio, not per mini-batch.
    """

    name: str
    sample_rate: int
    frame_rate: float
    device: str

    @property
    @abstractmethod
    def layer_ids(self) -> list[int]: ...

    @abstractmethod
    def reset(self) -> None:
        """Start a new stream: stream-start weights, position 0."""

    @abstractmethod
    def process(self, samples: np.ndarray) -> int:
        """Feed mono float32 samples at ``sample_rate``; returns the number of new frames (tokens)."""

    @abstractmethod
    def take_losses(self) -> dict[int, np.ndarray]:
        """Per layer, the losses recorded since the last call: float32 [n, 3] = (l0, lprev, lafter)."""

    @property
    @abstractmethod
    def min_audio_s(self) -> float:
        """The shortest audio that fills one mini-batch of the TTT layers (shorter input is refused)."""

    def prepare_thread(self) -> None:
        """Called by the engine in its own thread before the first block (thread-local settings)."""
        return None

    # Optional: what a backend knows beyond the three losses.
    signal_names: tuple[str, ...] = ()  # per-token inner-loop signals, columns of ``take_signals`` blocks
    # per signal, how screens and reports name it: {"short": on the dashboard's counters, "long": in the report}
    signal_labels: dict[str, dict[str, str]] = {}

    def take_signals(self) -> dict[int, np.ndarray]:
        """Per layer, the signals of the tokens of the last ``take_losses`` call: float32 [n, len(signal_names)]."""
        return {}

    outer_loss: bool = False  # the backend records the model's outer (next-token) loss per position

    def take_outer(self) -> np.ndarray | None:
        """The outer loss of the positions completed since the last call: float32 [n], position after position
        from 0 (it may lag the layers' positions: a position is complete when every codebook was scored)."""
        return None

    def notes(self) -> list[str]:
        """ttt-tui's own choices for this run that bear on the numbers (shown on screen and in the report)."""
        return []

    def audit(self) -> list[dict]:
        """The model audit: each departure between what the checkpoint holds, its training config and what the
        model's code does at run time, as {"key", "finding", "consequence"} (shown on screen and in the report)."""
        return []

    def write_outputs(self, out_dir) -> dict:
        """Files the model produced (e.g. generated audio) written into the report folder; name -> path."""
        return {}

    def describe(self) -> dict:
        return {"model": self.name, "device": self.device, "sample_rate": self.sample_rate}
