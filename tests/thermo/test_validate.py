"""Physics validation: energy-law fidelity (Hamiltonian only) and entropy coherence."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

import idf_jax as idf
from idf_jax import validate

# --------------------------------------------------------------------------- ELF


class _S(NamedTuple):
    position: jax.Array
    energy: jax.Array
    count: jax.Array


class _I(NamedTuple):
    acceptance_rate: jax.Array
    diverged: jax.Array
    energy_error: jax.Array


def _scripted_sampler(values):
    """A sampler whose trajectory i reports energy_error = values[i % len(values)]."""
    values = jnp.asarray(values, jnp.float32)

    def init(x, key=None):
        return _S(x, jnp.zeros(()), jnp.zeros((), jnp.int32))

    def step(key, s):
        de = values[s.count % values.size]
        return s._replace(count=s.count + 1), _I(jnp.ones(()), jnp.zeros((), bool), de)

    return idf.samplers.FunctionSampler(init, step)


def test_elf_counts_every_trajectory_and_is_exact_at_edges():
    # 10 values per cycle; 4 below 0.01 in magnitude (0.0099 is 1% below the edge).
    vals = [0.0, 1e-12, -0.005, 0.0099, 0.0101, -0.02, 0.5, 3.0, -1e5, 0.011]
    trace = idf.sample(_scripted_sampler(vals), jax.random.key(0), jnp.zeros((3, 1)), 100, thin=10)
    assert trace.positions.shape == (3, 10, 1)  # only 10 draws recorded ...
    assert int(trace.stats["num_trajectories"][0]) == 100  # ... but 100 trajectories counted
    np.testing.assert_allclose(float(validate.energy_law_fidelity(trace, 0.01)), 0.4)
    np.testing.assert_allclose(float(validate.energy_law_fidelity(trace, 0.1)), 0.7)
    np.testing.assert_allclose(float(validate.energy_law_fidelity(trace, 1e-10)), 0.2)
    np.testing.assert_allclose(float(validate.energy_law_fidelity(trace, 1e4)), 0.9)
    per = validate.energy_law_fidelity(trace, 0.01, per_chain=True)
    np.testing.assert_allclose(np.asarray(per), [0.4] * 3)


def test_elf_refuses_langevin_and_off_edge_tolerances():
    e = lambda x: 0.5 * jnp.sum(x**2)
    trace = idf.sample(idf.mala(e, 0.1), jax.random.key(0), jnp.zeros((2, 2)), 10)
    with pytest.raises(ValueError, match="does not apply"):
        validate.energy_law_fidelity(trace)
    trace = idf.sample(idf.hmc(e, 0.1, 3), jax.random.key(0), jnp.zeros((2, 2)), 10)
    with pytest.raises(ValueError, match="not an edge"):
        validate.energy_law_fidelity(trace, tol=0.015)
    with pytest.raises(ValueError, match="tol"):
        validate.energy_law_fidelity(trace, tol=-1.0)


def test_elf_above_999_on_100d_gaussian():
    """Step size from the shadow Hamiltonian of leapfrog on unit-frequency modes.

    Leapfrog exactly conserves H~ = p^2/2 + (1 - eps^2/4) x^2/2 per mode, so
    dH = (eps^2/8) sum_i (x_i'^2 - x_i^2), sd(dH) ~ sqrt(d) eps^2 / 4 in equilibrium.
    For P(|dH| >= 0.01) < 1e-3 we need 0.01 > 3.3 sd, i.e. eps < 0.035 at d = 100;
    eps = 0.025 gives sd = 0.0016 (the 0.01 tolerance is 6.4 sd).
    """
    d = 100
    energy = lambda x: 0.5 * jnp.sum(x**2)
    x0 = jax.random.normal(jax.random.key(0), (16, d))
    trace = idf.sample(idf.hmc(energy, 0.025, 63), jax.random.key(1), x0, 150, burn_in=10)
    elf = float(validate.energy_law_fidelity(trace, 0.01))
    assert elf > 0.999, elf
    sd = float(jnp.sqrt(jnp.mean(trace.stats["mean_abs_energy_error"] ** 2)))
    assert sd < 0.01 / 3.3


def lj_energy(x):
    """Lennard-Jones (epsilon = sigma = 1) over all pairs of a (13, 3) cluster."""
    n = x.shape[0]
    i, j = np.triu_indices(n, 1)
    r2 = jnp.sum((x[i] - x[j]) ** 2, axis=-1)
    inv6 = 1.0 / r2**3
    return jnp.sum(4.0 * (inv6**2 - inv6))


def lj13_minimum():
    phi = (1 + 5**0.5) / 2
    v = []
    for a in (-1, 1):
        for b in (-phi, phi):
            v += [(0, a, b), (a, b, 0), (b, 0, a)]
    x = np.vstack([np.zeros(3), np.array(v) / np.linalg.norm(v[0]) * 1.1])
    f = lambda y: float(lj_energy(jnp.asarray(y.reshape(13, 3), jnp.float32)))
    g = jax.grad(lambda y: lj_energy(y.reshape(13, 3)))
    res = scipy.optimize.minimize(
        f,
        x.ravel(),
        jac=lambda y: np.asarray(g(jnp.asarray(y, jnp.float32)), np.float64),
        method="L-BFGS-B",
        options=dict(gtol=1e-8),
    )
    return res.x.reshape(13, 3).astype(np.float32), res.fun


def test_elf_above_999_on_lj13():
    """HMC at T = 0.05 (solid icosahedron) with an MD time step dt = 0.002 (LJ units).

    The stiffest mode of the LJ13 minimum has omega^2 ~ 4e2 (largest Hessian eigenvalue,
    checked below), so omega dt ~ 0.04; the harmonic shadow-Hamiltonian estimate
    sd(dH) ~ sqrt(3N) (omega dt)^2 T / 4 ~ 1e-4 leaves the 0.01 tolerance 100 sd away.
    """
    x_min, e_min = lj13_minimum()
    assert abs(e_min - (-44.326801)) < 1e-3
    hess = jax.hessian(lambda y: lj_energy(y.reshape(13, 3)))(jnp.asarray(x_min).ravel())
    omega_max = float(jnp.sqrt(jnp.max(jnp.linalg.eigvalsh(hess))))
    dt = 0.002
    assert omega_max * dt < 0.06
    x0 = jnp.broadcast_to(jnp.asarray(x_min), (8, 13, 3))
    trace = idf.sample(idf.hmc(lj_energy, dt, 100, temperature=0.05), jax.random.key(0), x0, 100)
    assert not bool(trace.stats["diverged"].any())
    elf = float(validate.energy_law_fidelity(trace, 0.01))
    assert elf > 0.999, elf


# --------------------------------------------------------------------------- coherence


PREC = jnp.linspace(0.5, 4.0, 8)


def _gauss(x):
    return 0.5 * jnp.sum(PREC * x**2)


def test_entropy_coherence_on_langevin_relaxation():
    """MALA relaxation from a far, narrow start: F = <E> - T S must not rise."""
    x0 = 8.0 + 0.1 * jax.random.normal(jax.random.key(0), (256, 8))
    trace = idf.sample(idf.mala(_gauss, 0.1), jax.random.key(1), x0, 300, thin=3)
    res = validate.entropy_coherence(trace, 1.0, details=True)
    assert float(res.fraction) > 0.99, res.fraction
    # it really relaxed: F fell by a lot, and ends near F_eq = -(T/2) sum ln(2 pi T / k)
    f_eq = -0.5 * float(jnp.sum(jnp.log(2 * jnp.pi / PREC)))
    assert float(res.free_energy[0] - res.free_energy[-1]) > 50.0
    assert abs(float(res.free_energy[-1]) - f_eq) < 0.5

    # negative control: the relaxing part (first 20 draws) played backwards breaks the law
    head = trace._replace(positions=trace.positions[:, 19::-1], energies=trace.energies[:, 19::-1])
    assert float(validate.entropy_coherence(head, 1.0)) < 0.5


def test_entropy_coherence_isolated_free_diffusion():
    """Free diffusion (E = 0): entropy of the ensemble grows, S(t) ~ (d/2) ln(4 pi e D t)."""
    zero = lambda x: 0.0 * jnp.sum(x)
    x0 = 0.01 * jax.random.normal(jax.random.key(0), (256, 3))
    trace = idf.sample(idf.ula(zero, 0.01), jax.random.key(1), x0, 100, thin=2)
    assert float(validate.entropy_coherence(trace, mode="isolated")) > 0.99


def test_entropy_coherence_bad_input():
    e = lambda x: 0.5 * jnp.sum(x**2)
    trace = idf.sample(idf.mala(e, 0.1), jax.random.key(0), jnp.zeros((4, 2)), 4)
    with pytest.raises(ValueError, match="mode"):
        validate.entropy_coherence(trace, mode="adiabatic")
    one = trace._replace(positions=trace.positions[:, :1], energies=trace.energies[:, :1])
    with pytest.raises(ValueError, match="2 recorded draws"):
        validate.entropy_coherence(one)


def test_entropy_production_matches_ou_process():
    """Ensemble entropy production of an exact OU process against the closed form.

    dX = -k X dt + sqrt(2) dW from X_0 = m0 (point mass spread s0): mean m0 e^{-kt},
    variance 1/k + (s0^2 - 1/k) e^{-2kt}; F(t) = <E> - S in closed form.
    """
    from idf_jax import thermo

    k, m0, s0, n, d = 1.0, 3.0, 0.2, 4000, 2
    ts = jnp.linspace(0.0, 2.0, 6)
    key = jax.random.key(0)
    mean = m0 * jnp.exp(-k * ts)
    var = 1 / k + (s0**2 - 1 / k) * jnp.exp(-2 * k * ts)
    z = jax.random.normal(key, (n, ts.size, d))
    x = mean[None, :, None] + jnp.sqrt(var)[None, :, None] * z
    energies = 0.5 * k * jnp.sum(x**2, -1)
    trace = idf.Trace(x, energies, {}, None)
    ep = thermo.entropy_production(trace, 1.0)
    s_exact = 0.5 * d * jnp.log(2 * jnp.pi * jnp.e * var)
    f_exact = 0.5 * k * d * (mean**2 + var) - s_exact
    np.testing.assert_allclose(np.asarray(ep.entropy), np.asarray(s_exact), atol=0.05)
    np.testing.assert_allclose(np.asarray(ep.free_energy), np.asarray(f_exact), atol=0.2)
    assert np.all(np.asarray(ep.production) > 0)
