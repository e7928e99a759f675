"""The sampler contract shared by every family (private).

A sampler is an `equinox.Module`: a PyTree whose numeric parameters (step size,
temperature, mass) are array leaves and whose energy is either a plain function (held
static, compared by identity) or itself a callable PyTree (an `eqx.Module` energy whose
tables are arrays). So a sampler passes through `jax.jit` as an argument, rebuilding it
with new numbers reuses the compiled code, and `jax.vmap` / `jax.grad` over its
parameters work.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from .._checks import ArgumentError, positive, positive_int
from .._custom_types import EnergyFn, PyTree

__all__ = [
    "Energy",
    "EnergyFn",
    "FunctionSampler",
    "PyTree",
    "Sampler",
    "as_energy",
    "as_param",
    "cast",
    "check_positive",
    "check_positive_int",
    "energy_and_grad",
    "float_dtype",
    "all_finite",
    "is_divergent",
    "safe_log_accept",
]


class Sampler(eqx.Module):
    """A transition kernel over one chain, as a PyTree.

    `init(position, key=None) -> state` builds the state of one chain;
    `step(key, state) -> (state, info)` advances it by one transition.
    Both are pure and jit / vmap / grad safe. `idf.sample` vmaps them over chains.
    Subclass it (fields for parameters), or wrap two plain functions in
    `FunctionSampler(init, step)`.
    """

    def __hash__(self) -> int:
        # By structure and static fields only (arrays are data), so `jax.jit(s.step)`
        # works on a sampler with array parameters, and equal structures share a hash.
        leaves, treedef = jax.tree.flatten(self)
        return hash((treedef, tuple(l for l in leaves if not eqx.is_array(l))))

    @abc.abstractmethod
    def init(self, position: PyTree, key: jax.Array | None = None) -> Any:
        """The state of one chain at `position` (its energy and gradient cached)."""

    @abc.abstractmethod
    def step(self, key: jax.Array, state: Any) -> tuple[Any, Any]:
        """One transition: `(new_state, info)`."""


class FunctionSampler(Sampler):
    """A sampler given as two pure functions (held static, compared by identity)."""

    init_fn: Callable[..., Any] = eqx.field(static=True)
    step_fn: Callable[[jax.Array, Any], tuple[Any, Any]] = eqx.field(static=True)

    def init(self, position: PyTree, key: jax.Array | None = None) -> Any:
        return self.init_fn(position, key)

    def step(self, key: jax.Array, state: Any) -> tuple[Any, Any]:
        return self.step_fn(key, state)


class Energy(eqx.Module):
    """A plain energy function held static (compared by identity), as a callable PyTree.

    `as_energy` wraps plain functions in it so every sampler's `energy_fn` is a PyTree
    that `jax.jit` accepts; an `eqx.Module` energy is used as it is (its arrays traced).
    """

    fn: Callable[[PyTree], Any] = eqx.field(static=True)

    def __call__(self, x: PyTree) -> jax.Array:
        return self.fn(x)


def as_energy(energy_fn: Any, name: str = "energy_fn") -> Callable[[PyTree], jax.Array]:
    """`energy_fn` as a callable PyTree: an `eqx.Module` as is, a function wrapped in `Energy`."""
    if isinstance(energy_fn, eqx.Module):
        if not callable(energy_fn):
            raise ArgumentError(name, f"{name} must be callable x -> scalar energy")
        return energy_fn
    if not callable(energy_fn):
        raise ArgumentError(
            name, f"{name} must be callable x -> scalar energy, got {type(energy_fn).__name__}"
        )
    return Energy(energy_fn)


def as_param(value: Any) -> Any:
    """A numeric parameter as array leaves (PyTrees kept, Python numbers become arrays).

    Python floats become weakly typed arrays, so they follow the state's float type.
    """
    return jax.tree.map(lambda v: v if isinstance(v, jax.Array) else jnp.asarray(v), value)


def float_dtype(tree: PyTree) -> Any:
    """The float type of a state (float32, or float64 under x64)."""
    dts = [jnp.result_type(l) for l in jax.tree.leaves(tree)]
    floats = [d for d in dts if jnp.issubdtype(d, jnp.floating)]
    return jnp.result_type(*floats) if floats else jnp.result_type(float)


def check_positive(name: str, value) -> None:
    """Raise `ArgumentError` naming `name` when a concrete `value` is not finite and > 0.

    Traced values (inside jit / vmap / grad, e.g. during adaptation) are left alone.
    """
    positive(name, value)


def check_positive_int(name: str, value) -> int:
    """`value` as an int >= 1, or `ArgumentError` naming `name`."""
    return positive_int(name, value)


def energy_and_grad(energy_fn: EnergyFn, position: PyTree):
    """(E(x), grad E(x)) with a scalar check that names the problem."""
    energy, grad = jax.value_and_grad(_scalar(energy_fn))(position)
    return energy, grad


def _scalar(energy_fn):
    def fn(x):
        e = energy_fn(x)
        if jnp.ndim(e) != 0:
            raise ArgumentError(
                "energy_fn",
                f"energy_fn must return a scalar for one state, got shape {jnp.shape(e)}; "
                "batching over chains is done by vmap in idf.sample",
            )
        return e

    return fn


def is_divergent(energy, grad) -> jax.Array:
    """A proposal diverged when E is NaN or -inf, or E is finite and grad E is not.

    E = +inf is a legitimate zero-density region (a hard wall): it is rejected, not divergent.
    """
    bad_energy = jnp.isnan(energy) | (energy == -jnp.inf)
    return bad_energy | (jnp.isfinite(energy) & ~all_finite(grad))


def all_finite(tree: PyTree) -> jax.Array:
    """True when every float in `tree` is finite (integer leaves always are).

    Computed as one float sum: x - x is 0 for finite x and NaN for inf or NaN, so the
    sum of x - x is finite exactly when every x is. XLA fuses that sum with its
    producers; `jnp.all(jnp.isfinite(x))` is a separate boolean reduction (on CPU a
    reduce-window and a reduce) on the sampler's hot path.
    """
    total = jnp.zeros(())
    for leaf in jax.tree.leaves(tree):
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
            total = total + jnp.sum(leaf - leaf).astype(total.dtype)
    return jnp.isfinite(total)


def safe_log_accept(log_ratio) -> jax.Array:
    """NaN log acceptance ratios become rejections (-inf)."""
    return jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_ratio)


def cast(value: Any, like: PyTree) -> Any:
    """`value` (a scalar or PyTree parameter) in the float type of the state `like`."""
    dt = float_dtype(like)
    return jax.tree.map(lambda v: jnp.asarray(v, dt), value)
