"""Moments of every sampler against exact answers, with tolerances from the ESS."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_within

import idf_jax as idf

D = 8
PREC = jnp.asarray(np.logspace(0.0, 2.0, D), jnp.float32)  # condition number 100


def gauss(x):
    return 0.5 * jnp.sum(PREC * x**2)


def run(sampler, key, steps=4000, burn=1000, thin=5, chains=64, dim=D):
    x0 = jax.random.normal(key, (chains, dim)) * 0.1
    return idf.sample(sampler, key, x0, steps, thin=thin, burn_in=burn)


def test_ula_ill_conditioned_gaussian_with_known_bias(key):
    eta = 0.004
    tr = run(idf.ula(gauss, eta), key, steps=6000, burn=1000)
    # ULA on x' = x - eta a x + sqrt(2 eta) eps: stationary variance 1 / (a (1 - a eta / 2)).
    var_exact = 1.0 / (PREC * (1.0 - PREC * eta / 2.0))
    x = np.asarray(tr.positions)
    assert_within(x, np.zeros(D), what="ula mean")
    assert_within(x**2, var_exact, what="ula variance")
    # and the bias is real: the largest-precision component is off the exact 1/a by > 5 se
    assert abs(float(np.mean(x[..., -1] ** 2)) * 100.0 - 1.0) > 0.1


@pytest.mark.parametrize(
    "name,make",
    [
        ("mala", lambda: idf.mala(gauss, 0.008)),
        ("hmc", lambda: idf.hmc(gauss, 0.1, 8)),
        ("underdamped", lambda: idf.underdamped_langevin(gauss, 0.05, friction=2.0)),
    ],
)
def test_exact_samplers_ill_conditioned_gaussian(key, name, make):
    tr = run(make(), key)
    x = np.asarray(tr.positions)
    assert_within(x, np.zeros(D), what=f"{name} mean")
    assert_within(x**2, 1.0 / np.asarray(PREC), what=f"{name} variance")
    assert not np.any(np.asarray(tr.stats["diverged"]))


def test_isotropic_gaussian_all_samplers(key):
    iso = lambda x: 0.5 * jnp.sum(x**2)
    for s in (idf.mala(iso, 0.5), idf.hmc(iso, 0.3, 5), idf.underdamped_langevin(iso, 0.3, 1.0)):
        x = np.asarray(run(s, key, steps=2000, burn=200, thin=2, dim=4).positions)
        assert_within(x**2, np.ones(4), what="isotropic variance")


def test_variance_scales_linearly_with_temperature(key):
    iso = lambda x: 0.5 * jnp.sum(x**2)
    for T in (0.25, 4.0):  # T = 1 is test_isotropic_gaussian_all_samplers
        tr = run(idf.mala(iso, 0.4 * T, temperature=T), key, steps=2000, burn=200, thin=2, dim=4)
        assert_within(np.asarray(tr.positions) ** 2, T * np.ones(4), what=f"variance at T={T}")


def _double_well(x):
    return jnp.sum(x**4 - 2.0 * x**2)


def _exact_double_well_moments(T=1.0):
    grid = np.linspace(-4, 4, 200001)
    w = np.exp(-(grid**4 - 2 * grid**2) / T)
    w /= w.sum()
    return float(np.sum(w * grid**2)), float(np.sum(w * grid**4))


@pytest.mark.parametrize(
    "make",
    [
        lambda: idf.mala(_double_well, 0.1),
        lambda: idf.hmc(_double_well, 0.1, 10),
        lambda: idf.underdamped_langevin(_double_well, 0.05, friction=1.0),
    ],
)
def test_double_well_moments_against_quadrature(key, make):
    m2, m4 = _exact_double_well_moments()
    tr = run(make(), key, steps=6000, burn=500, thin=5, chains=128, dim=1)
    x = np.asarray(tr.positions)[..., 0]
    assert_within(x[..., None] ** 2, [m2], what="<x^2>")
    assert_within(x[..., None] ** 4, [m4], what="<x^4>")


def test_underdamped_with_mass_reproduces_boltzmann_histogram(key):
    """Masses must enter the thermostat (the jax-md #124 bug): histogram vs exact density."""
    T = 0.7
    s = idf.underdamped_langevin(_double_well, 0.04, friction=1.0, temperature=T, mass=4.0)
    tr = run(s, key, steps=12000, burn=1000, thin=5, chains=128, dim=1)
    x = np.asarray(tr.positions)[..., 0]
    edges = np.linspace(-2.0, 2.0, 17)
    grid = np.linspace(-4, 4, 400001)
    dens = np.exp(-(grid**4 - 2 * grid**2) / T)
    dens /= dens.sum()
    p_exact = np.array(
        [dens[(grid >= a) & (grid < b)].sum() for a, b in zip(edges[:-1], edges[1:])]
    )
    ind = (x[..., None] >= edges[:-1]) & (x[..., None] < edges[1:])
    assert_within(ind.astype(np.float64), p_exact, z=5.0, what="histogram bin probabilities")
    # A thermostat that ignored the mass would sample at the wrong temperature:
    # check the momentum variance equals M T.
    p = np.asarray(tr.final_state.momentum)
    assert abs(np.var(p) / (4.0 * T) - 1.0) < 5 * np.sqrt(2.0 / p.size)


def test_pytree_positions_and_float64(key):
    def E(x):
        return 0.5 * jnp.sum(x["a"] ** 2) + 0.5 * jnp.sum((x["b"] - 1.0) ** 2)

    with jax.enable_x64(True):
        x0 = {"a": jnp.zeros((32, 2), jnp.float64), "b": jnp.zeros((32, 3), jnp.float64)}
        tr = idf.sample(idf.mala(E, 0.5), key, x0, 1500, thin=2, burn_in=100)
        assert tr.positions["a"].dtype == jnp.float64 and tr.energies.dtype == jnp.float64
        assert tr.positions["b"].shape == (32, 700, 3)
        assert_within(np.asarray(tr.positions["b"]), np.ones(3), what="pytree leaf mean")
    x0 = {"a": jnp.zeros((32, 2), jnp.float32), "b": jnp.zeros((32, 3), jnp.float32)}
    tr = idf.sample(idf.hmc(E, 0.3, 4), key, x0, 200)
    assert tr.positions["a"].dtype == jnp.float32
