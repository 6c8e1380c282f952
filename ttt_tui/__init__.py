"""ttt-tui: live Figure-5 diagnostics (l0 / lprev / lafter) for Test-Time-Training layers.

From Python: ``ttt_tui.Recorder`` records the three losses from your own loop into a run log that every
ttt-tui reader reads (``docs/python-api.md``). ``import ttt_tui`` imports nothing heavy: the recorder is loaded
on first use."""

__version__ = "0.1.0"
__all__ = ["Recorder", "inner_losses", "__version__"]


def __getattr__(name: str):
    if name in ("Recorder", "inner_losses"):
        from . import recorder

        return getattr(recorder, name)
    raise AttributeError(f"module 'ttt_tui' has no attribute {name!r}")
