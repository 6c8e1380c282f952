"""The loss store: every position of every layer (no cap), appended by the engine, read by the UI and the
report writers.

Per layer one float32 array [capacity, 3] grown by 1.25x (at most 15 bytes per token, 12 used). Rows below
``n`` are never written again, so a reader's view ``array[:n]`` stays valid after a later growth
reallocates: readers take a version and a view under the lock and then read without it.

Positions that a damaged run log lost (``append_missing``) are NaN rows that keep the later positions in place
(a plot shows a gap); ``valid`` marks them for every statistic, which counts them apart (``stats``).
"""

from __future__ import annotations

import threading

import numpy as np

from ..analysis.stats import LayerStats

GROWTH = 1.25


def _grow(data: np.ndarray, n: int, need: int) -> np.ndarray:
    if need <= data.shape[0]:
        return data
    grown = np.empty((max(need, int(data.shape[0] * GROWTH) + 1), data.shape[1]), dtype=data.dtype)
    grown[:n] = data[:n]
    return grown


def _appended(data: np.ndarray, n: int, block: np.ndarray) -> tuple[np.ndarray, int]:
    """``block``'s rows written after the first ``n`` of ``data`` (grown if needed): (the array, the new count)."""
    need = n + block.shape[0]
    data = _grow(data, n, need)
    data[n:need] = block
    return data, need


class _Layer:
    __slots__ = ("data", "n", "stats", "version", "signals", "n_signals", "valid", "missing")

    def __init__(self, capacity: int, n_signals: int):
        self.data = np.empty((capacity, 3), dtype=np.float32)
        self.n = 0
        self.stats = LayerStats()
        self.version = 0
        self.signals = np.empty((64, n_signals), dtype=np.float32)  # per-token inner-loop signals, if any
        self.n_signals = 0
        self.valid: np.ndarray | None = None  # bool per row, made at the first missing row
        self.missing: list[tuple[int, int]] = []  # (first position, count) of each run of missing rows


