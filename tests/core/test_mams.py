"""idf.mams: Metropolis-adjusted microcanonical moments, divergences, jit/vmap, bad args."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import idf_jax as idf
from idf_jax._checks import ArgumentError
from tests.helpers import assert_within, count_traces

SD = jnp.array([0.1, 1.0, 10.0, 3.0])


def ill_conditioned(x):
    return 0.5 * jnp.sum((x / SD) ** 2)


def test_ill_conditioned_gaussian_with_inverse_mass_is_exact():
    x0 = jax.random.normal(jax.random.key(0), (32, 4)) * SD[None]
    s = idf.mams(ill_conditioned, 0.8, 2.0, inverse_mass=SD**2)
    tr = idf.sample(s, jax.random.key(1), x0, 600)
    z = np.asarray(tr.positions) / np.asarray(SD)[None, None]
    assert_within(z, np.zeros(4), what="mean")
    assert_within(z**2, np.ones(4), what="second moment")
    acc = float(tr.stats["acceptance_rate"].mean())
    assert 0.5 < acc < 1.0
    # Mean trajectory length L / eps = 2.5 steps, two gradients each (McLachlan).
    assert float(tr.stats["num_integration_steps"].mean()) == pytest.approx(2.5, rel=0.1)
    assert float(tr.stats["num_grad_evals"].mean()) == pytest.approx(5.0, rel=0.1)


def test_pytree_float64_and_no_jitter():
    def energy(x):
        return 0.5 * jnp.sum(x["a"] ** 2) + 0.5 * jnp.sum((x["b"] / 2.0) ** 2)

    with jax.enable_x64(True):
        x0 = {"a": jnp.zeros((16, 2), jnp.float64), "b": jnp.zeros((16, 1), jnp.float64)}
        s = idf.mams(energy, 0.6, 1.8, jitter=False, integrator="leapfrog")
        tr = idf.sample(s, jax.random.key(0), x0, 800, burn_in=100)
        assert tr.positions["b"].dtype == jnp.float64
        assert float(tr.stats["num_integration_steps"].mean()) == 3.0
    assert_within(np.asarray(tr.positions["a"]) ** 2, np.ones(2), what="E a^2")
    assert_within(np.asarray(tr.positions["b"]) ** 2 / 4.0, np.ones(1), what="E b^2 / 4")


def test_huge_steps_diverge_and_are_counted():
    s = idf.mams(ill_conditioned, 50.0, 100.0)
    tr = idf.sample(s, jax.random.key(0), jnp.ones((4, 4)), 10)
    assert int(tr.stats["num_divergent"].sum()) > 0
    assert np.all(np.isfinite(np.asarray(tr.positions)))


def test_compile_once():
    energy, calls = count_traces(lambda x: 0.5 * jnp.sum(x**2))
    x0 = jnp.zeros((4, 3))
    idf.sample(idf.mams(energy, 0.3, 1.0), jax.random.key(0), x0, 10)
    first = len(calls)
    idf.sample(idf.mams(energy, 0.6, 3.0), jax.random.key(0), x0, 10)
    assert len(calls) == first


@pytest.mark.slow
def test_jit_vmap():
    def energy(x):
        return 0.5 * jnp.sum(x**2)

    x0 = jnp.zeros((4, 3))

    def acc(step_size):
        s = idf.mams(energy, step_size, 1.0)
        return jnp.mean(idf.sample(s, jax.random.key(0), x0, 10).stats["acceptance_rate"])

    a = jax.jit(acc)(0.3)
    b = jax.vmap(acc)(jnp.array([0.1, 0.9]))
    assert 0 < float(a) <= 1 and b.shape == (2,) and float(b[0]) >= float(b[1])


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"step_size": 0.0, "L": 1.0}, "step_size"),
        ({"step_size": 0.1, "L": 0.0}, "L"),
        ({"step_size": 0.1, "L": -1.0}, "L"),
        ({"step_size": 0.1, "L": 1.0, "inverse_mass": -1.0}, "inverse_mass"),
        ({"step_size": 0.1, "L": 1.0, "integrator": "euler"}, "integrator"),
        ({"step_size": 0.1, "L": 1.0, "jitter": 1}, "jitter"),
    ],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(ArgumentError) as e:
        idf.mams(lambda x: jnp.sum(x**2), **kwargs)
    assert e.value.argument == name
