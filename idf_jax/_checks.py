"""One policy for arguments at every entry point (private).

Configuration mistakes raise `ArgumentError` at trace time, naming the argument, so the
service and the CLI map an error to a field without parsing its message. Values that are
only known inside `jit` are not checked here (see `eqx.error_if` where a value matters).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.core import Tracer

__all__ = ["ArgumentError", "as_key", "is_traced", "positive", "positive_int", "nonnegative_int"]


class ArgumentError(ValueError):
    """A bad argument. `argument` names it (`"step_size"`, `"x0_batch"`, ...)."""

    def __init__(self, argument: str, message: str):
        self.argument = argument
        super().__init__(f"{argument}: {message}" if not message.startswith(argument) else message)


def is_traced(value: Any) -> bool:
    """True when any leaf of `value` is a tracer (inside jit / vmap / grad)."""
    return any(isinstance(leaf, Tracer) for leaf in jax.tree.leaves(value))


def positive(name: str, value: Any) -> None:
    """Raise `ArgumentError` when a concrete `value` (any PyTree) is not finite and > 0.

    Traced values are left alone: they are data, checked by the caller where it matters.
    """
    if value is None:
        raise ArgumentError(name, f"{name} must be > 0, got None")
    if is_traced(value):
        return
    for leaf in jax.tree.leaves(value):
        try:
            arr = np.asarray(leaf, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise ArgumentError(name, f"{name} must be a number > 0, got {value!r}") from e
        if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
            raise ArgumentError(name, f"{name} must be finite and > 0, got {value!r}")


def positive_int(name: str, value: Any) -> int:
    """`value` as a Python int >= 1, or `ArgumentError` (bools and floats are refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ArgumentError(name, f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def nonnegative_int(name: str, value: Any) -> int:
    """`value` as a Python int >= 0, or `ArgumentError`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ArgumentError(name, f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def as_key(key: Any, name: str = "key") -> jax.Array:
    """A JAX PRNG key. One rule everywhere: integers and strings are refused.

    Typed keys (`jax.random.key(seed)`) and legacy uint32 keys (`jax.random.PRNGKey`)
    are accepted; a Python or numpy integer is an error that says how to build a key.
    """
    if isinstance(key, (bool, int, np.integer)):
        raise ArgumentError(
            name, f"{name} must be a JAX PRNG key (jax.random.key(seed)), got the integer {key!r}"
        )
    if isinstance(key, (str, bytes)):
        raise ArgumentError(
            name, f"{name} must be a JAX PRNG key (jax.random.key(seed)), got a string"
        )
    if not hasattr(key, "dtype"):
        raise ArgumentError(
            name, f"{name} must be a JAX PRNG key (jax.random.key(seed)), got {type(key).__name__}"
        )
    if jax.numpy.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    if key.dtype == np.uint32 and key.shape[-1:] == (2,):
        return key
    raise ArgumentError(
        name, f"{name} must be a JAX PRNG key (jax.random.key(seed)), got an array of {key.dtype}"
    )
