"""The benchmark posteriors (benchmarks/posteriors): energies, exact moments, references, b^2."""

import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import log_expit

ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.posteriors import (  # noqa: E402
    TARGET_NAMES,
    b2_curves,
    b2_of_samples,
    cost_to_threshold,
    get_target,
    load_reference,
)
from benchmarks.posteriors.targets import (  # noqa: E402
    EIGHT_SCHOOLS_SIGMA,
    EIGHT_SCHOOLS_Y,
    IRT_ITEMS,
    IRT_LOG_A_SD,
    IRT_PERSONS,
    irt_responses,
)

EXACT = ("gaussian_k100", "gaussian_k10000", "banana", "funnel")
REFERENCED = ("logistic_breast_cancer", "eight_schools_noncentered", "irt_2pl")


@pytest.mark.parametrize("name", TARGET_NAMES)
def test_energy_and_gradient_finite_float32(name, key):
    t = get_target(name)
    x = t.init(key, 16, jnp.float32)
    assert x.shape == (16, t.dim) and x.dtype == jnp.float32
    e, g = jax.vmap(jax.value_and_grad(t.energy))(x)
    assert e.dtype == jnp.float32 and g.dtype == jnp.float32
    assert np.all(np.isfinite(e)) and np.all(np.isfinite(g))
    for arr in (t.mean, t.second_moment, t.var_second_moment, t.second_moment_se):
        assert arr.shape == (t.dim,) and np.all(np.isfinite(arr))
    assert np.all(t.var_second_moment > 0) and np.all(t.second_moment > 0)


@pytest.mark.parametrize("name", TARGET_NAMES)
def test_float64_clean(name, key):
    t = get_target(name)
    with jax.enable_x64(True):
        x = t.init(key, 4, jnp.float64)
        e, g = jax.vmap(jax.value_and_grad(t.energy))(x)
        assert x.dtype == e.dtype == g.dtype == jnp.float64
        e32 = jax.vmap(t.energy)(x.astype(jnp.float32))
        assert e32.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(e32), np.asarray(e), rtol=1e-4, atol=1e-3)


def _logpdf_gap(t, x, logpdf):
    """energy(x) - energy(x0) against -(log p(x) - log p(x0)) from an independent formula."""
    with jax.enable_x64(True):
        e = np.asarray(jax.vmap(t.energy)(jnp.asarray(x, jnp.float64)))
    lp = logpdf(x)
    np.testing.assert_allclose(e - e[0], -(lp - lp[0]), rtol=1e-8, atol=1e-7)


def test_energies_match_independent_log_densities():
    rng = np.random.default_rng(0)
    for name in ("gaussian_k100", "gaussian_k10000"):
        t = get_target(name)
        assert t.sample is not None
        with jax.enable_x64(True):
            x = np.asarray(t.sample(jax.random.key(1), 5))
        # The energy's Hessian is the precision: the covariance has the stated condition
        # number, its diagonal is E[x^2], and it is not axis-aligned (rotated).
        with jax.enable_x64(True):
            h = np.asarray(jax.hessian(t.energy)(jnp.zeros(t.dim, jnp.float64)))
        cov = np.linalg.inv(h)
        ev = np.sort(np.linalg.eigvalsh(cov))
        kappa = float(name.removeprefix("gaussian_k"))
        np.testing.assert_allclose(ev[-1] / ev[0], kappa, rtol=1e-6)
        np.testing.assert_allclose(np.diag(cov), t.second_moment, rtol=1e-8)
        assert np.abs(cov - np.diag(np.diag(cov))).max() > 0.1 * np.diag(cov).mean()
        prec = np.linalg.inv(cov)
        _logpdf_gap(t, x, lambda z: -0.5 * np.einsum("ni,ij,nj->n", z, prec, z))
    banana = get_target("banana")
    z = rng.normal(size=(6, 2)) * [10.0, 3.0]
    _logpdf_gap(
        banana,
        z,
        lambda z: (
            stats.norm.logpdf(z[:, 0], 0, 10)
            + stats.norm.logpdf(z[:, 1], 0.03 * (z[:, 0] ** 2 - 100), 1)
        ),
    )
    funnel = get_target("funnel")
    z = rng.normal(size=(6, 10))
    _logpdf_gap(
        funnel,
        z,
        lambda z: (
            stats.norm.logpdf(z[:, 0], 0, 3)
            + stats.norm.logpdf(z[:, 1:], 0, np.exp(z[:, :1] / 2)).sum(1)
        ),
    )
    schools = get_target("eight_schools_noncentered")
    z = rng.normal(size=(6, 10))

    def schools_logpdf(z):
        mu, log_tau, eta = z[:, 0], z[:, 1], z[:, 2:]
        tau = np.exp(log_tau)
        lp = stats.norm.logpdf(mu, 0, 5) + stats.halfcauchy.logpdf(tau, 0, 5) + log_tau
        lp = lp + stats.norm.logpdf(eta).sum(1)
        theta = mu[:, None] + tau[:, None] * eta
        return lp + stats.norm.logpdf(EIGHT_SCHOOLS_Y, theta, EIGHT_SCHOOLS_SIGMA).sum(1)

    _logpdf_gap(schools, z, schools_logpdf)
    irt = get_target("irt_2pl")
    z = rng.normal(size=(6, IRT_PERSONS + 2 * IRT_ITEMS))
    y = irt_responses()

    def irt_logpdf(z):
        theta, b = z[:, :IRT_PERSONS], z[:, IRT_PERSONS : IRT_PERSONS + IRT_ITEMS]
        log_a = z[:, IRT_PERSONS + IRT_ITEMS :]
        logit = np.exp(log_a)[:, None, :] * (theta[:, :, None] - b[:, None, :])
        # Bernoulli log-pmf through log-sigmoids (stable where p rounds to 0 or 1)
        lik = (y * log_expit(logit) + (1 - y) * log_expit(-logit)).sum((1, 2))
        prior = stats.norm.logpdf(theta).sum(1) + stats.norm.logpdf(b).sum(1)
        return lik + prior + stats.norm.logpdf(log_a, 0, IRT_LOG_A_SD).sum(1)

    _logpdf_gap(irt, z, irt_logpdf)


