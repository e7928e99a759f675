"""Type aliases shared by the package, in one place (jaxtyping for shapes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray, Scalar

PyTree = Any
"""Any nested structure of arrays (tuples, lists, dicts, equinox Modules)."""

EnergyFn = Callable[[PyTree], jax.Array]
"""`energy_fn(x) -> ()`: the energy of one state; the target is p(x) ∝ exp(-E(x)/T)."""

Key = PRNGKeyArray
FloatScalar = Float[ArrayLike, ""]
"""A float scalar: a Python float or a 0-d array (traced or not)."""

__all__ = [
    "Array",
    "ArrayLike",
    "Bool",
    "EnergyFn",
    "Float",
    "FloatScalar",
    "Int",
    "Key",
    "PRNGKeyArray",
    "PyTree",
    "Scalar",
]
