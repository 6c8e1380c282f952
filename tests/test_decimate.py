import numpy as np
import pytest

from ttt_tui.analysis.decimate import minmax_decimate


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
    from ttt_tui.analysis.decimate import minmax_columns
    from ttt_tui.tui.chart_data import ViewSettings, chart_series

    assert [len(p) for p, _, _ in minmax_columns(np.zeros((0, 3), np.float32), 100)] == [0, 0, 0]
    xd, yd = minmax_decimate(np.zeros(0), np.zeros(0), 100)
    assert len(xd) == len(yd) == 0
    chart = chart_series(np.zeros((0, 3), np.float32), 50.0, ViewSettings(), 100)
    assert not chart.decimated and all(len(x) == 0 for x, _ in chart.lines)


def test_column_means_are_bucket_means_ignoring_non_finite():
    from ttt_tui.analysis.decimate import column_means

    rows = np.array([[1.0, 10.0], [3.0, np.nan], [5.0, 30.0], [7.0, 50.0], [9.0, np.inf]])
    (x0, m0), (x1, m1) = column_means(rows, 2)  # buckets of 3 and 2
    assert list(x0) == [1.0, 3.5] and list(m0) == [3.0, 8.0]
    assert list(x1) == [1.0, 3.5] and list(m1) == [20.0, 50.0]
    ((x, m),) = column_means(np.array([[np.nan], [np.nan], [2.0]]), 3)  # a bucket with nothing finite is dropped
    assert list(x) == [2.0] and list(m) == [2.0]
    big = np.random.default_rng(0).normal(size=(1_000_003, 3)).astype(np.float32)
    for x, m in column_means(big, 200):
        assert 190 <= len(x) <= 200 and abs(float(m.mean())) < 0.01 and np.all(np.diff(x) > 0)
