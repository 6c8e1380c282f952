"""Record Figure 5 from your own loop: ``ttt_tui.Recorder`` writes the same run log that ``ttt-tui open``,
``report``, ``compare`` and ``tensorboard`` read (``docs/run-log.md``; ``docs/python-api.md`` for the API).

Two ways in:

- ``rec.record({layer: losses})``: per layer, the next ``n`` positions' ``(l0, lprev, lafter)`` as an ``[n, 3]``
  numpy array or torch tensor. Tensors stay where they are (a GPU's too) and are copied to the host once per
  block (``flush_every`` positions), as ttt-tui's own backends do: no host synchronisation per call.
- ``rec.record_inner(layer, keys, targets, W0, W_prev, W_after, ...)``: the inner loop's inputs of one update
  (a mini-batch): ttt-tui computes the three losses with its own code (``inner_losses``: ttt-lm-pytorch's
  layer-normed MSE of a TTT-Linear or TTT-MLP inner model). ``lprev`` is at the update's start weights and
  ``lafter`` at its end weights, for every position of the update.

Switched off (``enabled=False``, or a rank other than 0 under torchrun), every call returns at once and nothing
is written. Only numpy and the standard library are needed, unless you hand it torch tensors.
"""

from __future__ import annotations

import math
import os
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from . import __version__
from .errors import InputError

DEFAULT_FLUSH = 1024  # positions per layer between host copies and log blocks
TOKEN_WINDOW = 1000  # positions per window of a token run's statistics over time


