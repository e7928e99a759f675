"""idf.smc: log Z against exact values (Gaussians, the 4x4 Ising model by enumeration),
weighted moments, compile-once, kernels given as factories or templates, arguments."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

import idf_jax as idf
from idf_jax._checks import ArgumentError
from idf_jax.samplers import IsingGibbs

MU = jnp.array([1.0, -1.0, 0.5])
SIG = jnp.array([0.5, 1.5, 0.3])


class Shifted(eqx.Module):
    """E(x) = |(x - mu) / sigma|^2 / 2; Z = (2 pi)^(d/2) prod sigma."""

    mu: jax.Array
    sig: jax.Array

    def __call__(self, x):
        return 0.5 * jnp.sum(((x - self.mu) / self.sig) ** 2)


def prior_energy(x):
    return 0.5 * jnp.sum(x**2)


def prior_sample(key, n):
    return jax.random.normal(key, (n, 3))


def hmc_kernel(e):
    return idf.hmc(e, 0.15, 10)


def test_gaussian_log_z_and_weighted_moments(key):
    r = idf.smc(
        Shifted(MU, SIG),
        key,
        prior_sample,
        reference_energy=prior_energy,
        kernel=hmc_kernel,
        num_particles=1000,
        num_mcmc_steps=10,
    )
    exact = float(jnp.sum(jnp.log(SIG)))  # log Z_target / Z_prior (both Gaussian)
    se = float(r.log_z_se)
    assert 0.0 < se < 0.2
    assert abs(float(r.log_z) - exact) < 3.0 * se + 0.02, (float(r.log_z), exact, se)
    k = int(r.num_stages)
    lam = np.asarray(r.lambdas)
    assert lam[0] == 0.0 and lam[k] == 1.0 and np.all(np.diff(lam[: k + 1]) > 0)
    assert np.all(np.isnan(lam[k + 1 :]))
    # each intermediate stage kept ESS at the target fraction
    ess = np.asarray(r.ess)[: k - 1]
    np.testing.assert_allclose(ess, 0.5, atol=0.01)
    w = np.exp(np.asarray(r.log_weights))
    assert abs(w.sum() - 1.0) < 1e-4
    x = np.asarray(r.particles)
    mean = (w[:, None] * x).sum(0)
    sd = np.sqrt((w[:, None] * (x - mean) ** 2).sum(0))
    np.testing.assert_allclose(mean, np.asarray(MU), atol=0.2)
    np.testing.assert_allclose(sd, np.asarray(SIG), rtol=0.2)


def test_module_target_and_template_kernel_compile_once(key):
    """A new target (arrays of an eqx.Module energy) and a new key reuse the compiled
    run; the kernel given as a template (its energy replaced by the tempered one)."""
    traced = []

    class Counted(Shifted):
        def __call__(self, x):
            traced.append(1)
            return super().__call__(x)

    x0 = jax.random.normal(key, (200, 3))
    kw = dict(reference_energy=prior_energy, kernel=idf.mala(prior_energy, 0.05))
    idf.smc(Counted(MU, SIG), key, x0, **kw, num_mcmc_steps=3)
    first = len(traced)
    r = idf.smc(Counted(MU * 0.0, SIG * 0.0 + 1.0), jax.random.key(5), x0, **kw, num_mcmc_steps=3)
    assert len(traced) == first
    # target = prior: one stage, log Z = 0 exactly, weights uniform
    assert int(r.num_stages) == 1
    assert abs(float(r.log_z)) < 1e-5
    np.testing.assert_allclose(np.asarray(r.log_weights), -np.log(200.0), atol=1e-5)


def test_vmap_over_keys_matches_the_standard_error(key):
    def run(k):
        return idf.smc(
            Shifted(MU, SIG),
            k,
            prior_sample,
            reference_energy=prior_energy,
            kernel=hmc_kernel,
            num_particles=300,
            num_mcmc_steps=5,
        )

    r = jax.jit(jax.vmap(run))(jax.random.split(key, 8))
    lz = np.asarray(r.log_z)
    se = np.asarray(r.log_z_se)
    exact = float(jnp.sum(jnp.log(SIG)))
    assert abs(lz.mean() - exact) < 3.0 * se.mean() / np.sqrt(8) + 0.03
    # the delta-method error bar is the right size (not off by an order of magnitude)
    assert 0.3 < lz.std(ddof=1) / se.mean() < 3.0


def _ising_energy(s):
    s = s.astype(jnp.float32)
    return -jnp.sum(s * (jnp.roll(s, 1, 0) + jnp.roll(s, 1, 1)))


def _ising_exact_log_z(beta, L=4):
    idx = np.arange(2 ** (L * L))
    spins = (((idx[:, None] >> np.arange(L * L)) & 1) * 2 - 1).reshape(-1, L, L)
    bonds = (spins * np.roll(spins, 1, 1)).sum((1, 2)) + (spins * np.roll(spins, 1, 2)).sum((1, 2))
    return float(logsumexp(beta * bonds))  # log sum_s exp(-beta E(s))


@pytest.mark.parametrize("beta", [0.3, 0.6])
def test_ising_4x4_log_z_against_enumeration(key, beta):
    """β-tempering from the uniform law (E0 = 0, Z0 = 2^16) with heat-bath Gibbs moves at
    temperature 1 / (λ β): log Z = 16 log 2 + smc's log Z."""
    L = 4

    def init(k, n):
        return jnp.where(jax.random.bernoulli(k, 0.5, (n, L, L)), 1, -1).astype(jnp.int8)

    def gibbs(e):
        return IsingGibbs(jnp.float32(1.0), jnp.float32(0.0), 1.0 / (beta * e.lam), L)

    r = idf.smc(
        lambda s: beta * _ising_energy(s),
        key,
        init,
        reference_energy=lambda s: jnp.float32(0.0),
        kernel=gibbs,
        num_particles=2000,
        num_mcmc_steps=4,
    )
    log_z = L * L * np.log(2.0) + float(r.log_z)
    exact = _ising_exact_log_z(beta, L)
    se = float(r.log_z_se)
    assert abs(log_z - exact) < 3.0 * se + 0.01, (log_z, exact, se)
    assert r.particles.dtype == jnp.int8 and r.particles.shape == (2000, L, L)
    # weighted mean energy against the exact one
    w = np.exp(np.asarray(r.log_weights))
    e = np.asarray(jax.vmap(_ising_energy)(r.particles))
    idx = np.arange(2 ** (L * L))
    spins = (((idx[:, None] >> np.arange(L * L)) & 1) * 2 - 1).reshape(-1, L, L)
    bonds = (spins * np.roll(spins, 1, 1)).sum((1, 2)) + (spins * np.roll(spins, 1, 2)).sum((1, 2))
    p = np.exp(beta * bonds - logsumexp(beta * bonds))
    assert abs((w * e).sum() - (p * -bonds).sum()) < 0.1 * np.sqrt((p * bonds**2).sum())


