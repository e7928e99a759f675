"""idf.nuts: moments against exact answers, a 1-D histogram, transforms, divergences,
arguments, adaptation, and the desynchronised driver (same draws, fewer iterations)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_within, count_traces

import idf_jax as idf
from idf_jax._checks import ArgumentError

D = 8
PREC = jnp.asarray(np.logspace(0.0, 2.0, D), jnp.float32)  # condition number 100


def gauss(x):
    return 0.5 * jnp.sum(PREC * x**2)


def double_well(x):
    return jnp.sum(x**4 - 2.0 * x**2)


def test_ill_conditioned_gaussian_moments(key):
    x0 = jax.random.normal(key, (32, D)) * 0.1
    tr = idf.sample(idf.nuts(gauss, 0.1), key, x0, 700, burn_in=100, thin=2)
    x = np.asarray(tr.positions)
    assert_within(x, np.zeros(D), what="nuts mean")
    assert_within(x**2, 1.0 / np.asarray(PREC), what="nuts variance")
    assert int(np.sum(tr.stats["num_divergent"])) == 0
    assert 0.7 < float(np.mean(tr.stats["acceptance_rate"])) <= 1.0
    # the trajectory adapts its length: 1 <= depth <= 10, and steps = leapfrogs taken
    assert 2.0 < float(np.mean(tr.stats["tree_depth"])) < 10.0
    assert float(np.mean(tr.stats["num_integration_steps"])) > 3.0


def test_correlated_gaussian_with_mass_and_temperature(key):
    cov = np.array([[1.0, 0.9], [0.9, 1.0]], np.float32)
    prec = jnp.asarray(np.linalg.inv(cov))

    def E(x):
        return 0.5 * x @ prec @ x

    T = 2.0
    x0 = jnp.zeros((32, 2))
    s = idf.nuts(E, 0.2, temperature=T, inverse_mass=jnp.array([1.0, 0.5]))
    tr = idf.sample(s, key, x0, 800, burn_in=100)
    x = np.asarray(tr.positions)
    assert_within(x[..., 0:1] * x[..., 1:2], [T * 0.9], what="covariance")
    assert_within(x**2, T * np.ones(2), what="variance at T")


def test_pytree_positions_and_float64(key):
    def E(x):
        return 0.5 * jnp.sum(x["a"] ** 2) + 0.5 * jnp.sum(((x["b"] - 1.0) / 2.0) ** 2)

    with jax.enable_x64(True):
        x0 = {"a": jnp.zeros((16, 2), jnp.float64), "b": jnp.zeros((16, 3), jnp.float64)}
        mass = {"a": 1.0, "b": jnp.full((3,), 4.0, jnp.float64)}
        tr = idf.sample(idf.nuts(E, 0.3, inverse_mass=mass), key, x0, 500, burn_in=50)
        assert tr.positions["a"].dtype == jnp.float64 and tr.energies.dtype == jnp.float64
        assert tr.positions["b"].shape == (16, 450, 3)
        assert_within(np.asarray(tr.positions["b"]), np.ones(3), what="pytree leaf mean")
        assert_within(np.asarray(tr.positions["b"] - 1.0) ** 2, 4.0 * np.ones(3), what="var")


def test_one_dimensional_histogram_and_moments_against_quadrature(key):
    """Detailed balance, checked through its consequence: the stationary law of a
    bimodal 1-D target, bin by bin, and E[x^2], E[x^4] against quadrature."""
    grid = np.linspace(-4, 4, 400001)
    dens = np.exp(-(grid**4 - 2 * grid**2))
    dens /= dens.sum()
    edges = np.linspace(-2.0, 2.0, 13)
    p_exact = np.array(
        [dens[(grid >= a) & (grid < b)].sum() for a, b in zip(edges[:-1], edges[1:])]
    )
    x0 = jax.random.normal(key, (128, 1))
    tr = idf.sample(idf.nuts(double_well, 0.25), key, x0, 1600, burn_in=100, thin=3)
    x = np.asarray(tr.positions)[..., 0]
    ind = (x[..., None] >= edges[:-1]) & (x[..., None] < edges[1:])
    assert_within(ind.astype(np.float64), p_exact, z=5.0, what="histogram bin probabilities")
    assert_within(x[..., None] ** 2, [np.sum(dens * grid**2)], what="<x^2>")
    assert_within(x[..., None] ** 4, [np.sum(dens * grid**4)], what="<x^4>")


def test_jit_vmap_forward_derivative_and_no_retrace(key):
    s = idf.nuts(gauss, 0.1)
    state = s.init(jnp.ones(D))
    a, info = s.step(key, state)
    step = jax.jit(eqx.debug.assert_max_traces(lambda smp, k, st: smp.step(k, st), max_traces=1))
    b, _ = step(s, key, state)
    np.testing.assert_allclose(np.asarray(a.position), np.asarray(b.position), rtol=1e-5)
    step(idf.nuts(gauss, 0.2, temperature=2.0), key, state)  # new numbers: same compiled step
    assert int(info.num_integration_steps) >= 1 and 1 <= int(info.tree_depth) <= 10
    # vmap over chains and over step sizes
    states = jax.vmap(s.init)(jnp.ones((3, D)))
    out, _ = jax.vmap(s.step)(jax.random.split(key, 3), states)
    assert out.energy.shape == (3,)
    e = jax.vmap(lambda eps: idf.nuts(gauss, eps).step(key, state)[0].energy)(
        jnp.array([0.05, 0.1])
    )
    assert e.shape == (2,)

    # forward-mode derivative of the draw's energy w.r.t. an energy parameter (pathwise,
    # same random stream) equals the finite difference; the loop is a while_loop, so
    # reverse mode (jax.grad) is not available through a NUTS transition
    class Scaled(eqx.Module):
        scale: jax.Array

        def __call__(self, x):
            return 0.5 * self.scale * jnp.sum(PREC * x**2)

    def f(c):
        return idf.nuts(Scaled(c), 0.1).step(key, state)[0].energy

    d = jax.jacfwd(f)(jnp.float32(1.0))
    h = 1e-3
    fd = (f(jnp.float32(1.0 + h)) - f(jnp.float32(1.0 - h))) / (2 * h)
    np.testing.assert_allclose(float(d), float(fd), rtol=5e-2, atol=1e-3)


def test_sample_rebuilt_nuts_does_not_retrace(key):
    E, traces = count_traces(gauss)
    x0 = jnp.zeros((4, D))
    idf.sample(idf.nuts(E, 0.1), key, x0, 5)
    first = len(traces)
    for eps, T in ((0.2, 1.0), (0.05, 3.0)):
        idf.sample(idf.nuts(E, step_size=eps, temperature=T), jax.random.key(3), x0 + 0.5, 5)
    assert len(traces) == first


def test_divergences_on_a_cliff_are_counted_and_rejected(key):
    def cliff(x):  # a quadratic bowl with a wall of slope 1e4 beyond x = 1
        return 0.5 * jnp.sum(x**2) + 1e4 * jnp.sum(jax.nn.relu(x - 1.0) ** 2)

    x0 = jnp.zeros((16, 1))
    tr = idf.sample(idf.nuts(cliff, 0.5), key, x0, 100)
    assert int(np.sum(tr.stats["num_divergent"])) > 0
    assert np.asarray(tr.divergences).any()
    x = np.asarray(tr.positions)
    assert np.all(np.isfinite(x)) and np.all(x < 1.2)
    assert not np.any(np.asarray(tr.stats["frozen"]))


@pytest.mark.parametrize(
    "kwargs,argument",
    [
        (dict(step_size=0.0), "step_size"),
        (dict(step_size=-1.0), "step_size"),
        (dict(step_size=0.1, temperature=0.0), "temperature"),
        (dict(step_size=0.1, max_tree_depth=0), "max_tree_depth"),
        (dict(step_size=0.1, max_tree_depth=2.5), "max_tree_depth"),
        (dict(step_size=0.1, inverse_mass=-1.0), "inverse_mass"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, argument):
    with pytest.raises(ArgumentError) as err:
        idf.nuts(gauss, **kwargs)
    assert err.value.argument == argument


def test_desync_bad_arguments(key):
    with pytest.raises(ArgumentError) as err:
        idf.sample_nuts_desync(idf.mala(gauss, 0.1), key, jnp.zeros((2, D)), 5)
    assert err.value.argument == "sampler"
    with pytest.raises(ArgumentError) as err:
        idf.sample_nuts_desync(idf.nuts(gauss, 0.1), key, jnp.zeros((2, D)), 0)
    assert err.value.argument == "num_draws"


def test_adapt_tunes_nuts_step_size_and_mass(key):
    x0 = jax.random.normal(key, (16, D)) * 0.1
    res = idf.adapt_run(idf.nuts(gauss, 0.5), key, x0, 150)
    assert isinstance(res.sampler, idf.samplers.NUTS)
    eps = float(res.params["step_size"])
    assert 0.01 < eps < 2.0
    inv_mass = np.asarray(res.params["inverse_mass"])
    # the tuned inverse mass follows the target variances 1/prec (within warm-up noise)
    assert np.corrcoef(np.log(inv_mass), -np.log(np.asarray(PREC)))[0, 1] > 0.8
    assert 0.6 < float(res.acceptance_rate) < 0.97
    tr = idf.sample(res.sampler, key, res.positions, 200)
    assert_within(np.asarray(tr.positions) ** 2, 1.0 / np.asarray(PREC), z=6.0, what="adapted")


def funnel(z):
    """Neal's funnel in d = 1 + 4: v ~ N(0, 3^2), x_i | v ~ N(0, e^v)."""
    v, x = z[0], z[1:]
    return v**2 / 18.0 + 0.5 * jnp.sum(x**2) * jnp.exp(-v) + 0.5 * x.shape[0] * v


