"""idf.sample_tuned: tune then sample, with the tuning cost recorded in the Trace."""

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import idf_jax as idf
from idf_jax._checks import ArgumentError
from tests.helpers import assert_within

SD = jnp.array([0.5, 1.0, 2.0])


def energy(x):
    return 0.5 * jnp.sum((x / SD) ** 2)


X0 = jax.random.normal(jax.random.key(0), (16, 3))


@pytest.mark.parametrize(
    "method",
    [
        "auto",
        pytest.param("mclmc", marks=pytest.mark.slow),
        pytest.param("chees", marks=pytest.mark.slow),
    ],
)
def test_moments_and_cost(method):
    tr = idf.sample_tuned(energy, jax.random.key(1), X0, 300, method, num_warmup=200)
    z = np.asarray(tr.positions) / np.asarray(SD)[None, None]
    assert_within(z**2, np.ones(3), z=6.0, what="E (x / sd)^2")
    assert tr.stats["tuning_grad_evals"].shape == (16,)
    assert float(tr.stats["tuning_grad_evals"][0]) > 200
    assert float(tr.stats["tuning_seconds"][0]) > 0
    assert float(tr.stats["sampling_grad_evals"][0]) >= 300
    assert float(tr.stats["step_size"][0]) > 0


@pytest.mark.slow
@pytest.mark.parametrize("method", ["hmc", "mala", "meads"])
def test_window_and_meads_methods(method):
    tr = idf.sample_tuned(energy, jax.random.key(1), X0, 300, method, num_warmup=200)
    z = np.asarray(tr.positions) / np.asarray(SD)[None, None]
    assert_within(z**2, np.ones(3), z=6.0, what="E (x / sd)^2")


def test_nuts_is_lazy():
    if importlib.util.find_spec("idf_jax.samplers.nuts") is None:
        with pytest.raises(ArgumentError) as e:
            idf.sample_tuned(energy, jax.random.key(1), X0, 10, "nuts", num_warmup=20)
        assert e.value.argument == "method"
    else:
        tr = idf.sample_tuned(energy, jax.random.key(1), X0, 50, "nuts", num_warmup=100)
        assert tr.positions.shape == (16, 50, 3)


def test_bad_arguments():
    with pytest.raises(ArgumentError) as e:
        idf.sample_tuned(energy, jax.random.key(1), X0, 10, "metropolis")
    assert e.value.argument == "method"
    with pytest.raises(ArgumentError) as e:
        idf.sample_tuned(energy, jax.random.key(1), jnp.ones((4, 3), jnp.int32), 10)
    assert e.value.argument == "x0_batch"
    with pytest.raises(ArgumentError) as e:
        idf.sample_tuned(energy, jax.random.key(1), X0, 0)
    assert e.value.argument == "num_draws"
