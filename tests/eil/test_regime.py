"""Regime detection: PELT against ruptures and known answers."""

import math

import numpy as np
import pytest

from idf_jax.eil.regime import default_penalty, detect_regime_shift, pelt, robust_sigma

BLUEPRINT_KEYS = {
    "current_regime",
    "stability_score",
    "transition_probability",
    "next_likely_regime",
}


def _piecewise(rng, n, cps, levels, noise=1.0):
    y = np.empty(n)
    for a, b, lv in zip([0] + cps, cps + [n], levels):
        y[a:b] = lv
    return y + noise * rng.normal(size=n)


def test_known_change_points():
    rng = np.random.default_rng(1)
    y = _piecewise(rng, 300, [100, 200], [0.0, 5.0, 1.0])
    bk = pelt(y)
    assert len(bk) == 3 and abs(bk[0] - 100) <= 3 and abs(bk[1] - 200) <= 3 and bk[2] == 300


def test_no_change_on_pure_noise():
    rng = np.random.default_rng(2)
    assert pelt(rng.normal(size=500)) == [500]


@pytest.mark.parametrize("cost", ["l2", "normal"])
def test_matches_ruptures_exactly(cost):
    """Same cost, penalty and min_size, jump=1: PELT is exact, so the answers coincide."""
    rpt = pytest.importorskip("ruptures")
    import warnings

    rng = np.random.default_rng(3)
    for _ in range(3):
        n = int(rng.integers(60, 120))
        cps = sorted(int(c) for c in rng.choice(np.arange(10, n - 10), 2, replace=False))
        y = _piecewise(rng, n, cps, list(rng.normal(0, 3, 3)), noise=rng.uniform(0.5, 2))
        pen = default_penalty(y, cost)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = rpt.Pelt(model=cost, min_size=3, jump=1).fit(y).predict(pen=pen)
        assert pelt(y, pen, min_size=3, cost=cost) == ref


def test_variance_change_needs_normal_cost():
    rng = np.random.default_rng(4)
    y = np.concatenate([rng.normal(0, 1, 200), rng.normal(0, 5, 200)])
    bk = pelt(y, cost="normal", min_size=5)
    assert len(bk) == 2 and abs(bk[0] - 200) <= 10


def test_robust_sigma_recovers_noise_scale():
    rng = np.random.default_rng(5)
    y = _piecewise(rng, 20000, [5000, 12000], [0, 10, -4], noise=2.0)
    # MAD of differences: relative s.e. ~ 1.1/sqrt(n) -> 3 % is > 3 s.e.
    assert robust_sigma(y) == pytest.approx(2.0, rel=0.03)


def test_detect_regime_shift_contract():
    rng = np.random.default_rng(6)
    y = _piecewise(rng, 300, [100, 200], [10.0, 20.0, 10.0], noise=0.5)
    r = detect_regime_shift(y)
    assert BLUEPRINT_KEYS <= set(r)
    assert r["change_points"] == [100, 200]
    assert r["current_regime"] == "low"
    assert r["next_likely_regime"] == "high"  # the observed successor of 'low'
    assert 0 < r["stability_score"] <= 1
    # hazard (k+1)/(n+2) with k=2, n=300
    assert r["transition_probability"] == pytest.approx(3 / 302)
    assert r["num_regimes"] == 3


def test_stability_lower_for_volatile_series():
    rng = np.random.default_rng(7)
    calm = rng.normal(0, 1, 400)
    volatile = calm * np.repeat(np.tile([0.2, 5.0], 4), 50)
    assert (
        detect_regime_shift(calm)["stability_score"]
        > detect_regime_shift(volatile)["stability_score"]
    )


def test_single_regime_trend_direction():
    y = np.linspace(0, 1, 50) + 0.001 * np.random.default_rng(8).normal(size=50)
    r = detect_regime_shift(y, penalty=1e9)
    assert r["current_regime"] == "normal" and r["next_likely_regime"] == "high"


@pytest.mark.parametrize("bad", [np.ones((3, 3)), [1.0], [1.0, np.nan, 2.0]])
def test_bad_input(bad):
    with pytest.raises(ValueError):
        detect_regime_shift(bad)


def test_bad_arguments():
    y = np.arange(20.0)
    with pytest.raises(ValueError, match="cost"):
        pelt(y, cost="rbf")
    with pytest.raises(ValueError, match="penalty"):
        pelt(y, penalty=-1.0)
    with pytest.raises(ValueError, match="min_size"):
        pelt(y, min_size=0)


def _ar1(rng, n, phi, scale=1.0):
    e = rng.normal(size=n) * scale
    y = np.zeros(n)
    for i in range(1, n):
        y[i] = phi * y[i - 1] + e[i]
    return y


@pytest.mark.parametrize("phi", [0.5, 0.95])
def test_ar1_cost_sees_no_regimes_in_autocorrelated_noise(phi):
    y = _ar1(np.random.default_rng(11), 1500, phi)
    assert pelt(y, cost="ar1", min_size=8) == [1500]


def test_ar1_cost_finds_variance_and_level_shifts():
    rng = np.random.default_rng(12)
    var = np.concatenate([rng.normal(size=600), 2.0 * rng.normal(size=600)])
    (cp,) = pelt(var, cost="ar1", min_size=8)[:-1]
    assert abs(cp - 600) <= 25
    lvl = np.concatenate([_ar1(rng, 600, 0.8), _ar1(rng, 600, 0.8) + 2.5])
    (cp,) = pelt(lvl, cost="ar1", min_size=8)[:-1]
    assert abs(cp - 600) <= 10


def test_heavy_tailed_stationary_noise_is_one_regime():
    y = np.random.default_rng(13).standard_t(3, size=1200)
    assert pelt(y, cost="ar1", min_size=8) == [1200]
    assert pelt(y, cost="normal", min_size=8) == [1200]


def test_a_normal_simulator_week_is_one_or_two_regimes():
    import jax

    from idf_jax.nvp import simulator as sim

    for day, seed in ((7, 1), (190, 2)):
        obs = sim.simulate(sim.make_params(start_hour=24.0 * day), jax.random.key(seed), 672)
        e = np.asarray(obs["power"], np.float64) * 900.0
        assert detect_regime_shift(e)["num_regimes"] <= 2


def test_penalty_rules():
    y = np.random.default_rng(14).normal(size=400)
    n = math.log(400)
    assert default_penalty(y, "normal", "bic") == pytest.approx(3 * n)
    assert default_penalty(y, "ar1", "mbic") == pytest.approx(5 * n)
    with pytest.raises(ValueError, match="penalty rule"):
        pelt(y, penalty="aic")
    with pytest.raises(ValueError, match="at least 4"):
        pelt(y, cost="ar1", min_size=2)


def test_ar1_segmentation_does_not_depend_on_units():
    rng = np.random.default_rng(15)
    y = np.r_[np.full(60, 5.0), np.full(60, 8.0)] + rng.normal(0, 0.5, 120)
    ref = pelt(y, cost="ar1", min_size=8)
    for scale in (1e-3, 60.0, 1e6):
        assert pelt(scale * y + 17.0, cost="ar1", min_size=8) == ref