def test_desync_gives_the_same_draws_as_sample(key):
    x0 = jax.random.normal(key, (16, D)) * 0.1
    s = idf.nuts(gauss, 0.1)
    sync = idf.sample(s, key, x0, 30, burn_in=10)
    de = idf.sample_nuts_desync(s, key, x0, 20, burn_in=10)
    np.testing.assert_allclose(np.asarray(de.positions), np.asarray(sync.positions), atol=1e-5)
    grads = np.asarray(de.stats["num_gradient_evals"])
    assert 0 < int(grads.max()) <= int(de.stats["num_iterations"])


@pytest.mark.slow
def test_desync_gives_the_same_draws_in_fewer_iterations(key):
    x0 = jax.random.normal(key, (16, 5)) * 0.5
    s = idf.nuts(funnel, 0.2)
    sync = idf.sample(s, key, x0, 40, burn_in=10)
    de = idf.sample_nuts_desync(s, key, x0, 30, burn_in=10)
    np.testing.assert_allclose(np.asarray(de.positions), np.asarray(sync.positions), atol=1e-5)
    np.testing.assert_allclose(np.asarray(de.energies), np.asarray(sync.energies), atol=1e-4)
    assert de.positions.shape == (16, 30, 5)
    assert np.all(np.asarray(de.stats["num_draws_done"]) == 30)
    # lock-step cost: sum over transitions of the longest trajectory among the chains
    states = jax.vmap(s.init)(x0)
    keys = jax.random.split(key, 16)
    lockstep = 0
    step = jax.jit(jax.vmap(s.step))
    for t in range(40):
        states, info = step(jax.vmap(jax.random.fold_in, (0, None))(keys, t), states)
        lockstep += int(np.max(np.asarray(info.num_integration_steps)))
    iters = int(de.stats["num_iterations"])
    grads = np.asarray(de.stats["num_gradient_evals"])
    assert iters < lockstep
    # every chain's own gradient count is its trajectories' total length
    assert np.all(grads <= iters)


def test_desync_budget_cap_leaves_nan_draws(key):
    x0 = jnp.zeros((4, D))
    de = idf.sample_nuts_desync(idf.nuts(gauss, 0.1), key, x0, 20, max_iterations=30)
    done = np.asarray(de.stats["num_draws_done"])
    assert np.all(done < 20)
    x = np.asarray(de.positions)
    for c in range(4):
        assert np.all(np.isfinite(x[c, : done[c]])) and np.all(np.isnan(x[c, done[c] :]))
