import numpy as np
import pytest

from pipelines.statistics import reduce_sums, stat_sums


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("block_rows", [None, 64])  # one block, or many (the last one partial)
def test_stat_sums_match_float64_sums_without_nan(dtype, block_rows, monkeypatch):
    if block_rows:
        monkeypatch.setattr("pipelines.statistics.STAT_BLOCK_BYTES", 8 * 21 * block_rows)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5000, 3, 7)) * 0.5
    x[:, 0, 0] += 4000.0  # a column far from zero that varies little: E[x²] - E[x]² cancels
    x[:, 1, 2] = 1e-12 * rng.standard_normal(5000)  # tiny values
    x[::7, 2, 3] = np.nan  # reassigned planes without fill_nan hold NaN
    x[0, 2, 4] = np.nan  # NaN in the reference row itself
    x[:, 2, 5] = np.inf
    x = x.astype(dtype)
    with np.errstate(invalid="ignore"):
        sums = stat_sums(x)
    wide = x.astype(np.float64)
    finite = np.isfinite(wide)
    values = np.where(finite, wide, 0)
    expected = np.stack([finite.sum(0), values.sum(0), (values * values).sum(0)])
    np.testing.assert_array_equal(sums[0], expected[0])
    ok = (expected[0] > 0) & np.isfinite(expected[1])  # the all-inf column has no finite value
    (count, total, squares), (e_count, e_total, e_squares) = sums[:, ok], expected[:, ok]
    mean, expected_mean = total / count, e_total / e_count
    var, expected_var = squares / count - mean**2, e_squares / e_count - expected_mean**2
    scale = np.abs(expected_mean) + np.sqrt(expected_var)  # errors relative to the column's size
    assert (np.abs(mean - expected_mean) <= 1e-5 * scale).all()
    np.testing.assert_allclose(var, expected_var, rtol=1e-4)
    assert stat_sums(x[:0]).shape == (3, 3, 7)


def test_reduced_sums_give_mean_and_population_std():
    rng = np.random.default_rng(5)
    parts = [rng.standard_normal((n, 4)) * 3 + 1 for n in (10, 1, 25)]
    mean, std, frames = reduce_sums([stat_sums(p) for p in parts])
    everything = np.concatenate(parts)
    np.testing.assert_allclose(mean, everything.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std, everything.std(axis=0), rtol=1e-10)
    assert frames == 36
