"""Forecast baselines: hand-checked indices, ridge recovers a known process, the Holt-Winters
recursion equals statsmodels' fitted values, residual sds are the RMS errors."""

import warnings

import numpy as np
import pytest

from idf_jax.nvp.baselines import HoltWinters, Persistence, RidgeAR, SeasonalNaive, calibrate


def test_persistence_and_seasonal_naive_by_hand():
    x = np.arange(20.0)[:, None] * np.array([[1.0, -1.0]])
    o = np.array([5, 9])
    p = Persistence().point(x, o, (1, 4))
    np.testing.assert_array_equal(p[:, 0, 0], [5, 9])
    np.testing.assert_array_equal(p[:, 1, 1], [-5, -9])
    s = SeasonalNaive(4).point(x, o, (1, 4, 5))
    # target o + h, one period (4) back; h = 5 needs two periods back
    np.testing.assert_array_equal(s[:, :, 0], [[2, 5, 2], [6, 9, 6]])
    with pytest.raises(ValueError, match="origins"):
        SeasonalNaive(4).point(x, np.array([1]), (1,))
    with pytest.raises(ValueError, match="horizons"):
        Persistence().point(x, o, (0,))


def test_ridge_recovers_ar_with_time_of_day():
    rng = np.random.default_rng(1)
    spd, n = 24, 24 * 60
    x = np.zeros((n, 1))
    for t in range(1, n):
        x[t] = 0.7 * x[t - 1] + np.sin(2 * np.pi * t / spd) + 0.01 * rng.normal()
    tr, va, te = np.arange(10, 900), np.arange(900, 1100), np.arange(1100, n - 30)
    m = RidgeAR.fit(x, tr, (1, 4), lags=3, steps_per_day=spd, val_origins=va)
    p = m.point(x, te, (1, 4))
    err1 = np.abs(p[:, 0] - x[te + 1]).mean()
    err_p = np.abs(x[te] - x[te + 1]).mean()
    assert err1 < 0.02 and err1 < 0.05 * err_p
    assert np.abs(p[:, 1] - x[te + 4]).mean() < 0.05
    with pytest.raises(ValueError, match="fitted for horizons"):
        m.point(x, te, (2,))


def test_holt_winters_recursion_equals_statsmodels():
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    rng = np.random.default_rng(2)
    t = np.arange(24 * 12)
    x = np.stack(
        [
            10 + 3 * np.sin(2 * np.pi * t / 24) + 0.01 * t + rng.normal(0, 0.3, len(t)),
            5 + np.cos(2 * np.pi * t / 24) + rng.normal(0, 0.1, len(t)),
        ],
        axis=1,
    )
    hw = HoltWinters.fit(x, 0, 24 * 8, 24)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = ExponentialSmoothing(
            x[: 24 * 8, 0],
            trend="add",
            damped_trend=True,
            seasonal="add",
            seasonal_periods=24,
            initialization_method="estimated",
        ).fit()
    fitted = hw.one_step_fitted(x[: 24 * 8])
    np.testing.assert_allclose(fitted[:, 0], res.fittedvalues, rtol=1e-8, atol=1e-8)
    # h-step forecasts from the end of the fit block equal statsmodels' forecast
    o = np.array([24 * 8 - 1])
    p = hw.point(x, o, (1, 4, 24, 30))
    np.testing.assert_allclose(p[0, :, 0], res.forecast(30)[[0, 3, 23, 29]], rtol=1e-8)
    # one-step point forecasts past the block equal the running fitted values
    o2 = np.arange(24 * 8, 24 * 11)
    np.testing.assert_allclose(
        hw.point(x, o2, (1,))[:, 0], hw.one_step_fitted(x)[o2 + 1], rtol=1e-10
    )
    with pytest.raises(ValueError, match="fit block"):
        HoltWinters.fit(x, 0, 30, 24)


def test_calibrate_is_rms_of_errors():
    x = np.cumsum(np.random.default_rng(3).normal(size=(200, 2)), axis=0)
    o = np.arange(10, 150)
    cal = calibrate(Persistence(), x, o, (1, 3))
    err = x[o + 3] - x[o]
    np.testing.assert_allclose(cal.sd[1], np.sqrt((err**2).mean(0)))
    mu, sd = cal.predict(x, np.array([160, 170]))
    assert mu.shape == sd.shape == (2, 2, 2)
    np.testing.assert_allclose(sd[1, 0], cal.sd[0])