class LossStore:
    """``outer``: the run also records the model's outer loss per position (teacher-forced Moshi-TTT), one
    series for the whole model beside the layers' three losses."""

    def __init__(
        self,
        layer_ids,
        frame_rate: float,
        initial_capacity: int = 4096,
        signal_names=(),
        outer=False,
        position_unit: str = "audio frame",
    ):
        self.frame_rate = float(frame_rate)
        self.position_unit = position_unit  # what a position is (``analysis.units``)
        self.signal_names = tuple(signal_names)
        self._lock = threading.Lock()
        self._layers = {int(i): _Layer(initial_capacity, len(self.signal_names)) for i in layer_ids}
        self.version = 0
        self.has_outer = bool(outer)
        self._outer = np.empty((initial_capacity if outer else 0, 1), dtype=np.float32)
        self._n_outer = 0

    def extend_outer(self, block) -> None:
        """Outer loss of the next positions (float32 [n])."""
        if block is None:
            return
        block = np.asarray(block, dtype=np.float32).reshape(-1, 1)
        if not block.shape[0]:
            return
        with self._lock:
            self._outer, self._n_outer = _appended(self._outer, self._n_outer, block)
            self.has_outer = True
            self.version += 1

    def outer_view(self) -> np.ndarray:
        """Read-only outer loss per position [n] (empty when the run records none); never changes afterwards."""
        with self._lock:
            v = self._outer[: self._n_outer, 0]
            v.flags.writeable = False
            return v

    @property
    def layer_ids(self) -> list[int]:
        return list(self._layers)

    def append(self, layer_id: int, block: np.ndarray) -> None:
        block = np.asarray(block, dtype=np.float32).reshape(-1, 3)
        if not block.shape[0]:
            return
        with self._lock:
            lay = self._layers[layer_id]
            n = lay.n
            lay.data, lay.n = _appended(lay.data, n, block)
            if lay.valid is not None:
                lay.valid, _ = _appended(lay.valid, n, np.ones((block.shape[0], 1), dtype=bool))
            lay.stats.update(block)
            lay.version += 1
            self.version += 1

    def append_missing(self, layer_id: int, count: int, kind: str = "losses") -> None:
        """``count`` positions the run log lost (a damaged block), as NaN rows that no statistic counts: the
        positions after them stay where they were. ``kind``: "losses", "signals" or "outer"."""
        if count <= 0:
            return
        if kind == "outer":
            self.extend_outer(np.full(count, np.nan, dtype=np.float32))
            return
        if kind == "signals":
            self.extend_signals({layer_id: np.full((count, len(self.signal_names)), np.nan, dtype=np.float32)})
            return
        rows = np.full((count, 3), np.nan, dtype=np.float32)
        with self._lock:
            lay = self._layers[layer_id]
            n = lay.n
            if lay.valid is None:
                lay.valid = np.ones((lay.data.shape[0], 1), dtype=bool)
            lay.data, lay.n = _appended(lay.data, n, rows)
            lay.valid, _ = _appended(lay.valid, n, np.zeros((count, 1), dtype=bool))
            lay.missing.append((n, count))
            lay.stats.update(rows, np.zeros(count, dtype=bool))
            lay.version += 1
            self.version += 1

    def valid(self, layer_id: int) -> np.ndarray | None:
        """Per row of ``view``, whether the log holds it; None when it holds every row (the usual case)."""
        with self._lock:
            lay = self._layers[layer_id]
            if lay.valid is None:
                return None
            v = lay.valid[: lay.n, 0]
            v.flags.writeable = False
            return v

    def missing(self, layer_id: int) -> list[tuple[int, int]]:
        """(first position, count) of each run of positions the log lost."""
        return list(self._layers[layer_id].missing)

    def extend(self, blocks: dict[int, np.ndarray]) -> None:
        for layer_id, block in blocks.items():
            self.append(layer_id, block)

    def extend_signals(self, blocks: dict[int, np.ndarray]) -> None:
        """Per layer, rows of the backend's inner-loop signals (``signal_names`` columns)."""
        k = len(self.signal_names)
        for layer_id, block in blocks.items():
            block = np.asarray(block, dtype=np.float32).reshape(-1, k)
            with self._lock:
                lay = self._layers[layer_id]
                lay.signals, lay.n_signals = _appended(lay.signals, lay.n_signals, block)
                self.version += 1

    def signal_summary(self, layer_id: int) -> dict:
        """Per signal: mean, min, max over the finite values, and the last value."""
        with self._lock:
            lay = self._layers[layer_id]
            data = lay.signals[: lay.n_signals]
        out = {}
        for i, name in enumerate(self.signal_names):
            col = data[:, i]
            fin = col[np.isfinite(col)]
            if not col.size:
                continue
            out[name] = {
                "mean": float(fin.mean()) if fin.size else float("nan"),
                "min": float(fin.min()) if fin.size else float("nan"),
                "max": float(fin.max()) if fin.size else float("nan"),
                "last": float(col[-1]),
            }
        return out

    def view(self, layer_id: int) -> tuple[int, np.ndarray]:
        """(version, read-only rows [n, 3]) of one layer; the rows never change afterwards."""
        with self._lock:
            lay = self._layers[layer_id]
            v = lay.data[: lay.n]
            v.flags.writeable = False
            return lay.version, v

    def n_positions(self, layer_id: int) -> int:
        return self._layers[layer_id].n

    def summary(self, layer_id: int) -> dict:
        """Running statistics of one layer (the same numbers the final report prints)."""
        with self._lock:
            lay = self._layers[layer_id]
            data = lay.data[: lay.n]
            return lay.stats.summary(data)

    def nbytes(self) -> int:
        return self._outer.nbytes + sum(lay.data.nbytes + lay.signals.nbytes for lay in self._layers.values())