def test_irt_responses_are_fixed_and_informative():
    y = irt_responses()
    assert y.shape == (IRT_PERSONS, IRT_ITEMS) and set(np.unique(y)) == {0.0, 1.0}
    np.testing.assert_array_equal(y, irt_responses.__wrapped__())  # same seed, same data
    assert 0.2 < y.mean() < 0.8


@pytest.mark.parametrize("name", EXACT)
def test_exact_moments_agree_with_exact_draws(name):
    t = get_target(name)
    assert t.exact and t.sample is not None
    n = 200_000 if t.dim <= 10 else 40_000
    with jax.enable_x64(True):
        x = np.asarray(t.sample(jax.random.key(7), n))
    assert x.shape == (n, t.dim)
    x2 = x**2
    # E[x^2] within 5 standard errors (sd of x^2 from the stated Var[x^2]).
    se = np.sqrt(t.var_second_moment / n)
    z = np.abs(x2.mean(0) - t.second_moment) / se
    assert np.all(z < 5.0), (name, z.max())
    assert np.all(np.abs(x.mean(0) - t.mean) < 5 * np.sqrt(t.second_moment / n))
    if name != "funnel":  # funnel: x^4 has a huge variance (E x^8 ~ e^72); v checked below
        np.testing.assert_allclose(x2.var(0), t.var_second_moment, rtol=0.1)
    else:
        np.testing.assert_allclose(x2[:, 0].var(), t.var_second_moment[0], rtol=0.05)
        np.testing.assert_allclose(t.second_moment[1:], np.exp(4.5))
        assert t.second_moment[0] == 9.0


@pytest.mark.parametrize("name", REFERENCED)
def test_stored_references(name):
    ref = load_reference(name)
    t = get_target(name)
    assert not t.exact
    for k in ("mean", "second_moment", "var_second_moment", "second_moment_se", "mean_se"):
        assert ref[k].shape == (t.dim,), k
        assert np.all(np.isfinite(ref[k])), k
    assert np.all(ref["var_second_moment"] > 0)
    # The reference's own error is far below the benchmark threshold b2 = 0.01.
    assert np.max(ref["second_moment_se"] ** 2 / ref["var_second_moment"]) < 1e-4
    assert np.max(ref["rhat_second_moment"]) < 1.01
    assert int(ref["num_chains"]) >= 32 and int(ref["num_draws"]) >= 1000
    assert "make_references.py" in str(ref["command"])


def test_reference_sanity_against_simple_facts():
    ref = load_reference("eight_schools_noncentered")
    # Posterior mean of mu lies between the pooled and the raw averages (about 4.4).
    assert 3.0 < ref["mean"][0] < 6.0
    ref = load_reference("logistic_breast_cancer")
    assert ref["mean"].shape == (31,)


@pytest.mark.parametrize("name", ("gaussian_k100", "banana", "funnel"))
def test_b2_of_exact_draws_falls_below_threshold(name):
    t = get_target(name)
    assert t.sample is not None
    chains, draws = 16, 3000
    with jax.enable_x64(True):
        x = np.asarray(t.sample(jax.random.key(3), chains * draws)).reshape(chains, draws, -1)
    for per_chain in (True, False):
        b2max, b2avg = b2_of_samples(x, t.second_moment, t.var_second_moment, per_chain=per_chain)
        assert b2max.shape == b2avg.shape == (draws,)
        assert np.all(b2avg <= b2max + 1e-15)
        assert b2max[-1] < 0.01 and b2avg[-1] < 0.01, (name, per_chain, b2max[-1])
        # Independent draws: E[b2_i] = 1 / draws per chain, 1 / (chains draws) pooled.
        # The median over chains is a stable statistic (a lower bound too), except for the
        # funnel, whose x_i^2 are so heavy-tailed that their typical b2 is far smaller.
        expect = 1.0 / (draws if per_chain else chains * draws)
        assert b2avg[-1] < 5.0 * expect
        if per_chain and name != "funnel":
            assert 0.2 * expect < b2avg[-1]


def test_b2_curves_pooled_matches_samples_and_rejects_bad_shapes():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 50, 3))
    a = b2_curves((x**2).sum(0), 4, np.ones(3), 2 * np.ones(3))
    b = b2_of_samples(x, np.ones(3), 2 * np.ones(3), per_chain=False)
    np.testing.assert_allclose(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1])
    with pytest.raises(ValueError, match="steps, d"):
        b2_curves(np.ones(3), 4, np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="moments"):
        b2_of_samples(x, np.ones(2), np.ones(2))


def test_cost_to_threshold_is_first_step_after_which_it_stays_below():
    grads = np.arange(1, 7) * 10.0
    assert cost_to_threshold(np.array([1, 0.005, 0.02, 0.009, 0.001, 0.002]), grads) == 40.0
    assert cost_to_threshold(np.array([0.001] * 6), grads) == 10.0
    assert cost_to_threshold(np.array([0.001] * 5 + [0.5]), grads) is None
    assert cost_to_threshold(np.array([np.nan] * 5 + [0.001]), grads) == 60.0
    with pytest.raises(ValueError, match="same"):
        cost_to_threshold(np.ones(3), np.ones(4))


def test_unknown_target_is_named():
    with pytest.raises(ValueError, match="unknown target 'nope'"):
        get_target("nope")
