"""Audio sources: mono float32 blocks at the model's sample rate."""

from .file import FileSource

__all__ = ["FileSource"]
