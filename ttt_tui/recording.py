"""What every TTT layer records, and how it reaches the host: one recorder for all of them.

A layer adds, per inner step, its three losses (and any per-token signals) as tensors on the device where
they were computed; nothing here synchronises with the device. ``take`` joins what was added since the last
call, still on the device; ``host_copy`` then brings a block to the host in one copy (``Backend.take_losses``,
once per block of audio), so that the cost of a host synchronisation is paid per block, not per step.
"""

from __future__ import annotations

import numpy as np
import torch


class StepRecorder:
    """Per-step tensors of named series (``losses``, ``signals``), joined along ``dim`` (the position axis)."""

    def __init__(self, dim: int = 0):
        self.dim = dim
        self._parts: dict[str, list[torch.Tensor]] = {}

    def add(self, **series: torch.Tensor) -> None:
        for name, t in series.items():
            self._parts.setdefault(name, []).append(t.detach())

    def take(self, *names: str) -> tuple[torch.Tensor | None, ...]:
        """Per name, what was added since the last call, joined (None where nothing was); then empty."""
        out = []
        for name in names:
            parts = self._parts.pop(name, None)
            out.append(None if not parts else parts[0] if len(parts) == 1 else torch.cat(parts, self.dim))
        return tuple(out)

    def clear(self) -> None:
        self._parts = {}


def host_copy(*blocks: torch.Tensor) -> list[np.ndarray]:
    """Blocks [n, k_i] with the same n, as float32 numpy arrays, in one device-to-host copy."""
    if len(blocks) == 1:
        return [blocks[0].float().cpu().numpy()]
    both = torch.cat([b.float() for b in blocks], 1).cpu().numpy()
    cuts = np.cumsum([b.shape[1] for b in blocks])[:-1]
    return np.split(both, cuts, axis=1)