def _rank() -> int:
    """This process's rank under torchrun (RANK), or 0."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


class Recorder:
    """A run log of the three losses per layer and position, written as you record.

    ``out_dir``: the run's folder (made; refused if another run writes there or it holds an earlier run,
    unless ``force``). ``layers``: the layer ids, if known before the first ``record`` (then ``ttt-tui open``
    can follow the run from the start); otherwise the first ``record``'s keys. ``rate``: positions per second
    of the stream (audio); without it positions are ``unit`` (``"token"``). ``report``: write the report
    (text, JSON, CSV, PNGs) when the recorder closes. ``all_ranks``: under torchrun every rank writes its own
    log in ``out_dir/rank<R>`` (default: rank 0 only, and no collective is ever called).

    Example::

        with ttt_tui.Recorder("runs/figure5", layers=[29, 30, 31]) as rec:
            for batch in data:
                ... # your model; per layer an [n, 3] tensor of (l0, lprev, lafter)
                rec.record({29: l29, 30: l30, 31: l31})
    """

    def __init__(
        self,
        out_dir,
        *,
        layers=None,
        rate: float | None = None,
        unit: str = "token",
        model: str = "recorded with ttt_tui.Recorder",
        notes=(),
        signal_names=(),
        window: float | None = None,
        flush_every: int = DEFAULT_FLUSH,
        report: bool = True,
        enabled: bool = True,
        all_ranks: bool = False,
        force: bool = False,
    ):
        rank = _rank()
        self.enabled = bool(enabled) and (all_ranks or rank == 0)
        self.out_dir = Path(out_dir) / f"rank{rank}" if all_ranks and rank else Path(out_dir)
        if rate is not None and not (isinstance(rate, int | float) and math.isfinite(rate) and rate > 0):
            raise InputError(f"Recorder: rate {rate!r} must be a positive number of positions per second")
        if not isinstance(flush_every, int) or flush_every < 1:
            raise InputError(f"Recorder: flush_every {flush_every!r} must be a positive number of positions")
        self.rate = float(rate) if rate is not None else None
        self.unit = "audio frame" if rate is not None and unit == "token" else str(unit)
        self.model, self.notes = str(model), [str(n) for n in notes]
        self.signal_names = tuple(str(s) for s in signal_names)
        # the windows of the statistics over time: seconds of a stream, or tokens (1,000 by default)
        self.window = window if window is not None else (None if rate is not None else TOKEN_WINDOW)
        self.flush_every = flush_every
        self.report = report
        self.layer_ids: list[int] | None = None
        self.positions: dict[int, int] = {}  # per layer, positions recorded (flushed or not)
        self._pending: dict[int, list] = {}  # per layer, what record() was given since the last flush
        self._pending_signals: dict[int, list] = {}
        self._pending_n = 0
        self._writer = None
        self._lock = None
        self._closed = False
        self._t0 = time.time()
        self._started = datetime.now()
        if not self.enabled:
            return
        from .record.files import prepare_out_dir

        self._lock = prepare_out_dir(self.out_dir, force=force)
        if layers is not None:
            self._start([int(x) for x in layers])

    # -- the log --------------------------------------------------------------------------------------------
    def header(self) -> dict:
        """The run log's header (``record.schema.RunHeader``; ``docs/run-log.md``)."""
        return {
            "input": self.model,
            "model": self.model,
            "device": "?",
            "frame_rate": self.rate or 1.0,
            "position_unit": self.unit,
            "layer_ids": list(self.layer_ids or []),
            "signal_names": list(self.signal_names),
            "outer_loss": False,
            "window_s": self.window,
            "notes": self.notes,
            "audit": [],
            "model_details": {"recorder": True},
            "versions": {"ttt_tui": __version__, "numpy": np.__version__, "python": sys.version.split()[0]},
            "started": self._started.isoformat(timespec="seconds"),
            "duration_s": 0.0,
            "state": "running",
        }

    def _start(self, layer_ids: list[int]) -> None:
        from .record.runlog import RunLogWriter

        if len(set(layer_ids)) != len(layer_ids):
            raise InputError(f"Recorder: layers {layer_ids} repeat a layer")
        self.layer_ids = layer_ids
        self.positions = {L: 0 for L in layer_ids}
        self._writer = RunLogWriter(self.out_dir, self.header())
        import atexit

        # a script that never closes its recorder (no ``with``) still ends its log, with what it recorded
        atexit.register(self._at_exit)

    def _at_exit(self) -> None:
        if not self._closed:
            self.close("stopped", "the program ended without closing its recorder")

    # -- recording ------------------------------------------------------------------------------------------
    def record(self, losses: dict, signals: dict | None = None) -> None:
        """Per layer, the next positions' ``[n, 3]`` (l0, lprev, lafter): numpy arrays or torch tensors (kept on
        their device until the next flush). ``signals``: per layer ``[n, len(signal_names)]``."""
        if not self.enabled:
            return
        if self._closed:
            raise InputError("Recorder: record() after close()")
        if self.layer_ids is None:
            self._start(sorted(int(k) for k in losses))
        for layer, block in losses.items():
            layer = int(layer)
            if layer not in self.positions:
                raise InputError(
                    f"Recorder: layer {layer} was not among the layers {self.layer_ids}; give every layer in "
                    "layers=[...] (or in the first record())"
                )
            block = _rows(block, 3, f"layer {layer}")
            self._pending.setdefault(layer, []).append(block)
            self.positions[layer] += block.shape[0]
        for layer, block in (signals or {}).items():
            block = _rows(block, len(self.signal_names), f"signals of layer {layer}")
            self._pending_signals.setdefault(int(layer), []).append(block)
        self._pending_n = max((sum(b.shape[0] for b in v) for v in self._pending.values()), default=0)
        if self._pending_n >= self.flush_every:
            self.flush()

    def record_inner(
        self,
        layer: int,
        keys,
        targets,
        W0: dict,
        W_prev: dict,
        W_after: dict,
        ln_weight=None,
        ln_bias=None,
        eps: float = 1e-6,
    ) -> None:
        """One update of a layer's inner model from its inputs: ``keys`` and ``targets`` ``[n, d]``,
        ``[H, n, d]`` or ``[B, H, n, d]`` (torch tensors), the weights ``{"W1", "b1"[, "W2", "b2"]}`` at the
        stream start, before and after the update (TTT-Linear without W2, TTT-MLP with it), and the per-head
        layer norm inside the loss (``[H, d]``; default: none). Losses per position: mean over the batch and
        heads of the per-element MSE (``docs/losses.md``)."""
        if not self.enabled:
            return
        self.record({layer: inner_losses(keys, targets, W0, W_prev, W_after, ln_weight, ln_bias, eps)})

    def flush(self) -> None:
        """Everything recorded so far into the log: one host copy and one block per layer."""
        if not self.enabled or self._writer is None:
            return
        blocks = {L: _host(parts) for L, parts in self._pending.items() if parts}
        signals = {L: _host(parts) for L, parts in self._pending_signals.items() if parts}
        self._pending, self._pending_signals, self._pending_n = {}, {}, 0
        if blocks:
            self._writer.extend(blocks)
        if signals:
            self._writer.extend_signals(signals)
        n = max(self.positions.values(), default=0)
        self._writer.status("running", n / (self.rate or 1.0))

    def close(self, state: str = "finished", error: str | None = None) -> dict | None:
        """Flush, write the end record and (``report``) the report; returns the report's paths."""
        if not self.enabled or self._closed:
            return None
        self._closed = True
        import atexit

        atexit.unregister(self._at_exit)
        paths = None
        try:
            if self._writer is None:  # nothing was recorded: an empty log says so
                self._start([])
            self.flush()
            from .record.schema import RunEnd

            n = max(self.positions.values(), default=0)
            wall = time.time() - self._t0
            seconds = n / (self.rate or 1.0)
            rtf = round(seconds / wall, 2) if self.rate and wall > 0 else None  # the whole loop's pace
            self._writer.close(
                RunEnd(
                    state=state,
                    audio_s=seconds,
                    error=error,
                    stop_reason=error,
                    wall_s=round(wall, 3),
                    realtime_factor=rtf,
                )
            )
            if self.report:
                from .record.runlog import read_run
                from .report import write_run_report

                paths = write_run_report(read_run(self.out_dir), self.out_dir)
        finally:
            if self._lock is not None:
                self._lock.close()
                self._lock = None
        return paths

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.close()
        elif issubclass(exc_type, KeyboardInterrupt):
            self.close("stopped", "interrupted (KeyboardInterrupt)")
        else:
            self.close("error", f"{exc_type.__name__}: {exc}")
        return False


