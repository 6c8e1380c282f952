import numpy as np
import pytest

from ttt_tui.decimate import minmax_decimate


@pytest.mark.parametrize("n", [1, 10, 3999, 4000, 4001, 4003, 12345, 1_000_000])
def test_keeps_extremes_and_bounds_points(n):
    rng = np.random.default_rng(n)
    y = rng.normal(size=n)
    y[n // 3] = 50.0  # a spike must survive
    y[n // 2] = -50.0
    x = np.arange(n) / 50.0
    xd, yd = minmax_decimate(x, y, 4000)
    assert len(xd) <= 4000 and len(xd) == len(yd)
    assert yd.max() == y.max() and yd.min() == y.min()
    assert np.all(np.diff(xd) >= 0) and xd[0] == x[0] and xd[-1] == x[-1]
    # every kept value is a value of the data, within its bucket's x range
    assert np.isin(yd, y).all()


def test_bucket_envelope():
    y = np.array([3.0, 1.0, 2.0, 9.0, 4.0, 5.0, 0.0, 7.0])
    xd, yd = minmax_decimate(np.arange(8.0), y, 4)  # two buckets of four
    assert list(yd) == [1.0, 9.0, 0.0, 7.0] and list(xd) == [0.0, 3.0, 4.0, 7.0]


def test_drops_non_finite():
    y = np.array([1.0, np.nan, 2.0, np.inf, 3.0])
    xd, yd = minmax_decimate(np.arange(5), y, 100)
    assert list(yd) == [1.0, 2.0, 3.0] and list(xd) == [0, 2, 4]
    y = np.concatenate([np.full(5000, np.nan), np.linspace(0, 1, 5000)])
    xd, yd = minmax_decimate(np.arange(10000), y, 100)
    assert np.isfinite(yd).all() and yd.min() == 0.0 and yd.max() == 1.0 and xd.min() >= 5000


def test_empty_history():
    from ttt_tui.decimate import minmax_columns
    from ttt_tui.tui.chart_data import ViewSettings, chart_series

    assert [len(p) for p, _, _ in minmax_columns(np.zeros((0, 3), np.float32), 100)] == [0, 0, 0]
    xd, yd = minmax_decimate(np.zeros(0), np.zeros(0), 100)
    assert len(xd) == len(yd) == 0
    _, series, decimated = chart_series(np.zeros((0, 3), np.float32), 50.0, ViewSettings(), 100)
    assert not decimated and all(len(x) == 0 for x, _ in series)
