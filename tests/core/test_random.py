"""The samplers' fused threefry draws are jax.random's, bit for bit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from idf_jax.samplers import _random


def _same(a, b):
    if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
        a, b = jax.random.key_data(a), jax.random.key_data(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


KEYS = [0, 1, 42, 2**31 - 1]


@pytest.mark.parametrize("seed", KEYS)
def test_fold_in_and_split_match_jax(seed):
    key = jax.random.key(seed)
    for data in [0, 1, 7, 123_456, 2**31 - 1, np.int32(-3), np.uint32(2**32 - 1)]:
        _same(_random.fold_in(key, data), jax.random.fold_in(key, data))
    for num in [1, 2, 3, 5]:
        _same(_random.split(key, num), jax.random.split(key, num))


@pytest.mark.parametrize("seed", KEYS)
@pytest.mark.parametrize("shape", [(), (1,), (100,), (3, 7), (2, 3, 4)])
def test_normal_and_uniform_match_jax_float32(seed, shape):
    key = jax.random.key(seed)
    _same(_random.normal(key, shape, jnp.float32), jax.random.normal(key, shape, jnp.float32))
    _same(_random.uniform(key, shape, jnp.float32), jax.random.uniform(key, shape, jnp.float32))
    _same(
        _random.uniform(key, shape, jnp.float32, -2.0, 3.0),
        jax.random.uniform(key, shape, jnp.float32, -2.0, 3.0),
    )


def test_float64_matches_jax():
    with jax.enable_x64(True):
        key = jax.random.key(3)
        for shape in [(), (5,), (4, 3)]:
            _same(
                _random.normal(key, shape, jnp.float64), jax.random.normal(key, shape, jnp.float64)
            )
            _same(
                _random.uniform(key, shape, jnp.float64),
                jax.random.uniform(key, shape, jnp.float64),
            )
        _same(_random.fold_in(key, 9), jax.random.fold_in(key, 9))


def test_matches_under_jit_and_vmap():
    keys = jax.random.split(jax.random.key(5), 8)

    def ours(k, i):
        k1, k2 = _random.split(_random.fold_in(k, i))
        return _random.normal(k1, (10,), jnp.float32), _random.uniform(k2, (), jnp.float32)

    def theirs(k, i):
        k1, k2 = jax.random.split(jax.random.fold_in(k, i))
        return jax.random.normal(k1, (10,), jnp.float32), jax.random.uniform(k2, (), jnp.float32)

    f = jax.jit(jax.vmap(ours, (0, None)))
    g = jax.jit(jax.vmap(theirs, (0, None)))
    for i in [0, 3]:
        for a, b in zip(f(keys, i), g(keys, i)):
            _same(a, b)
    # A traced step index, as in the driver's scan.
    _same(jax.jit(ours)(keys[0], jnp.int32(11))[0], theirs(keys[0], 11)[0])


def test_normal_like_matches_tree_helper():
    from idf_jax import _tree

    key = jax.random.key(8)
    for x in [jnp.zeros((4, 3)), {"a": jnp.zeros(3), "b": jnp.zeros((2, 2))}]:
        for a, b in zip(
            jax.tree.leaves(_random.normal_like(key, x)), jax.tree.leaves(_tree.normal_like(key, x))
        ):
            _same(a, b)


def test_other_keys_fall_back_to_jax_random():
    for key in [jax.random.key(1, impl="rbg"), jax.random.PRNGKey(1)]:
        _same(_random.normal(key, (6,), jnp.float32), jax.random.normal(key, (6,), jnp.float32))
        _same(_random.split(key), jax.random.split(key))
        _same(_random.fold_in(key, 4), jax.random.fold_in(key, 4))
    key = jax.random.key(2)
    _same(_random.normal(key, (6,), jnp.bfloat16), jax.random.normal(key, (6,), jnp.bfloat16))
    with jax.threefry_partitionable(False):
        _same(_random.normal(key, (6,), jnp.float32), jax.random.normal(key, (6,), jnp.float32))
