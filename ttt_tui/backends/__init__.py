"""Model backends: turn mono audio at the model's rate into per-layer (l0, lprev, lafter) blocks.

``BACKENDS`` names each one and where it lives; a backend's module is imported only when a run uses it, so
that the readers of a run (report, open, compare), which import ``base`` at most, never import torch."""

from __future__ import annotations

from importlib import import_module

from .base import Backend

BACKENDS = {  # name -> (module, class): a new backend is its module plus one line here
    "embedded": ("ttt_tui.backends.embedded", "EmbeddedBackend"),
    "moshi-ttt": ("ttt_tui.backends.moshi_ttt", "MoshiBackend"),
}


def backend_class(name: str) -> type[Backend]:
    module, cls = BACKENDS[name]
    return getattr(import_module(module), cls)


def __getattr__(name: str):  # ``from ttt_tui.backends import EmbeddedBackend``, imported on first use
    for module, cls in BACKENDS.values():
        if cls == name:
            return getattr(import_module(module), cls)
    raise AttributeError(name)


__all__ = ["BACKENDS", "Backend", "backend_class"]
