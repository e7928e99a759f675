"""Market capsule: portfolio minimum vs scipy QP, Boltzmann sampling vs the exact Gaussian,
differentiable GBM / OU simulation and calibration."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize

import capsules
import idf_jax as idf
from capsules import market as mk


def problem(n=6, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, n))
    cov = a @ a.T / n * 0.04 + 0.01 * np.eye(n)
    mu = rng.uniform(0.02, 0.15, n)
    return mu, cov


def scipy_qp(mu, cov, gamma, long_only):
    n = len(mu)
    res = minimize(
        lambda w: 0.5 * gamma * w @ cov @ w - mu @ w,
        np.ones(n) / n,
        jac=lambda w: gamma * cov @ w - mu,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * n if long_only else None,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones(n)}],
        options={"ftol": 1e-15, "maxiter": 1000},
    )
    assert res.success
    return res.x


def test_registered():
    assert "market.portfolio" in capsules.available()


@pytest.mark.parametrize("long_only", [True, False])
@pytest.mark.parametrize("gamma", [1.0, 5.0])
def test_minimum_matches_scipy_qp(long_only, gamma):
    mu, cov = problem()
    w = np.asarray(mk.optimal_portfolio(mu, cov, gamma, long_only=long_only))
    ref = scipy_qp(mu, cov, gamma, long_only)
    np.testing.assert_allclose(w, ref, atol=1e-4)
    np.testing.assert_allclose(w.sum(), 1.0, atol=1e-5)
    if long_only:
        assert w.min() >= 0.0
    if not long_only:  # closed form: w = Sigma^-1 (mu + eta 1) / gamma with sum w = 1
        ci = np.linalg.inv(cov)
        one = np.ones(len(mu))
        eta = (gamma - one @ ci @ mu) / (one @ ci @ one)
        np.testing.assert_allclose(w, ci @ (mu + eta * one) / gamma, atol=1e-4)


def test_capsule_energy_project_decode():
    mu, cov = problem(4)
    cap = mk.portfolio(mu, cov, 2.0, names=["a", "b", "c", "d"])
    to_w = cap.params["to_weights"]
    z = cap.init(jax.random.key(0), 8)
    w = jax.vmap(to_w)(z)
    np.testing.assert_allclose(np.asarray(w.sum(1)), 1.0, atol=1e-5)
    assert float(w.min()) >= -1e-6
    e = jax.jit(jax.vmap(cap.energy_fn))(z)
    ref = [0.5 * 2.0 * wi @ cov @ wi - mu @ wi for wi in np.asarray(w, np.float64)]
    np.testing.assert_allclose(np.asarray(e), ref, rtol=1e-4, atol=1e-6)
    g = jax.vmap(jax.grad(cap.energy_fn))(z)
    assert bool(jnp.all(jnp.isfinite(g)))
    # outside the simplex: a hard wall; project brings it back onto the simplex exactly
    B = cap.params["basis"]
    zo = B.T @ (np.array([1.5, -0.5, 0.0, 0.0]) - 0.25)  # w = (1.5, -0.5, 0, 0): sums to 1
    assert float(cap.energy_fn(jnp.asarray(zo, jnp.float32))) == np.inf
    wp = np.asarray(to_w(cap.project(jnp.asarray(zo, jnp.float32))))
    np.testing.assert_allclose(wp, [1.0, 0.0, 0.0, 0.0], atol=1e-5)
    dec = cap.decode(z[0])
    assert set(dec["weights"]) == {"a", "b", "c", "d"}
    np.testing.assert_allclose(sum(dec["weights"].values()), 1.0, atol=1e-5)


def test_boltzmann_samples_match_exact_gaussian():
    """Unconstrained budget plane: p(z) is Gaussian with precision B^T gamma Sigma B / T."""
    mu, cov = problem(3, seed=1)
    gamma, temp = 2.0, 2e-3
    cap = mk.portfolio(mu, cov, gamma, long_only=False)
    B = cap.params["basis"]
    prec = B.T @ (gamma * cov) @ B / temp
    cov_z = np.linalg.inv(prec)
    w_star = np.asarray(mk.optimal_portfolio(mu, cov, gamma, long_only=False), np.float64)
    z_star = B.T @ (w_star - 1.0 / 3)
    step = 1.0 / np.linalg.eigvalsh(prec * temp).max()  # eta ~ 1 / curvature of E
    sampler = idf.mala(cap.energy_fn, step_size=step, temperature=temp)
    chains, steps = 16, 1500
    x0 = jnp.asarray(np.tile(z_star, (chains, 1)), jnp.float32)
    tr = idf.sample(sampler, jax.random.key(4), x0, steps, burn_in=300, thin=4)
    zs = np.asarray(tr.positions, np.float64).reshape(-1, 2)
    ess = float(np.min(np.asarray(idf.ess(tr.positions))))
    assert ess > 500  # the chains mix, so the tolerances below are tight
    se = np.sqrt(np.diag(cov_z) / ess)
    np.testing.assert_allclose(zs.mean(0), z_star, atol=5 * se.max())
    # sample covariance: relative SE ~ sqrt(2 / ess)
    np.testing.assert_allclose(np.diag(np.cov(zs.T)), np.diag(cov_z), rtol=5 * np.sqrt(2 / ess))
    assert float(np.mean(tr.stats["acceptance_rate"])) > 0.5


def test_long_only_samples_stay_on_simplex_and_concentrate():
    mu, cov = problem(4, seed=2)
    cap = mk.portfolio(mu, cov, 3.0)
    w_star = np.asarray(mk.optimal_portfolio(mu, cov, 3.0))
    B = cap.params["basis"]
    temp = 1e-4
    step = 0.5 / np.linalg.eigvalsh(3.0 * B.T @ cov @ B).max()  # eta ~ 1 / curvature of E
    sampler = idf.mala(cap.energy_fn, step_size=step, temperature=temp)
    tr = idf.sample(sampler, jax.random.key(5), cap.init(jax.random.key(6), 8), 1500, burn_in=500)
    w = np.asarray(jax.vmap(jax.vmap(cap.params["to_weights"]))(tr.positions))
    assert w.min() >= 0.0
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
    # at T = 1e-4 the Boltzmann mean sits near the minimiser (the spread is ~ sqrt(T / curvature))
    assert np.abs(w.reshape(-1, 4).mean(0) - w_star).max() < 0.1


@pytest.mark.parametrize(
    "args, match",
    [
        (([0.1], [[1.0]], 1.0), "mu"),
        (([0.1, 0.2], [[1.0, 0.0]], 1.0), "cov"),
        (([0.1, 0.2], [[1.0, 0.5], [0.4, 1.0]], 1.0), "symmetric"),
        (([0.1, 0.2], [[1.0, 2.0], [2.0, 1.0]], 1.0), "semi-definite"),
        (([0.1, 0.2], [[1.0, 0.0], [0.0, 1.0]], -1.0), "risk_aversion"),
        (([0.1, np.nan], [[1.0, 0.0], [0.0, 1.0]], 1.0), "finite"),
    ],
)
def test_bad_portfolio_inputs(args, match):
    with pytest.raises(ValueError, match=match):
        mk.portfolio(*args)


def test_gbm_ou_paths_moments_and_gradients():
    dt = 1.0 / 252
    s = mk.gbm_paths(jax.random.key(0), 100.0, 0.1, 0.3, dt, 252, num_paths=400)
    assert s.shape == (400, 253) and float(s.min()) > 0
    # log S_1 ~ N(log 100 + (mu - sigma^2/2), sigma^2): 400 paths, 5 SE tolerance
    l1 = np.log(np.asarray(s[:, -1]) / 100.0)
    np.testing.assert_allclose(l1.mean(), 0.1 - 0.045, atol=5 * 0.3 / 20)
    np.testing.assert_allclose(l1.std(), 0.3, rtol=5 / np.sqrt(2 * 400))
    x = mk.ou_paths(jax.random.key(1), 0.0, 2.0, 1.0, 0.4, 0.05, 100, num_paths=400)
    # E X_t = m (1 - e^{-theta t}); Euler with 4 substeps has mean factor (1 - theta dt/4)^(4k)
    t = 5.0
    mean_t = 1.0 - (1 - 2.0 * 0.05 / 4) ** (4 * 100)
    var_inf = 0.4**2 / (2 * 2.0)
    np.testing.assert_allclose(float(x[:, -1].mean()), mean_t, atol=5 * np.sqrt(var_inf / 400))
    assert abs(mean_t - (1 - np.exp(-2.0 * t))) < 1e-3
    # differentiable in the parameters (forward mode through diffrax)
    g = jax.jacfwd(
        lambda th: jnp.mean(
            mk.ou_paths(jax.random.key(2), 0.0, th, 1.0, 0.4, 0.05, 20, num_paths=4)[:, -1]
        )
    )(2.0)
    assert np.isfinite(float(g)) and float(g) > 0  # faster reversion -> closer to m = 1


@pytest.mark.slow
def test_gbm_calibration_recovers_parameters():
    dt, n = 1.0 / 252, 504
    mu, sigma = 0.1, 0.3
    obs = np.asarray(mk.gbm_paths(jax.random.key(10), 50.0, mu, sigma, dt, n)[0])
    res = mk.calibrate_gbm(obs, dt, key=jax.random.key(11), num_paths=4, num_iters=80, lr=0.1)
    assert res.loss_history[-1] < 1e-3 * res.loss_history[0]
    # statistical tolerance of the data (n returns): SE(sigma) = sigma / sqrt(2n),
    # SE(mu) = sigma / sqrt(n dt); 4 SE, plus the simulation noise of 4 paths (same order / 2)
    tol_sigma = 4 * sigma / np.sqrt(2 * n) * 1.5
    tol_mu = 4 * sigma / np.sqrt(n * dt) * 1.5
    assert abs(res.params["sigma"] - sigma) < tol_sigma
    assert abs(res.params["mu"] - mu) < tol_mu
    # and it agrees with the direct moment estimator on the same data
    r = np.diff(np.log(obs))
    assert abs(res.params["sigma"] - r.std() / np.sqrt(dt)) < 2 * sigma / np.sqrt(2 * n)


@pytest.mark.slow
def test_ou_calibration_recovers_parameters():
    theta, m, sig, dt, n = 4.0, 1.0, 0.5, 0.02, 2000
    rng = np.random.default_rng(0)
    a = np.exp(-theta * dt)
    sd = sig * np.sqrt((1 - a * a) / (2 * theta))
    x = np.empty(n + 1)
    x[0] = 0.0
    for i in range(n):  # exact OU transition, not the simulator's Euler scheme
        x[i + 1] = m + (x[i] - m) * a + sd * rng.normal()
    res = mk.calibrate_ou(
        x, dt, key=jax.random.key(3), num_paths=8, num_iters=150, lr=0.1, substeps=2
    )
    T = n * dt
    # asymptotic SEs of OU estimators: theta sqrt(2 theta / T), m sig / (theta sqrt T),
    # sigma sig / sqrt(2 n); 3 SE plus the Euler bias (theta dt / 2 ~ 4%) for theta
    assert abs(res.params["theta"] - theta) < 3 * np.sqrt(2 * theta / T) + 0.04 * theta
    assert abs(res.params["mean"] - m) < 3 * sig / (theta * np.sqrt(T))
    assert abs(res.params["sigma"] - sig) < 3 * sig / np.sqrt(2 * n) + 0.04 * sig


def test_bad_dynamics_inputs():
    with pytest.raises(ValueError, match="num_steps"):
        mk.gbm_paths(jax.random.key(0), 1.0, 0.1, 0.2, 0.01, 0)
    with pytest.raises(ValueError, match="dt"):
        mk.ou_paths(jax.random.key(0), 0.0, 1.0, 0.0, 1.0, -0.1, 10)
    with pytest.raises(ValueError, match="prices must be > 0"):
        mk.calibrate_gbm(np.linspace(-1, 1, 20), 0.01, key=jax.random.key(0))
    with pytest.raises(ValueError, match="non-finite"):
        mk.calibrate_ou(np.r_[np.zeros(20), np.nan], 0.01, key=jax.random.key(0))


def test_gbm_calibration_small_runs_and_descends():
    dt = 1.0 / 252
    obs = np.asarray(mk.gbm_paths(jax.random.key(7), 10.0, 0.05, 0.2, dt, 60)[0])
    res = mk.calibrate_gbm(obs, dt, key=jax.random.key(8), num_paths=2, num_iters=25, lr=0.1)
    assert res.loss_history[-1] < 0.1 * res.loss_history[0]
    assert np.isfinite(res.params["mu"]) and res.params["sigma"] > 0
