"""TensorBoard export of a run (``--tensorboard DIR`` at the end of a run, ``ttt-tui tensorboard RUN --logdir
DIR`` for a saved one), so that runs also show in the tool our users already open. Optional dependency:
tensorboardX (``pip install tensorboardX``).

Per layer and per second of audio (the positions of that second averaged: an hour of audio is 3,600 points per
series, not 180,000): ``layer<L>/l0``, ``lprev``, ``lafter``, ``improvement`` (lprev - lafter), ``benefit``
(l0 - lafter) and ``violation_rate`` (percent of positions with not l0 >= lprev >= lafter). The step is the
second of audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..record.store import LossStore


def _seconds(data: np.ndarray, frame_rate: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Rows [n, k] cut into whole seconds: (the rows [seconds, per second, k], their means [seconds, k] over the
    finite values); None if not one whole second."""
    per = max(1, int(round(frame_rate)))
    n = (data.shape[0] // per) * per
    if not n:
        return None
    d = data[:n].astype(np.float64).reshape(-1, per, data.shape[1])
    with np.errstate(invalid="ignore"):
        return d, np.nanmean(np.where(np.isfinite(d), d, np.nan), axis=1)


def per_second(data: np.ndarray, frame_rate: float) -> dict[str, np.ndarray]:
    """The exported series of one layer's [n, 3] losses: means over each whole second (non-finite ignored)."""
    cut = _seconds(data, frame_rate)
    if cut is None:
        return {}
    d, means = cut
    with np.errstate(invalid="ignore"):
        ok = ~(d[..., 0] >= d[..., 1]) | ~(d[..., 1] >= d[..., 2])
    return {
        "l0": means[:, 0],
        "lprev": means[:, 1],
        "lafter": means[:, 2],
        "improvement": means[:, 1] - means[:, 2],
        "benefit": means[:, 0] - means[:, 2],
        "violation_rate": 100.0 * ok.mean(axis=1),
    }


def export(store: LossStore, logdir: str | Path, run_name: str) -> Path:
    """Write the run's scalars under ``logdir/run_name``; returns that folder."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise InputError("--tensorboard needs tensorboardX: pip install tensorboardX") from None
    folder = Path(logdir) / run_name
    writer = SummaryWriter(str(folder))
    try:
        for layer_id in store.layer_ids:
            _, data = store.view(layer_id)
            for name, series in per_second(data, store.frame_rate).items():
                for step, value in enumerate(series):
                    if np.isfinite(value):
                        writer.add_scalar(f"layer{layer_id}/{name}", float(value), step + 1)
        cut = _seconds(store.outer_view()[:, None], store.frame_rate) if store.has_outer else None
        if cut is not None:  # teacher-forced: the model's outer loss, per second as the layers' series
            for step, value in enumerate(cut[1][:, 0]):
                if np.isfinite(value):
                    writer.add_scalar("model/outer_loss", float(value), step + 1)
    finally:
        writer.close()
    return folder
