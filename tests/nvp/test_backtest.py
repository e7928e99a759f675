"""Rolling multi-horizon backtests: the compiled rollout equals iterated predict_next,
persistence skill and CRPS are computed as defined, bad input is refused."""

import jax
import numpy as np
import pytest

from idf_jax.nvp import simulator
from idf_jax.nvp.backtest import backtest, crps_gaussian
from idf_jax.nvp.predictor import NVPPredictor


@pytest.fixture(scope="module")
def nvp():
    return NVPPredictor()


@pytest.fixture(scope="module")
def series():
    obs = simulator.simulate(simulator.rack_params(), jax.random.key(5), 200)
    x, _ = simulator.rack_telemetry(obs)
    return x


def test_rollout_is_iterated_one_step_forecast(nvp, series):
    res = backtest(nvp, series[:60], (1, 3))
    o = 40
    i = int(np.flatnonzero(res["origins"] == o)[0])
    hist = series[: o + 1].copy()
    for h in range(3):
        p = nvp.predict_array(hist)
        np.testing.assert_allclose(res["mean"][i, h], p["mean"], rtol=2e-4, atol=1e-3)
        hist = np.vstack([hist, p["mean"][None]])


def test_metrics_are_as_defined(nvp, series):
    res = backtest(nvp, series, (1, 4))
    for h in (1, 4):
        for c, m in res["metrics"][h].items():
            assert m["n"] == len(series) - 1 - (nvp.min_history - 1) - (h - 1)
            assert m["skill"] == pytest.approx(1 - m["mase"] / m["mase_persistence"])
            assert 0.0 <= m["coverage90"] <= 1.0 and m["crps"] > 0
    # on in-range simulator data the model beats persistence one step ahead on power
    assert res["metrics"][1]["power"]["skill"] > 0


def test_crps_matches_numerical_integral():
    y, mu, sd = 0.7, 0.2, 1.3
    grid = np.linspace(-15, 15, 200001)
    from scipy.stats import norm

    num = np.trapezoid((norm.cdf(grid, mu, sd) - (grid >= y)) ** 2, grid)
    assert crps_gaussian(np.array(y), np.array(mu), np.array(sd)) == pytest.approx(num, rel=1e-4)


def test_bad_input(nvp, series):
    with pytest.raises(ValueError, match="horizons"):
        backtest(nvp, series, (0,))
    with pytest.raises(ValueError, match="channel order"):
        backtest(nvp, series[:, :2])
    bad = series.copy()
    bad[10, 1] = -5.0
    with pytest.raises(ValueError, match="physical range"):
        backtest(nvp, bad)


def test_report_uses_library_metrics(nvp, series):
    from idf_jax.nvp import metrics as M

    x = series[:80]
    res = backtest(nvp, x, (1, 2))
    o = res["origins"]
    ok = o + 2 < len(x)
    y, mu, sd = x[o[ok] + 2], res["mean"][ok, 1], res["sd"][ok, 1]
    scale = np.asarray(M.naive_scale(x))
    lo, hi = M.gaussian_interval(mu, sd, 0.9)
    cov = np.asarray(M.coverage(y, lo, hi))
    crps = np.asarray(M.crps_gaussian(y, mu, sd)).mean(0)
    for j, c in enumerate(res["channels"]):
        m = res["metrics"][2][c]
        assert m["mase"] == pytest.approx(np.abs(y[:, j] - mu[:, j]).mean() / scale[j], rel=1e-4)
        assert m["coverage90"] == pytest.approx(float(cov[j]))
        assert m["crps"] == pytest.approx(float(crps[j]), rel=1e-5)


def test_calibrated_sd_scores_only_later_origins(nvp, series):
    plain = backtest(nvp, series, (1, 4))
    res = backtest(nvp, series, (1, 4), calibrate=0.5)
    o, first = res["origins"], res["scored_from"]
    assert first == o[int(round(0.5 * len(o)))]
    f = res["sd_factor"]
    assert f.shape == (4, 3) and np.all(f > 0)
    np.testing.assert_allclose(res["sd"], plain["sd"] * f[None], rtol=1e-12)
    # the factor is the 90 % quantile of |error| / sd over calibration targets before `first`
    cal = np.flatnonzero(o[: int(round(0.5 * len(o)))] + 4 <= first)
    z = np.abs(series[o[cal] + 4] - plain["mean"][cal, 3]) / plain["sd"][cal, 3]
    np.testing.assert_allclose(f[3], np.quantile(z, 0.9, axis=0) / 1.6448536269514722)
    assert res["metrics"][4]["power"]["n"] == int(np.sum((o >= first) & (o + 4 < len(series))))
    with pytest.raises(ValueError, match="calibrate"):
        backtest(nvp, series, (1,), calibrate=1.5)
