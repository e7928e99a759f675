"""Every public core function under jax.jit, jax.vmap and jax.grad, with traces counted.

Compile once, run many: a sampler rebuilt with the same energy and new numbers, a new
key or a new start must not trace the energy again.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import count_traces

import idf_jax as idf


def quad(x):
    return 0.5 * jnp.sum(x**2)


def clip(x):
    return jnp.clip(x, -2.0, 2.0)


X0 = jnp.zeros((8, 2))


# ----------------------------------------------------------------------------- samplers

SAMPLERS = {
    "ula": lambda E, eps: idf.ula(E, eps),
    "mala": lambda E, eps: idf.mala(E, eps),
    "hmc": lambda E, eps: idf.hmc(E, eps, 3),
    "underdamped": lambda E, eps: idf.underdamped_langevin(E, eps, friction=1.0),
    "projected": lambda E, eps: idf.projected_langevin(E, clip, eps),
    "replica_exchange": lambda E, eps: idf.replica_exchange(idf.mala(E, eps), [1.0, 2.0]),
}


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_sampler_step_jit_vmap_grad(name, key):
    make = SAMPLERS[name]
    s = make(quad, 0.1)
    state = s.init(jnp.ones(2), key)
    a, _ = s.step(key, state)
    # jit with the sampler as an argument: a new step size reuses the compiled step
    step = eqx.debug.assert_max_traces(lambda smp, k, st: smp.step(k, st), max_traces=1)
    step = jax.jit(step)
    b, _ = step(s, key, state)
    np.testing.assert_allclose(np.asarray(a.energy), np.asarray(b.energy), rtol=1e-5)
    step(make(quad, 0.2), key, state)
    # vmap over chains and over step sizes
    states = jax.vmap(lambda x: s.init(x, key))(jnp.ones((3, 2)))
    out, _ = jax.vmap(s.step)(jax.random.split(key, 3), states)
    assert out.energy.shape == (3,)
    energies = jax.vmap(lambda e: make(quad, e).step(key, state)[0].energy)(jnp.array([0.05, 0.1]))
    assert energies.shape == (2,)

    # grad of the new energy with respect to the step size is finite
    def f(eps):
        return make(quad, eps).step(key, state)[0].energy

    assert np.isfinite(float(jax.grad(f)(0.1)))


def test_block_gibbs_temperature_is_data(key):
    import capsules

    cap = capsules.make("lattice.ising", L=8)
    spins = cap.init(key, 4)
    step = jax.jit(eqx.debug.assert_max_traces(lambda s, k, st: s.step(k, st), max_traces=1))
    s1 = idf.block_gibbs(cap, 2.0)
    st = jax.vmap(s1.init)(spins)
    a, _ = jax.vmap(lambda k, x: step(s1, k, x))(jax.random.split(key, 4), st)
    b, _ = jax.vmap(lambda k, x: step(idf.block_gibbs(cap, 3.0), k, x))(
        jax.random.split(key, 4), st
    )
    assert a.energy.shape == b.energy.shape == (4,)


# ----------------------------------------------------------------------------- sample


def test_sample_rebuilt_sampler_does_not_retrace(key):
    E, traces = count_traces(quad)
    idf.sample(idf.mala(E, 0.1), key, X0, 20)
    first = len(traces)
    for eps, T in ((0.2, 1.0), (0.3, 2.0)):
        idf.sample(idf.mala(E, eps, temperature=T), jax.random.key(3), X0 + 0.5, 20)
    assert len(traces) == first


def test_burn_in_does_not_compile_the_step_again(key):
    """Burn-in and draws are one loop: the step is traced as often with burn-in as without,
    a new burn-in length with the same number of blocks reuses the executable, and the
    draws equal those of the same steps run without a separate burn-in phase."""
    E, traces = count_traces(quad)
    idf.sample(idf.mala(E, 0.1), key, X0, 40, burn_in=0)
    without = len(traces)
    E2, traces2 = count_traces(quad)
    idf.sample(idf.mala(E2, 0.1), key, X0, 40, burn_in=20)
    assert len(traces2) == without
    # burn_in 9 and 11 with thin 4 both give 3 burn-in blocks + 6 draws: no new trace
    idf.sample(idf.mala(E2, 0.1), key, X0, 33, thin=4, burn_in=9)
    seen = len(traces2)
    idf.sample(idf.mala(E2, 0.1), key, X0, 35, thin=4, burn_in=11)
    assert len(traces2) == seen
    # thinning after a burn-in that thin does not divide: the kept states are exactly the
    # states of an unthinned run at steps burn_in + thin - 1, burn_in + 2 thin - 1, ...
    a = idf.sample(idf.mala(quad, 0.1), key, X0, 37, thin=4, burn_in=13)
    b = idf.sample(idf.mala(quad, 0.1), key, X0, 37, thin=1, burn_in=0)
    np.testing.assert_array_equal(np.asarray(a.positions), np.asarray(b.positions)[:, 13 + 3 :: 4])


def test_sample_jit_vmap_grad_over_temperature(key):
    def mean_energy(T):
        return idf.sample(idf.mala(quad, 0.1, T), key, X0, 60).energies.mean()

    jitted = jax.jit(mean_energy)
    np.testing.assert_allclose(float(jitted(1.0)), float(mean_energy(1.0)), rtol=1e-5)
    vm = jax.vmap(mean_energy)(jnp.array([1.0, 2.0]))
    np.testing.assert_allclose(
        np.asarray(vm), [float(mean_energy(1.0)), float(mean_energy(2.0))], rtol=1e-5
    )
    g = jax.grad(mean_energy)(1.0)
    h = 1e-2
    fd = (mean_energy(1.0 + h) - mean_energy(1.0 - h)) / (2 * h)
    # pathwise derivative of the same random stream: equals the finite difference
    np.testing.assert_allclose(float(g), float(fd), rtol=5e-2)


def test_sample_with_module_energy_reuses_compilation(key):
    class Scaled(eqx.Module):
        scale: jax.Array

        def __call__(self, x):
            return 0.5 * self.scale * jnp.sum(x**2)

    traced = []

    class Counted(Scaled):
        def __call__(self, x):
            traced.append(1)
            return super().__call__(x)

    idf.sample(idf.mala(Counted(jnp.asarray(1.0)), 0.1), key, X0, 20)
    first = len(traced)
    tr = idf.sample(idf.mala(Counted(jnp.asarray(4.0)), 0.1), key, X0, 20)
    assert len(traced) == first
    assert tr.energies.shape == (8, 20)


# ----------------------------------------------------------------------------- adapt


def test_adapt_jit_vmap_and_no_retrace(key):
    E, traces = count_traces(quad)
    s, p = idf.adapt(idf.mala(E, 0.1), key, X0, 30)
    first = len(traces)
    idf.adapt(idf.mala(E, 0.5), jax.random.key(1), X0 + 1.0, 30)
    assert len(traces) == first
    assert isinstance(s, idf.samplers.MALA) and s.step_size.shape == ()
    f = jax.jit(jax.vmap(lambda k: idf.adapt(idf.mala(quad, 0.1), k, X0, 30)[1]["step_size"]))
    eps = f(jax.random.split(key, 2))
    assert eps.shape == (2,) and bool(jnp.all(eps > 0))


def test_adapt_grad_is_finite_with_a_given_initial_step(key):
    def tuned(scale):
        E = lambda x: 0.5 * scale * jnp.sum(x**2)  # noqa: E731
        _, p = idf.adapt(idf.mala(E, 0.1), key, X0, 20, initial_step_size=0.3)
        return p["step_size"]

    assert np.isfinite(float(jax.grad(tuned)(1.0)))


# ----------------------------------------------------------------------------- relax


def _shifted(theta):
    def E(x):
        return jnp.sum((x - theta) ** 2) + 0.1 * jnp.sum(x**4)

    return E


def test_relax_jit_vmap_grad_implicit_matches_finite_differences():
    theta = jnp.array([1.0, 2.0])

    def minimiser(t):
        x, _ = idf.relax(_shifted(t), jnp.zeros((2, 2)), num_steps=100)
        return x[0]

    def energy(t):
        return idf.relax(_shifted(t), jnp.zeros((2, 2)), num_steps=100)[1][0]

    jac = jax.jacrev(minimiser)(theta)
    h = 1e-2
    fd = np.stack(
        [(minimiser(theta + h * e) - minimiser(theta - h * e)) / (2 * h) for e in jnp.eye(2)], 1
    )
    np.testing.assert_allclose(np.asarray(jac), fd, atol=2e-3)
    # envelope theorem: dE*/dθ = ∂E/∂θ at x* = -2 (x* - θ)
    x_star = minimiser(theta)
    np.testing.assert_allclose(
        np.asarray(jax.grad(energy)(theta)), np.asarray(-2 * (x_star - theta)), rtol=1e-4
    )
    np.testing.assert_allclose(float(jax.jit(energy)(theta)), float(energy(theta)), rtol=1e-5)
    vm = jax.vmap(energy)(jnp.stack([theta, theta + 1.0]))
    assert vm.shape == (2,) and bool(jnp.all(jnp.isfinite(vm)))


def test_relax_closed_form_quadratic_minimiser_gradient():
    # E = |A x - b|^2 / 2 has x* = A^-1 b, dx*/db = A^-1.
    A = jnp.array([[2.0, 0.3], [0.1, 1.5]])

    def xstar(b):
        E = lambda x: 0.5 * jnp.sum((A @ x - b) ** 2)  # noqa: E731
        return idf.relax(E, jnp.zeros((1, 2)), num_steps=200, gtol=1e-7)[0][0]

    np.testing.assert_allclose(
        np.asarray(jax.jacrev(xstar)(jnp.array([1.0, -1.0]))), np.linalg.inv(A), atol=1e-3
    )


# ----------------------------------------------------------------------------- equilibrium


def test_sample_equilibrium_jit_vmap_grad(key):
    def best(theta):
        E = lambda x: 0.5 * jnp.sum((x - theta) ** 2) + jnp.sum(jnp.cos(3 * x))  # noqa: E731
        return idf.sample_equilibrium(E, key, jnp.zeros((8, 2)), num_steps=150).best_energy

    theta = jnp.array([0.3, -0.2])
    g = jax.grad(best)(theta)
    h = 1e-3
    fd = [(best(theta + h * e) - best(theta - h * e)) / (2 * h) for e in jnp.eye(2)]
    np.testing.assert_allclose(np.asarray(g), np.asarray(fd), rtol=2e-2, atol=2e-3)
    np.testing.assert_allclose(float(jax.jit(best)(theta)), float(best(theta)), rtol=1e-5)
    assert jax.vmap(best)(jnp.stack([theta, theta])).shape == (2,)


def test_sample_equilibrium_does_not_retrace(key):
    E, traces = count_traces(quad)
    idf.sample_equilibrium(E, key, X0 + 1.0, num_steps=50, relax_steps=20)
    first = len(traces)
    idf.sample_equilibrium(
        E, jax.random.key(4), X0 - 1.0, num_steps=50, relax_steps=20, step_size=0.05
    )
    assert len(traces) == first


# ----------------------------------------------------------------------------- thermo


def test_thermo_metrics_and_diffusion_compose(key):
    e = jnp.linspace(0.0, 3.0, 16)
    for fn in (idf.free_energy, lambda x: idf.boltzmann_weights(x)[0]):
        np.testing.assert_allclose(float(jax.jit(fn)(e)), float(fn(e)), rtol=1e-5)
        assert np.isfinite(float(jax.grad(lambda s: fn(s * e))(1.0)))
    assert jax.vmap(idf.free_energy)(jnp.stack([e, e + 1])).shape == (2,)
    sde = idf.VPSDE()
    x0 = jnp.ones((4, 2))
    xt = jax.jit(lambda t: idf.forward_diffuse(sde, x0, t, key))(0.5)
    assert xt.shape == x0.shape
    score = lambda x, t: -x  # noqa: E731
    step = jax.jit(lambda x: idf.reverse_denoise(sde, score, x, 0.5, 0.01, key=key))
    assert step(xt).shape == x0.shape
    g = jax.grad(lambda t: jnp.sum(idf.forward_diffuse(sde, x0, t, key)))(0.5)
    assert np.isfinite(float(g))
