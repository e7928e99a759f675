"""One policy for arguments: `ArgumentError` (a ValueError) naming the argument."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import idf_jax as idf
from idf_jax._checks import ArgumentError


def quad(x):
    return 0.5 * jnp.sum(x**2)


X0 = jnp.zeros((4, 2))
KEY = jax.random.key(0)


@pytest.mark.parametrize(
    "call,argument",
    [
        (lambda: idf.sample(idf.mala(quad, 0.1), 0, X0, 10), "key"),
        (lambda: idf.sample(idf.mala(quad, 0.1), "seed", X0, 10), "key"),
        (lambda: idf.sample(idf.mala(quad, 0.1), np.int64(3), X0, 10), "key"),
        (lambda: idf.sample(quad, KEY, X0, 10), "sampler"),
        (lambda: idf.sample(idf.mala(quad, 0.1), KEY, jnp.zeros(4), 10), "x0_batch"),
        (
            lambda: idf.sample(idf.mala(quad, 0.1), KEY, jnp.zeros((4, 2), jnp.int32), 10),
            "x0_batch",
        ),
        (lambda: idf.sample(idf.mala(quad, 0.1), KEY, X0, 0), "num_steps"),
        (lambda: idf.sample(idf.mala(quad, 0.1), KEY, X0, 10, burn_in=10), "burn_in"),
        (lambda: idf.sample(idf.mala(quad, 0.1), KEY, X0, 10, thin=3), "thin"),
        (lambda: idf.mala(quad, -0.1), "step_size"),
        (lambda: idf.hmc(quad, 0.1, 0), "num_integration_steps"),
        (lambda: idf.replica_exchange(idf.mala(quad, 0.1), [2.0, 1.0]), "temperatures"),
        (lambda: idf.replica_exchange(idf.mala(quad, 0.1), [1.0, 2.0], scheme="x"), "scheme"),
        (lambda: idf.adapt(idf.ula(quad, 0.1), KEY, X0, 20), "sampler"),
        (
            lambda: idf.adapt(idf.mala(quad, 0.1), KEY, X0, 20, target_acceptance=1.5),
            "target_acceptance",
        ),
        (lambda: idf.relax(quad, X0, method="newton"), "method"),
        (lambda: idf.sample_equilibrium(quad, KEY, X0, num_steps=10, relax="yes"), "relax"),
        (lambda: idf.sample_equilibrium(quad, 7, X0, num_steps=10), "key"),
    ],
)
def test_bad_arguments_name_the_argument(call, argument):
    with pytest.raises(ArgumentError) as info:
        call()
    assert info.value.argument == argument
    assert isinstance(info.value, ValueError)


def test_one_scalar_per_chain_message_says_what_to_do():
    with pytest.raises(ArgumentError, match=r"shape \(4, 1\)"):
        idf.sample(idf.mala(quad, 0.1), KEY, jnp.zeros(4), 10)


def test_legacy_uint32_keys_are_accepted():
    tr = idf.sample(idf.mala(quad, 0.1), jax.random.PRNGKey(0), X0, 10)
    assert tr.energies.shape == (4, 10)
