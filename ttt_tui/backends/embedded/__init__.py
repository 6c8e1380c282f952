"""The embedded default model (``assets/``): a log-mel frontend (``features``), three TTT-MLP layers
(``default_model``, on ``ttt.py``'s inner loop), and its backend (``backend``)."""

from .backend import EmbeddedBackend

__all__ = ["EmbeddedBackend"]
