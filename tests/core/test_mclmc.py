"""idf.mclmc: microcanonical Langevin moments, PyTrees, float64, compile-once, jit/vmap/grad."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import idf_jax as idf
from idf_jax._checks import ArgumentError
from tests.helpers import count_traces

COV = np.array([[1.0, 0.8, 0.0], [0.8, 1.0, 0.0], [0.0, 0.0, 4.0]])
PREC = np.linalg.inv(COV)


def correlated(x):
    return 0.5 * x @ jnp.asarray(PREC, x.dtype) @ x


def _cov(draws):
    flat = np.asarray(draws, np.float64).reshape(-1, draws.shape[-1])
    return np.cov(flat.T)


@pytest.mark.parametrize(
    "integrator", ["mclachlan", pytest.param("leapfrog", marks=pytest.mark.slow)]
)
def test_correlated_gaussian_covariance(integrator):
    x0 = jax.random.normal(jax.random.key(0), (32, 3))
    s = idf.mclmc(correlated, 0.4, 1.5, integrator=integrator)
    tr = idf.sample(s, jax.random.key(1), x0, 1500, burn_in=300)
    # Unadjusted, small step: the bias is O(eps^2) and below the Monte-Carlo error here.
    np.testing.assert_allclose(_cov(tr.positions), COV, atol=0.12 * 4)
    np.testing.assert_allclose(np.diag(_cov(tr.positions)), np.diag(COV), rtol=0.12)
    assert int(tr.stats["num_divergent"].sum()) == 0
    grads = {"mclachlan": 2.0, "leapfrog": 1.0}[integrator]
    assert float(tr.stats["num_grad_evals"].mean()) == grads
    # Energy errors are recorded for the tuner and the |dH| histogram.
    assert 0 < float(tr.stats["mean_abs_energy_error"].mean()) < 0.1


def test_pytree_positions_temperature_and_float64():
    def energy(x):
        return 0.5 * jnp.sum(x["a"] ** 2) + 0.5 * jnp.sum((x["b"] / 2.0) ** 2)

    with jax.enable_x64(True):
        x0 = {"a": jnp.zeros((16, 2), jnp.float64), "b": jnp.ones((16, 1), jnp.float64)}
        tr = idf.sample(
            idf.mclmc(energy, 0.5, 2.0, temperature=2.0), jax.random.key(0), x0, 1200, burn_in=200
        )
        assert tr.positions["a"].dtype == jnp.float64
        var_a = float(np.var(np.asarray(tr.positions["a"])))
        var_b = float(np.var(np.asarray(tr.positions["b"])))
    # T = 2 doubles the variances: Var a = 2, Var b = 8.
    assert var_a == pytest.approx(2.0, rel=0.15)
    assert var_b == pytest.approx(8.0, rel=0.2)


def test_new_step_size_reuses_compiled_run():
    energy, calls = count_traces(lambda x: 0.5 * jnp.sum(x**2))
    x0 = jnp.zeros((4, 3))
    idf.sample(idf.mclmc(energy, 0.3, 1.0), jax.random.key(0), x0, 20)
    first = len(calls)
    idf.sample(idf.mclmc(energy, 0.5, 2.0, temperature=1.5), jax.random.key(0), x0, 20)
    assert len(calls) == first


@pytest.mark.slow
def test_jit_vmap_grad():
    def energy(x):
        return 0.5 * jnp.sum(x**2)

    x0 = jnp.ones((4, 2))

    def second_moment(temperature):
        s = idf.mclmc(energy, 0.3, 1.0, temperature=temperature)
        return jnp.mean(idf.sample(s, jax.random.key(0), x0, 30).positions ** 2)

    a = jax.jit(second_moment)(1.0)
    b = jax.vmap(second_moment)(jnp.array([1.0, 2.0]))
    g = jax.grad(second_moment)(1.0)
    assert np.isfinite(float(a)) and b.shape == (2,) and np.isfinite(float(g))


def test_step_and_nan_handling():
    s = idf.mclmc(lambda x: jnp.where(x[0] > 1.0, jnp.nan, 0.5 * jnp.sum(x**2)), 2.0, 1.0)
    state = s.init(jnp.array([0.9, 0.0]), jax.random.key(0))
    for i in range(5):
        state, info = s.step(jax.random.key(i), state)
        assert np.all(np.isfinite(np.asarray(state.position)))
    # The velocity stays a unit vector.
    assert float(jnp.linalg.norm(state.momentum)) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"step_size": 0.0, "L": 1.0}, "step_size"),
        ({"step_size": -1.0, "L": 1.0}, "step_size"),
        ({"step_size": 0.1, "L": 0.0}, "L"),
        ({"step_size": 0.1, "L": -2.0}, "L"),
        ({"step_size": 0.1, "L": 1.0, "temperature": 0.0}, "temperature"),
        ({"step_size": 0.1, "L": 1.0, "integrator": "rk4"}, "integrator"),
    ],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(ArgumentError) as e:
        idf.mclmc(lambda x: jnp.sum(x**2), **kwargs)
    assert e.value.argument == name


def test_one_dimensional_state_is_refused():
    with pytest.raises(ArgumentError, match="dimension"):
        idf.mclmc(lambda x: jnp.sum(x**2), 0.1, 1.0).init(jnp.zeros((1,)))
