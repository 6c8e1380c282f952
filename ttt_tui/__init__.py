"""ttt-tui: live Figure-5 diagnostics (l0 / lprev / lafter) for Test-Time-Training layers."""

__version__ = "0.1.0"
