import numpy as np
import pytest

from ttt_tui.decimate import minmax_decimate


@pytest.mark.parametrize("n", [1, 10, 3999, 4000, 4001, 4003, 12345, 1_000_000])
def test_keeps_extremes_and_bounds_points(n):
    rng = np.random.default_rng(n)
    y = rng.normal(size=n)
    y[n // 3] = 50.0  # a spike must survive
    x = np.arange(n)
    xd, yd = minmax_decimate(x, y, 4000)
    assert len(xd) <= 4000 and len(xd) == len(yd)
    assert yd.max() == y.max() and yd.min() == y.min()
    assert np.all(np.diff(xd) >= 0)
    np.testing.assert_array_equal(y[xd], yd)


def test_drops_non_finite():
    y = np.array([1.0, np.nan, 2.0, np.inf, 3.0])
    xd, yd = minmax_decimate(np.arange(5), y, 100)
    assert list(yd) == [1.0, 2.0, 3.0] and list(xd) == [0, 2, 4]
