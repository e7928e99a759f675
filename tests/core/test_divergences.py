"""Divergences, honestly: a divergent proposal is a counted rejection, never a frozen chain."""

import jax
import jax.numpy as jnp
import numpy as np
from helpers import assert_within

import idf_jax as idf

A = 3.0  # Gamma(A, 1): mean A, variance A


def gamma_energy(x):
    # E = x - (A - 1) log x: the log of a negative number is NaN, a common modelling
    # accident (a scale parameter proposed below zero). The exact mean is A.
    return jnp.sum(x - (A - 1.0) * jnp.log(x))


def test_nan_region_is_a_rejection_and_the_mean_is_exact(key):
    x0 = jnp.full((256, 1), 2.0)
    tr = idf.sample(idf.mala(gamma_energy, 0.4), key, x0, 1500, burn_in=300, thin=2)
    assert not np.any(np.asarray(tr.stats["frozen"]))
    assert int(np.sum(np.asarray(tr.stats["num_divergent"]))) > 0  # proposals into x < 0
    assert np.all(np.asarray(tr.positions) > 0)
    assert_within(np.asarray(tr.positions), [A], z=5.0, what="Gamma mean")
    # per-draw divergences agree with the per-chain counts
    div = np.asarray(tr.divergences)
    assert div.shape == tr.energies.shape
    assert div.sum() <= int(np.sum(np.asarray(tr.stats["num_divergent"])))


def test_nan_start_freezes_only_that_chain_and_records_nan(key):
    x0 = jnp.full((6, 1), 2.0).at[2].set(-1.0)  # E(-1) is NaN: this chain cannot move
    tr = idf.sample(idf.mala(gamma_energy, 0.4), key, x0, 60)
    frozen = np.asarray(tr.stats["frozen"])
    assert frozen.tolist() == [False, False, True, False, False, False]
    pos = np.asarray(tr.positions)
    assert np.all(np.isnan(pos[2])) and np.all(np.isnan(np.asarray(tr.energies)[2]))
    assert np.all(np.isfinite(pos[~frozen]))
    s = idf.summary(tr, print_table=False)
    assert s["frozen_chains"] == 1 and s["chains"] == 5
    assert np.isfinite(s["energy"]["mean"])


def funnel(z):
    # Neal's funnel, d = 10: v ~ N(0, 3^2), x_i | v ~ N(0, e^v).
    v, x = z[0], z[1:]
    return v**2 / 18.0 + 0.5 * jnp.sum(x**2) * jnp.exp(-v) + 0.5 * (z.shape[0] - 1) * v


def test_hmc_counts_large_energy_errors_as_divergent_on_the_funnel(key):
    k1, k2 = jax.random.split(key)
    v = 3.0 * jax.random.normal(k1, (64, 1))
    x = jnp.exp(v / 2) * jax.random.normal(k2, (64, 9))
    tr = idf.sample(idf.hmc(funnel, 0.25, 8), key, jnp.concatenate([v, x], 1), 300)
    hist = np.asarray(tr.stats["energy_error_hist"]).sum(0)
    edges = np.asarray(idf.run.ENERGY_ERROR_BIN_EDGES)
    # bin k counts edges[k-1] <= |dH| < edges[k]; the last bin |dH| >= 1e4 or non-finite
    big = hist[1:][edges >= 1e3 * (1 + 1e-9)].sum()  # includes the overflow bin
    num_div = int(np.asarray(tr.stats["num_divergent"]).sum())
    assert big > 0
    assert num_div >= big  # every |dH| >= 1000 is divergent (plus the non-finite ones)
    assert not np.any(np.asarray(tr.stats["frozen"]))


def test_float64_run_keeps_its_dtype(key):
    with jax.enable_x64(True):
        x0 = jnp.zeros((8, 2), jnp.float64)
        tr = idf.sample(idf.mala(lambda x: 0.5 * jnp.sum(x**2), 0.3), key, x0, 40)
        assert tr.positions.dtype == jnp.float64 and tr.energies.dtype == jnp.float64
        x, e = idf.relax(lambda x: jnp.sum((x - 1.0) ** 2), x0, num_steps=50)
        assert x.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(x), 1.0, atol=1e-6)


def _flat_far(x):
    # 0 with a zero gradient at 0 and at +-inf: a leapfrog step that overflows to inf
    # has dH = 0 and a finite energy and gradient there
    t = jnp.tanh(x)
    return jnp.sum(t**2 * (1.0 - t**2))


def test_hmc_trajectory_overflowing_to_inf_is_a_divergent_rejection(key):
    # Before the fix the overflowed end point (E and dH finite) was accepted and every
    # chain froze at inf; now it is a counted divergence and the chains carry on.
    sampler = idf.hmc(_flat_far, 1e24, 1, inverse_mass=1e30)
    tr = idf.sample(sampler, key, jnp.zeros((4, 3)), 20)
    assert not np.any(np.asarray(tr.stats["frozen"]))
    assert np.all(np.isfinite(np.asarray(tr.positions)))
    assert np.all(np.asarray(tr.stats["num_divergent"]) > 10)
    assert np.all(np.asarray(tr.stats["acceptance_rate"]) < 0.5)
