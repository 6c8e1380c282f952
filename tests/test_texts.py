"""The dashboard's counters as text, built without a screen (``tui/texts.py``): the numbers a user reads off
them are the store's, the labels are the backend's (from the run log's header), lost positions are said."""

import numpy as np

from ttt_tui.analysis.diagnosis import diagnose
from ttt_tui.record.store import LossStore
from ttt_tui.tui.texts import counters_text, fmt


def rows(n, seed=0):
    rng = np.random.default_rng(seed)
    lafter = 1.0 + 0.1 * rng.random(n)
    lprev = lafter + 0.05
    return np.stack([lprev + 0.2, lprev, lafter], 1).astype(np.float32)


def test_counters_say_the_stores_numbers_and_what_was_lost():
    store = LossStore([3], 12.5)
    store.append(3, rows(100))
    store.append_missing(3, 25)
    store.append(3, rows(75, 1))
    s = store.summary(3)
    verdict, _ = diagnose(s)
    full = counters_text(3, s, verdict, 12.5).plain
    line1 = full.splitlines()[0]
    assert "positions 200 (16.0 s)" in line1
    assert f"violations {s['violations']} ({s['violation_rate']:.2f}%)" in line1
    assert f"improvement {fmt(s['avg_improvement'])}" in line1 and "lost 25" in line1
    one = counters_text(3, s, verdict, 12.5, collapsed=True).plain
    assert one.startswith("layer 3 ") and "\n" not in one and "lost 25" in one


def test_signals_are_named_by_the_backends_labels():
    store = LossStore([0], 50.0, signal_names=("grad_norm", "step_size"))
    store.append(0, rows(40))
    store.extend_signals({0: np.tile(np.array([[0.5, 0.01]], np.float32), (40, 1))})
    s = store.summary(0)
    labels = {"grad_norm": {"short": "|grad|", "long": "inner gradient norm"}}
    text = counters_text(0, s, diagnose(s)[0], 50.0, signals=store.signal_summary(0), labels=labels).plain
    last = text.splitlines()[-1]
    assert "|grad| 0.5 (mean 0.5)" in last
    assert "step_size 0.01 (mean 0.01)" in last  # no label given: its name