def test_max_stages_forces_the_last_jump(key):
    x0 = jax.random.normal(key, (100, 3))
    r = idf.smc(
        Shifted(MU, SIG), key, x0, reference_energy=prior_energy, kernel=hmc_kernel, max_stages=1
    )
    assert int(r.num_stages) == 1 and float(r.lambdas[1]) == 1.0
    assert np.isfinite(float(r.log_z))


@pytest.mark.parametrize(
    "kwargs,argument",
    [
        (dict(kernel="mala"), "kernel"),
        (
            dict(kernel=IsingGibbs(jnp.float32(1.0), jnp.float32(0.0), jnp.float32(1.0), 4)),
            "kernel",
        ),
        (dict(kernel=hmc_kernel, target_ess=1.5), "target_ess"),
        (dict(kernel=hmc_kernel, num_mcmc_steps=0), "num_mcmc_steps"),
        (dict(kernel=hmc_kernel, max_stages=0), "max_stages"),
        (dict(kernel=hmc_kernel, num_particles=7), "num_particles"),
    ],
)
def test_bad_arguments_name_the_argument(key, kwargs, argument):
    with pytest.raises(ArgumentError) as err:
        idf.smc(prior_energy, key, jnp.zeros((10, 3)), reference_energy=prior_energy, **kwargs)
    assert err.value.argument == argument


def test_sampler_init_needs_num_particles(key):
    with pytest.raises(ArgumentError) as err:
        idf.smc(prior_energy, key, prior_sample, reference_energy=prior_energy, kernel=hmc_kernel)
    assert err.value.argument == "num_particles"
