"""idf.adapt(..., method=...): MCLMC, MAMS, ChEES and MEADS warm-ups, jit / vmap, errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import idf_jax as idf
from idf_jax._checks import ArgumentError
from idf_jax.adaptation._common import ess_per_dim
from tests.helpers import assert_within

SD = jnp.array([0.1, 0.5, 2.0, 1.0])


def ill_conditioned(x):
    return 0.5 * jnp.sum((x / SD) ** 2)


def _x0(n=16):
    return jax.random.normal(jax.random.key(0), (n, 4))


def _check_draws(sampler, positions, num=400):
    tr = idf.sample(sampler, jax.random.key(7), positions, num)
    z = np.asarray(tr.positions) / np.asarray(SD)[None, None]
    assert_within(z**2, np.ones(4), z=6.0, what="E (x / sd)^2")
    return tr


def test_mclmc_tuner_preconditions_and_targets_energy_variance():
    d = 4
    s = idf.mclmc(ill_conditioned, 0.25 * math.sqrt(d), math.sqrt(d))
    res = idf.adapt_run(s, jax.random.key(1), _x0(), 400, method="mclmc")
    ratio = np.asarray(res.params["inverse_mass"]) / np.asarray(SD) ** 2
    np.testing.assert_allclose(ratio, 1.0, atol=0.35)
    assert 0.3 < float(res.params["step_size"]) < 10.0
    assert 0.1 < float(res.params["L"]) < 20.0
    assert float(res.num_grad_evals) > 16 * 400  # two gradients per step, every chain
    tr = _check_draws(res.sampler, res.positions)
    # The tuned step keeps the energy-error variance per dimension near 5e-4.
    ee = float(jnp.mean(tr.stats["mean_abs_energy_error"]))
    assert ee < 0.2


def test_mams_tuner_hits_target_acceptance():
    d = 4
    s = idf.mams(ill_conditioned, 0.25 * math.sqrt(d), math.sqrt(d))
    res = idf.adapt_run(s, jax.random.key(1), _x0(), 400, method="mams")
    assert float(res.target_acceptance) == pytest.approx(0.9)
    assert abs(float(res.acceptance_rate) - 0.9) < 0.1
    assert float(res.params["L"]) > float(res.params["step_size"])
    tr = _check_draws(res.sampler, res.positions)
    assert abs(float(tr.stats["acceptance_rate"].mean()) - 0.9) < 0.1


def test_chees_tunes_trajectory_length():
    sd = jnp.array([0.5, 1.0, 1.5, 2.0])

    def energy(x):
        return 0.5 * jnp.sum((x / sd) ** 2)

    res = idf.adapt_run(
        idf.dynamic_hmc(energy, 0.1, 0.1), jax.random.key(1), _x0(32), 300, method="chees"
    )
    assert float(res.target_acceptance) == pytest.approx(0.651)
    # ChEES' optimum is about a half period of the widest direction, ~ pi/2 * 2.
    assert 1.0 < float(res.params["trajectory_length"]) < 8.0
    assert float(res.params["step_size"]) > 0.2
    tr = idf.sample(res.sampler, jax.random.key(2), res.positions, 300)
    z = np.asarray(tr.positions) / np.asarray(sd)[None, None]
    assert_within(z**2, np.ones(4), z=6.0, what="E (x / sd)^2")


@pytest.mark.slow
def test_meads_tunes_ghmc():
    res = idf.adapt_run(
        idf.ghmc(ill_conditioned, 0.1), jax.random.key(1), _x0(32), 300, method="meads"
    )
    ratio = np.asarray(res.params["inverse_mass"]) / np.asarray(SD) ** 2
    np.testing.assert_allclose(ratio, 1.0, atol=0.6)
    assert 0 < float(res.params["alpha"]) <= 1.0
    assert float(res.params["delta"]) == pytest.approx(0.5 * float(res.params["alpha"]))
    _check_draws(res.sampler, res.positions, 800)


def test_window_keeps_its_api_and_reports_cost():
    sampler, params = idf.adapt(idf.hmc(ill_conditioned, 0.1, 5), jax.random.key(1), _x0(), 100)
    assert set(params) == {"step_size", "inverse_mass"}
    res = idf.adapt_run(
        idf.hmc(ill_conditioned, 0.1, 5), jax.random.key(1), _x0(), 100, initial_step_size=0.1
    )
    assert float(res.num_grad_evals) == 16 * 100 * 5


@pytest.mark.slow
def test_mams_adapt_under_jit_and_vmap():
    s = idf.mams(ill_conditioned, 0.5, 2.0)

    def tuned_step(key):
        return idf.adapt_run(s, key, _x0(8), 40, method="mams").params["step_size"]

    one = jax.jit(tuned_step)(jax.random.key(3))
    many = jax.vmap(tuned_step)(jax.random.split(jax.random.key(3), 2))
    assert np.isfinite(float(one)) and many.shape == (2,) and np.all(np.isfinite(np.asarray(many)))


@pytest.mark.slow
def test_mclmc_adapt_under_vmap_over_targets():
    def run(scale):
        def energy(x):
            return 0.5 * jnp.sum((x / scale) ** 2)

        s = idf.mclmc(energy, 0.5, 2.0)
        return idf.adapt_run(s, jax.random.key(0), _x0(8), 60, method="mclmc").params["L"]

    out = jax.vmap(run)(jnp.array([1.0, 3.0]))
    assert out.shape == (2,) and float(out[1]) > float(out[0])


def test_traced_ess_matches_numpy():
    x = jax.random.normal(jax.random.key(0), (4, 500, 2))
    ours = np.asarray(ess_per_dim(x))
    ref = np.asarray(idf.ess(np.asarray(x)))
    np.testing.assert_allclose(ours, ref, rtol=0.25)


def test_bad_method_and_samplers():
    x0 = _x0()
    with pytest.raises(ArgumentError) as e:
        idf.adapt(idf.mams(ill_conditioned, 0.1, 1.0), jax.random.key(0), x0, 100, method="nope")
    assert e.value.argument == "method"
    with pytest.raises(ArgumentError) as e:
        idf.adapt(idf.hmc(ill_conditioned, 0.1, 3), jax.random.key(0), x0, 100, method="mams")
    assert e.value.argument == "sampler"
    with pytest.raises(ArgumentError) as e:
        idf.adapt(idf.mclmc(ill_conditioned, 0.1, 1.0), jax.random.key(0), x0, 5, method="mclmc")
    assert e.value.argument == "num_steps"
    with pytest.raises(ArgumentError) as e:
        idf.adapt(idf.ghmc(ill_conditioned, 0.1), jax.random.key(0), x0[:6], 50, method="meads")
    assert e.value.argument == "num_folds"
    with pytest.raises(ArgumentError) as e:
        idf.adapt(
            idf.mams(ill_conditioned, 0.1, 1.0), jax.random.key(0), x0, 50, 1.5, method="mams"
        )
    assert e.value.argument == "target_acceptance"
    with pytest.raises(ArgumentError) as e:
        idf.dynamic_hmc(ill_conditioned, 0.1, 0.0)
    assert e.value.argument == "trajectory_length"


def test_window_dense_learns_the_covariance():
    cov = jnp.array([[1.0, 0.95, 0.0], [0.95, 1.0, 0.0], [0.0, 0.0, 4.0]])
    prec = jnp.linalg.inv(cov)

    def energy(x):
        return 0.5 * x @ prec @ x

    x0 = jax.random.normal(jax.random.key(0), (32, 3))
    res = idf.adapt_run(idf.hmc(energy, 0.1, 5), jax.random.key(1), x0, 300, method="window_dense")
    m = np.asarray(res.params["inverse_mass"])
    assert m.shape == (3, 3)
    np.testing.assert_allclose(m, np.asarray(cov), atol=0.4)
    tr = idf.sample(res.sampler, jax.random.key(2), res.positions, 400)
    flat = np.asarray(tr.positions, np.float64).reshape(-1, 3)
    np.testing.assert_allclose(np.cov(flat.T), np.asarray(cov), atol=0.3)
    with pytest.raises(ArgumentError) as e:
        idf.adapt(idf.mala(energy, 0.1), jax.random.key(1), x0, 50, method="window_dense")
    assert e.value.argument == "dense_mass"
    with pytest.raises(ArgumentError) as e:
        idf.hmc(energy, 0.1, 5, inverse_mass=jnp.array([[1.0, 2.0], [2.0, -1.0]]))
    assert e.value.argument == "inverse_mass"


@pytest.mark.slow
def test_chees_and_meads_under_jit_and_vmap():
    def chees_step(key):
        s = idf.dynamic_hmc(ill_conditioned, 0.05, 0.05)
        return idf.adapt_run(s, key, _x0(8), 30, method="chees").params["trajectory_length"]

    def meads_alpha(key):
        s = idf.ghmc(ill_conditioned, 0.05)
        return idf.adapt_run(s, key, _x0(8), 30, method="meads", num_folds=2).params["alpha"]

    for fn in (chees_step, meads_alpha):
        one = jax.jit(fn)(jax.random.key(0))
        many = jax.vmap(fn)(jax.random.split(jax.random.key(0), 2))
        assert np.isfinite(float(one)) and np.all(np.isfinite(np.asarray(many)))
