"""Incremental statistics equal a direct computation of the report rules, whatever the block sizes."""

import numpy as np
import pytest

from ttt_tui.analysis.stats import LayerStats, summarize


def direct(losses):
    """The report rules read literally (report-format.md), over all positions at once."""
    l0, lprev, lafter = losses.T
    n = len(losses)
    fin = np.isfinite(losses).all(1)
    f = losses[fin]
    q = n // 4
    qf = lambda a, b: f_rows(losses[a:b])  # noqa: E731
    first, last = qf(0, q), qf(n - q, n)
    return {
        "violations": int(np.sum(~((l0 >= lprev) & (lprev >= lafter)))),
        "mean": f.mean(0),
        "std": f.std(0),
        "min": f.min(0),
        "max": f.max(0),
        "improvement": (f[:, 1] - f[:, 2]).mean(),
        "benefit": (f[:, 0] - f[:, 2]).mean(),
        "context_gain": (f[:, 0] - f[:, 1]).mean(),
        "l0_trend": last[:, 0].mean() - first[:, 0].mean(),
        "lprev_trend": last[:, 1].mean() - first[:, 1].mean(),
        "gap_trend": (last[:, 0] - last[:, 2]).mean() - (first[:, 0] - first[:, 2]).mean(),
    }


def f_rows(x):
    return x[np.isfinite(x).all(1)]


@pytest.mark.parametrize("n", [11, 300, 5000])
def test_incremental_equals_direct(n):
    rng = np.random.default_rng(n)
    losses = np.abs(rng.normal(1.0, 0.3, (n, 3))) + np.linspace(0, 1, n)[:, None]
    mid = rng.integers(n // 4, n - n // 4, 5)  # keep some finite rows in each quarter
    losses[mid[:3], rng.integers(0, 3, 3)] = np.nan
    losses[mid[3:], 1] = np.inf
    st = LayerStats()
    s = 0
    while s < n:
        k = int(rng.integers(1, 700))
        st.update(losses[s : s + k])
        s += k
    got = st.summary(losses)
    ref = direct(losses)
    assert got["n_positions"] == n
    assert got["violations"] == ref["violations"]
    assert got["nonfinite"] == int((~np.isfinite(losses).all(1)).sum())
    for i, name in enumerate(("l0", "lprev", "lafter")):
        for k in ("mean", "std", "min", "max"):
            assert got[name][k] == pytest.approx(ref[k][i], rel=1e-9)
    assert got["avg_improvement"] == pytest.approx(ref["improvement"], rel=1e-9)
    assert got["cumulative_benefit"] == pytest.approx(ref["benefit"], rel=1e-9)
    assert got["context_gain"] == pytest.approx(ref["context_gain"], rel=1e-9)
    for k in ("l0_trend", "lprev_trend", "gap_trend"):
        assert got[k] == pytest.approx(ref[k], rel=1e-9, abs=1e-12)


def test_health_check():
    n = 400
    t = np.linspace(0, 1, n)
    healthy = np.stack([1.0 + 0 * t, 0.8 - 0.2 * t, 0.7 - 0.2 * t], 1)
    assert summarize(healthy)["healthy"]
    assert not summarize(np.ones((n, 3)))["healthy"]  # overlapping lines
    assert not summarize(healthy[:, [0, 2, 1]])["healthy"]  # updates make it worse
    assert not summarize(healthy * 100)["healthy"]  # out of range
    assert summarize(np.zeros((0, 3)))["n_positions"] == 0


def test_elevated_violation_rate_is_a_warning_not_a_verdict():
    from ttt_tui.analysis.diagnosis import diagnose

    n = 400
    t = np.linspace(0, 1, n)
    x = np.stack([1.0 + 0 * t, 0.8 - 0.2 * t, 0.7 - 0.2 * t], 1)
    x[::5, 2] = x[::5, 1] + 0.01  # 20 % of positions: the update made it worse
    verdict, fs = diagnose(summarize(x))
    codes = {f.code: f for f in fs}
    assert verdict == "HEALTHY" and codes["ELEVATED_VIOLATION_RATE"].severity == "warning"
    assert "20.0%" in codes["ELEVATED_VIOLATION_RATE"].text
    assert "ELEVATED_VIOLATION_RATE" not in {f.code for f in diagnose(summarize(x[:, [0, 1, 1]]))[1]}
