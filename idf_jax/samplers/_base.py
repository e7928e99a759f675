"""The sampler contract shared by every family (private)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import _tree

PyTree = Any
EnergyFn = Callable[[PyTree], jax.Array]


class Sampler(NamedTuple):
    """A pair of pure functions.

    `init(position, key=None) -> state` builds the state of one chain;
    `step(key, state) -> (state, info)` advances it by one transition.
    Both are jit / vmap / grad safe; neither holds hidden state.
    """

    init: Callable[..., Any]
    step: Callable[[jax.Array, Any], tuple[Any, Any]]


def check_positive(name: str, value) -> None:
    """Raise `ValueError` naming `name` when a concrete `value` is not > 0.

    Traced values (inside jit / vmap / grad, e.g. during adaptation) are left alone.
    """
    if value is None:
        raise ValueError(f"{name} must be > 0, got None")
    for leaf in jax.tree.leaves(value):
        if isinstance(leaf, jax.core.Tracer):
            return
        arr = np.asarray(leaf, dtype=np.float64)
        if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
            raise ValueError(f"{name} must be finite and > 0, got {value!r}")


def check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def energy_and_grad(energy_fn: EnergyFn, position: PyTree):
    """(E(x), grad E(x)) with a scalar check that names the problem."""
    energy, grad = jax.value_and_grad(_scalar(energy_fn))(position)
    return energy, grad


def _scalar(energy_fn):
    def fn(x):
        e = energy_fn(x)
        if jnp.ndim(e) != 0:
            raise ValueError(
                f"energy_fn must return a scalar for one state, got shape {jnp.shape(e)}; "
                "batching over chains is done by vmap in idf.sample"
            )
        return e

    return fn


def is_divergent(energy, grad) -> jax.Array:
    """A proposal diverged when E is NaN or -inf, or E is finite and grad E is not.

    E = +inf is a legitimate zero-density region (a hard wall): it is rejected, not divergent.
    """
    bad_energy = jnp.isnan(energy) | (energy == -jnp.inf)
    return bad_energy | (jnp.isfinite(energy) & ~_tree.all_finite(grad))


def safe_log_accept(log_ratio) -> jax.Array:
    """NaN log acceptance ratios become rejections (-inf)."""
    return jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_ratio)
