"""Model backends: turn mono audio at the model's rate into per-layer (l0, lprev, lafter) blocks."""

from .base import Backend
from .embedded import EmbeddedBackend

__all__ = ["Backend", "EmbeddedBackend"]
