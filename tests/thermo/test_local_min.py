"""thermo.local_min: the batched L-BFGS of basin hopping reaches exact minima, agrees with
FIRE (the LJ13 check is in tests/capsules/test_global_search_capsules.py), counts its evaluations honestly, masks converged chains, compiles once."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import idf_jax as idf
from idf_jax._checks import ArgumentError
from idf_jax.thermo.local_min import lbfgs_until_one

CURV = jnp.arange(1.0, 11.0)


def quadratic(x):
    return 0.5 * jnp.sum(CURV * (x - 1.0) ** 2)


def rosenbrock(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def _batched(energy, project=None):
    return jax.jit(jax.vmap(lbfgs_until_one(energy, project), in_axes=(0, None, None, None)))


def test_quadratic_exact_minimum_and_masked_chains():
    x0 = jnp.stack([jnp.zeros(10), jnp.ones(10), 3.0 * jnp.ones(10)])
    x, e, evals = _batched(quadratic)(x0, 500, 1e-5, 10.0)
    np.testing.assert_allclose(np.asarray(x), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(e), 0.0, atol=1e-9)
    evals = np.asarray(evals)
    # the chain that starts at the minimum stops at once: one evaluation, no more
    assert evals[1] == 1
    # quasi-Newton on a 10-D quadratic: far fewer evaluations than the cap
    assert 1 < evals[0] < 60 and 1 < evals[2] < 60


def test_rosenbrock_minimum():
    x0 = jnp.array([[-1.2, 1.0], [0.0, 0.0], [2.0, 2.0]])
    x, e, evals = _batched(rosenbrock)(x0, 2000, 1e-6, 1.0)
    np.testing.assert_allclose(np.asarray(x), 1.0, atol=1e-3)
    assert np.all(np.asarray(e) < 1e-6)
    assert np.all(np.asarray(evals) < 500)


def test_evaluations_are_counted_exactly():
    calls = []

    def energy(x):
        jax.debug.callback(lambda: calls.append(1))
        return rosenbrock(x)

    one = jax.jit(lbfgs_until_one(energy, None))
    # grad of a function with a callback: the callback runs once per energy-and-gradient
    for max_iter in (7, 40):
        calls.clear()
        _, _, evals = one(jnp.array([-1.2, 1.0]), max_iter, 1e-8, 1.0)
        jax.effects_barrier()
        assert int(evals) == len(calls) == max_iter + 1


def test_max_step_caps_every_coordinate():
    # a huge gradient: the first trial is scaled so that its largest coordinate moves
    # exactly max_step (the direction is kept)
    def steep(x):
        return 1e6 * jnp.sum(x**2)

    x, _, _ = lbfgs_until_one(steep, None)(jnp.array([1.0, -2.0]), 1, 1e-12, 0.1)
    np.testing.assert_allclose(np.asarray(x) - np.array([1.0, -2.0]), [-0.05, 0.1], rtol=1e-5)


def test_one_trace_for_new_budgets_tolerances_and_steps():
    @eqx.debug.assert_max_traces(max_traces=1)
    def run(x0, max_iter, gtol, max_step):
        return jax.vmap(lbfgs_until_one(quadratic, None), in_axes=(0, None, None, None))(
            x0, max_iter, gtol, max_step
        )

    f = jax.jit(run)
    for k, (it, tol, step) in enumerate([(10, 1e-3, 1.0), (200, 1e-6, 0.5), (50, 1e-4, 2.0)]):
        x0 = jax.random.normal(jax.random.key(k), (5, 10))
        f(x0, jnp.int32(it), jnp.float32(tol), jnp.float32(step))
    # vmapped again over a batch of tolerances, inside jit
    tols = jnp.array([1e-2, 1e-5])
    _, e, ev = jax.jit(
        jax.vmap(lambda t: lbfgs_until_one(quadratic, None)(jnp.zeros(10), 500, t, 1.0))
    )(tols)
    assert np.asarray(ev)[0] <= np.asarray(ev)[1]
    assert float(e[1]) < 1e-8


@pytest.mark.parametrize("local", ["lbfgs", "fire"])
def test_sample_equilibrium_local_option(local):
    def well(x):
        return (x[0] ** 2 - 1.0) ** 2 + 0.3 * x[0] + x[1] ** 2

    x0 = jnp.tile(jnp.array([[0.96, 0.3]]), (8, 1))
    res = idf.sample_equilibrium(
        well, jax.random.key(0), x0, num_steps=1000, method="basin_hopping", local=local
    )
    roots = np.roots([4.0, 0.0, -4.0, 0.3])
    roots = roots[np.isreal(roots)].real
    assert float(res.best_energy) == pytest.approx(
        float(np.min((roots**2 - 1) ** 2 + 0.3 * roots)), abs=1e-5
    )


def test_unknown_local_raises():
    with pytest.raises(ArgumentError, match="local") as err:
        idf.sample_equilibrium(
            quadratic, jax.random.key(0), jnp.zeros((2, 10)), num_steps=5, local="newton"
        )
    assert err.value.argument == "local"
