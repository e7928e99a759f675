"""The MCLMC / MAMS tuners' many-chain step-size phases: targets, early stop, compile-once."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import idf_jax as idf
from idf_jax._checks import ArgumentError
from idf_jax.adaptation import microcanonical as mc
from idf_jax.run.tuned import WARMUP_RULES, default_warmup

D = 20
SD = jnp.exp(jnp.linspace(-1.0, 1.0, D))


def gaussian(x):
    return 0.5 * jnp.sum((x / SD) ** 2)


def _x0(n=64):
    return jax.random.normal(jax.random.key(0), (n, D))


def _energy_errors(sampler, positions, steps=100):
    n = positions.shape[0]
    state = jax.vmap(sampler.init)(positions, jax.random.split(jax.random.key(5), n))

    def body(state, k):
        state, info = jax.vmap(sampler.step)(jax.random.split(k, n), state)
        return state, (info.energy_error, info.acceptance_rate)

    _, (ee, acc) = jax.lax.scan(body, state, jax.random.split(jax.random.key(6), steps))
    return np.asarray(ee), np.asarray(acc)


def test_mclmc_step_size_lands_near_the_published_energy_variance():
    s = idf.mclmc(gaussian, 0.25 * math.sqrt(D), math.sqrt(D))
    res = idf.adapt_run(s, jax.random.key(1), _x0(), 400, method="mclmc")
    ee, _ = _energy_errors(res.sampler, res.positions)
    # Robnik et al.: Var[dE] / d = 5e-4 (the outlier-weighted estimate lands within ~2x).
    per_dim = float(np.mean(ee**2)) / D
    assert 1.5e-4 < per_dim < 2e-3, per_dim


@pytest.mark.slow
def test_mams_step_size_hits_the_acceptance_target_and_stops_early():
    s = idf.mams(gaussian, 0.25 * math.sqrt(D), math.sqrt(D))
    early = idf.adapt_run(s, jax.random.key(1), _x0(), 600, method="mams")
    full = idf.adapt_run(s, jax.random.key(1), _x0(), 600, method="mams", tolerance=1e-9)
    _, acc = _energy_errors(early.sampler, early.positions)
    assert abs(float(np.mean(acc)) - 0.9) < 0.05
    assert abs(float(early.acceptance_rate) - 0.9) < 0.05
    # Converged phases stop: fewer gradients than running every step of them.
    assert float(early.num_grad_evals) < 0.8 * float(full.num_grad_evals)
    ratio = float(early.params["step_size"]) / float(full.params["step_size"])
    assert 0.8 < ratio < 1.25


def test_mclmc_stops_early_and_tuners_compile_once():
    s = idf.mclmc(gaussian, 0.25 * math.sqrt(D), math.sqrt(D))
    early = idf.adapt_run(s, jax.random.key(1), _x0(16), 200, method="mclmc")
    full = idf.adapt_run(s, jax.random.key(1), _x0(16), 200, method="mclmc", tolerance=1e-9)
    assert float(early.num_grad_evals) < float(full.num_grad_evals)
    before = mc._mclmc_jit._cache_size()
    # Other step sizes, L, tolerance and min_steps are traced: no new compilation.
    other = idf.mclmc(gaussian, 0.7, 3.0)
    idf.adapt_run(other, jax.random.key(2), _x0(16), 200, method="mclmc", tolerance=0.05)
    idf.adapt_run(s, jax.random.key(3), _x0(16), 200, method="mclmc", min_steps=5)
    assert mc._mclmc_jit._cache_size() == before


@pytest.mark.parametrize("kwargs", [{"tolerance": 0.0}, {"min_steps": 0}, {"min_steps": 2.5}])
def test_bad_convergence_options(kwargs):
    s = idf.mams(gaussian, 0.5, 2.0)
    with pytest.raises(ArgumentError) as e:
        idf.adapt(s, jax.random.key(0), _x0(8), 40, method="mams", **kwargs)
    assert e.value.argument == next(iter(kwargs))


def test_default_warmup_is_proportional_and_clipped():
    frac, lo, hi = WARMUP_RULES["microcanonical"]
    assert default_warmup("mams", 4000) == round(frac * 4000)
    assert default_warmup("auto", 10) == lo and default_warmup("mclmc", 10**7) == hi
    assert default_warmup("nuts", 10) == WARMUP_RULES["window"][1]
    with pytest.raises(ArgumentError) as e:
        default_warmup("metropolis", 100)
    assert e.value.argument == "method"
    with pytest.raises(ArgumentError) as e:
        default_warmup("mams", 0)
    assert e.value.argument == "num_steps"


@pytest.mark.slow
def test_sample_tuned_warmup_follows_the_run():
    x0 = _x0(16)
    short = idf.sample_tuned(gaussian, jax.random.key(1), x0, 200)
    fixed = idf.sample_tuned(gaussian, jax.random.key(1), x0, 200, num_warmup=1000)
    assert float(short.stats["tuning_grad_evals"][0]) < float(fixed.stats["tuning_grad_evals"][0])
    z = np.asarray(short.positions) / np.asarray(SD)[None, None]
    np.testing.assert_allclose(np.mean(z**2), 1.0, atol=0.1)