def _rows(block, cols: int, what: str):
    """``block`` as rows of ``cols`` columns: a torch tensor stays one (detached, where it is), anything else
    becomes a float32 numpy array."""
    if hasattr(block, "detach"):  # a torch tensor: no host copy here
        t = block.detach()
        if t.ndim != 2 or t.shape[1] != cols:
            raise InputError(f"Recorder: {what} has shape {tuple(t.shape)}; give [n, {cols}]")
        return t
    a = np.asarray(block, dtype=np.float32)
    if a.ndim != 2 or a.shape[1] != cols:
        raise InputError(f"Recorder: {what} has shape {a.shape}; give [n, {cols}]")
    return a


def _host(parts: list) -> np.ndarray:
    """The parts of one layer as one float32 array: tensors joined on their device, then one copy."""
    if any(hasattr(p, "detach") for p in parts):
        import torch

        from .recording import host_copy

        t = torch.cat([p if hasattr(p, "detach") else torch.from_numpy(p) for p in parts], 0)
        return host_copy(t)[0]
    return parts[0] if len(parts) == 1 else np.concatenate(parts, 0)


def inner_losses(keys, targets, W0: dict, W_prev: dict, W_after: dict, ln_weight=None, ln_bias=None, eps=1e-6):
    """``[n, 3]`` (l0, lprev, lafter) of one update's positions, on the keys' device: per position the
    per-element MSE of ``LN(f(key; W))`` against its target at the stream-start, the update's start and its end
    weights, averaged over batch and heads (``docs/losses.md``; ``f`` is TTT-Linear, or TTT-MLP when ``W2`` is
    given)."""
    import torch

    from .ttt import _forward, _ln_fwd

    k, tgt = _bhnd(keys), _bhnd(targets)
    H, d = k.shape[1], k.shape[-1]
    kind = "mlp" if "W2" in W0 else "linear"
    gamma = torch.ones(H, d, dtype=k.dtype, device=k.device) if ln_weight is None else ln_weight
    beta = torch.zeros(H, d, dtype=k.dtype, device=k.device) if ln_bias is None else ln_bias
    g, b = gamma.reshape(1, H, 1, d), beta.reshape(1, H, 1, d)
    out = []
    with torch.no_grad():
        for W in (W0, W_prev, W_after):
            p = {name: _weights(W[name], k.ndim) for name in W}
            y, _, _ = _ln_fwd(_forward(kind, p, k)[0], g, b, eps)
            out.append(((y - tgt) ** 2).mean(-1).mean((0, 1)))  # [n]
    return torch.stack(out, 1)


def _bhnd(t):
    """[n, d] / [H, n, d] / [B, H, n, d] -> [B, H, n, d]."""
    while t.ndim < 4:
        t = t.unsqueeze(0)
    return t


def _weights(w, ndim):
    """Per-head weights [H, a, b] (or [a, b] for one head, or [B, H, a, b]) -> broadcastable to [B, H, ...]."""
    while w.ndim < ndim:
        w = w.unsqueeze(0)
    return w
