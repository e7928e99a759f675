"""Forecast metrics against closed forms, numerical integrals and hand-computed values."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from idf_jax.nvp import metrics as M


def test_crps_gaussian_matches_numerical_integral():
    grid = np.linspace(-20, 20, 400001)
    for y, mu, sd in ((0.7, 0.2, 1.3), (-2.0, 1.0, 0.5), (3.0, 3.0, 2.0)):
        num = np.trapezoid((norm.cdf(grid, mu, sd) - (grid >= y)) ** 2, grid)
        assert float(M.crps_gaussian(y, mu, sd)) == pytest.approx(num, rel=1e-4)
    # a point forecast: CRPS is the absolute error
    assert float(M.crps_gaussian(1.0, 0.25, 0.0)) == pytest.approx(0.75, rel=1e-5)
    # at the mean: sd (sqrt(2) - 1) / sqrt(pi)
    assert float(M.crps_gaussian(0.0, 0.0, 2.0)) == pytest.approx(
        2.0 * (np.sqrt(2.0) - 1.0) / np.sqrt(np.pi), rel=1e-5
    )


def test_crps_samples_hand_values_and_brute_force():
    # hand: samples {1, 2, 3}, y = 2: mean|x - y| = 2/3, sum_ij |x_i - x_j| = 8 -> 2/3 - 8/18
    assert float(M.crps_samples(2.0, jnp.array([1.0, 2.0, 3.0]))) == pytest.approx(2 / 9, rel=1e-6)
    assert float(M.crps_samples(5.0, jnp.array([2.0]))) == pytest.approx(3.0)
    rng = np.random.default_rng(0)
    s = rng.normal(size=(17, 3))
    y = rng.normal(size=3)
    brute = np.abs(s - y).mean(0) - 0.5 * np.abs(s[:, None] - s[None]).mean((0, 1))
    np.testing.assert_allclose(np.asarray(M.crps_samples(y, s)), brute, rtol=1e-5)


def test_crps_samples_converges_to_gaussian():
    s = norm.ppf((np.arange(20000) + 0.5) / 20000, 0.3, 1.7)  # quantile "samples"
    assert float(M.crps_samples(1.1, s)) == pytest.approx(
        float(M.crps_gaussian(1.1, 0.3, 1.7)), rel=1e-3
    )


def test_mase_skill_coverage_by_hand():
    train = np.array([[0.0, 1.0], [2.0, 1.0], [1.0, 1.0], [4.0, 1.0]])
    # one-step naive MAE (2 + 1 + 3) / 3 = 2, lag 2 (1 + 2) / 2; constant channel: scale 1
    np.testing.assert_allclose(np.asarray(M.naive_scale(train)), [2.0, 1.0])
    np.testing.assert_allclose(np.asarray(M.naive_scale(train, period=2)), [1.5, 1.0])
    y = np.array([[1.0, 1.0], [3.0, 2.0]])
    pred = np.array([[2.0, 1.0], [3.0, 0.0]])
    np.testing.assert_allclose(np.asarray(M.mase(y, pred, [2.0, 1.0])), [0.25, 1.0])
    assert float(M.skill(0.5, 2.0)) == pytest.approx(0.75)
    assert np.isnan(float(M.skill(0.5, 0.0)))
    lo, hi = M.gaussian_interval(np.zeros(4), np.ones(4), 0.9)
    np.testing.assert_allclose(np.asarray(hi), 1.6448536, rtol=1e-6)
    cov = M.coverage(np.array([0.0, 1.0, 1.7, -2.0]), lo, hi)
    assert float(cov) == pytest.approx(0.5)
    assert M.z_of_level(0.5) == pytest.approx(norm.ppf(0.75), rel=1e-6)


def test_jit_and_vmap_compile_once():
    f = jax.jit(eqx.debug.assert_max_traces(M.crps_gaussian, max_traces=1))
    y = jnp.linspace(-1, 1, 8)
    for k in range(3):  # new values, same shapes: one trace
        out = f(y + k, jnp.zeros(8), jnp.ones(8) * (1 + k))
    np.testing.assert_allclose(
        np.asarray(out),
        np.asarray(M.crps_gaussian(y + 2, jnp.zeros(8), 3.0 * jnp.ones(8))),
        rtol=1e-6,
    )
    # vmap over channels equals the broadcast call
    ys, ss = jnp.ones((5, 3)), jnp.ones((7, 5, 3))
    v = jax.vmap(M.crps_samples, in_axes=(1, 2), out_axes=1)(ys, ss)
    np.testing.assert_allclose(np.asarray(v), np.asarray(M.crps_samples(ys, ss)), rtol=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match="level"):
        M.gaussian_interval(0.0, 1.0, 1.5)
    with pytest.raises(ValueError, match="period"):
        M.naive_scale(np.zeros((5, 1)), period=0)
    with pytest.raises(ValueError, match="training steps"):
        M.naive_scale(np.zeros((2, 1)), period=2)
