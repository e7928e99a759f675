"""Composable constraints on states: penalties added to the energy, or exact projections.

A constraint is an `equinox.Module` with
- `penalty(x, energy) -> scalar >= 0`: zero exactly when satisfied (energy units);
- `project(x) -> x`: maps onto the feasible set where that is cheap and exact (identity
  otherwise);
- `violation(x, energy) -> scalar >= 0`: how far from feasible (the constraint's units).

`apply_constraints(energy_fn, constraints)` returns E(x) + sum of penalties;
`project_all(constraints)` composes the projections.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

__all__ = [
    "Constraint",
    "Box",
    "Equality",
    "Inequality",
    "EnergyMax",
    "apply_constraints",
    "project_all",
    "total_violation",
]

PyTree = Any
_MODES = ("penalty", "project")


def _check_mode(mode: str, allowed=_MODES) -> str:
    if mode not in allowed:
        raise ValueError(f"mode must be one of {allowed}, got {mode!r}")
    return mode


class Constraint(eqx.Module):
    """Base class: a constraint with no effect."""

    def penalty(self, x: PyTree, energy=None):
        return jnp.zeros(())

    def project(self, x: PyTree) -> PyTree:
        return x

    def violation(self, x: PyTree, energy=None):
        return jnp.zeros(())


class Box(Constraint):
    """lower <= x <= upper, leaf-wise (scalars or PyTrees like x; None = unbounded).

    mode='project' clips exactly; mode='penalty' adds weight * sum(overshoot^2).
    """

    lower: Any = None
    upper: Any = None
    weight: float = eqx.field(static=True, default=1e3)
    mode: str = eqx.field(static=True, default="project")

    def __check_init__(self):
        _check_mode(self.mode)
        if self.lower is None and self.upper is None:
            raise ValueError("Box needs a lower or an upper bound")

    def _bounds(self, x):
        lo = self.lower if self.lower is not None else -jnp.inf
        hi = self.upper if self.upper is not None else jnp.inf
        lo = lo if _tree_like(lo, x) else jax.tree.map(lambda _: lo, x)
        hi = hi if _tree_like(hi, x) else jax.tree.map(lambda _: hi, x)
        return lo, hi

    def project(self, x):
        if self.mode != "project":
            return x
        lo, hi = self._bounds(x)
        return jax.tree.map(jnp.clip, x, lo, hi)

    def violation(self, x, energy=None):
        lo, hi = self._bounds(x)
        over = jax.tree.map(
            lambda a, l, h: jnp.sum(jnp.maximum(a - h, 0.0) ** 2 + jnp.maximum(l - a, 0.0) ** 2),
            x,
            lo,
            hi,
        )
        return jnp.sqrt(sum(jax.tree.leaves(over)))

    def penalty(self, x, energy=None):
        if self.mode == "project":
            return jnp.zeros(())
        return self.weight * self.violation(x) ** 2


class Equality(Constraint):
    """fn(x) == target (fn returns an array); penalty weight * sum((fn(x) - target)^2)."""

    fn: Callable = eqx.field(static=True)
    target: Any = 0.0
    weight: float = eqx.field(static=True, default=1e3)

    def violation(self, x, energy=None):
        return jnp.sqrt(jnp.sum((jnp.asarray(self.fn(x)) - self.target) ** 2))

    def penalty(self, x, energy=None):
        return self.weight * jnp.sum((jnp.asarray(self.fn(x)) - self.target) ** 2)


class Inequality(Constraint):
    """fn(x) <= 0 elementwise; penalty weight * sum(max(fn(x), 0)^2)."""

    fn: Callable = eqx.field(static=True)
    weight: float = eqx.field(static=True, default=1e3)

    def violation(self, x, energy=None):
        return jnp.sqrt(jnp.sum(jnp.maximum(jnp.asarray(self.fn(x)), 0.0) ** 2))

    def penalty(self, x, energy=None):
        return self.weight * jnp.sum(jnp.maximum(jnp.asarray(self.fn(x)), 0.0) ** 2)


class EnergyMax(Constraint):
    """E(x) <= value; penalty weight * max(E - value, 0)^2 (energy units squared)."""

    value: float
    weight: float = eqx.field(static=True, default=1.0)

    def violation(self, x, energy=None):
        if energy is None:
            raise ValueError("EnergyMax needs the energy of the state")
        return jnp.maximum(energy - self.value, 0.0)

    def penalty(self, x, energy=None):
        return self.weight * self.violation(x, energy) ** 2


def _tree_like(s, x) -> bool:
    if isinstance(s, (int, float)) or getattr(s, "ndim", None) == 0:
        return False
    return jax.tree.structure(s) == jax.tree.structure(x)


def _check_list(constraints) -> tuple[Constraint, ...]:
    if constraints is None:
        return ()
    if isinstance(constraints, Constraint):
        return (constraints,)
    if not isinstance(constraints, Sequence):
        raise ValueError(
            f"constraints must be a Constraint or a sequence of them, got {type(constraints).__name__}"
        )
    for c in constraints:
        if not isinstance(c, Constraint):
            raise ValueError(
                f"constraints must be idf_jax.constraints objects, got {type(c).__name__}"
            )
    return tuple(constraints)


def apply_constraints(energy_fn, constraints) -> Callable[[PyTree], jax.Array]:
    """E_c(x) = E(x) + sum_k penalty_k(x, E(x))."""
    cs = _check_list(constraints)
    if not cs:
        return energy_fn

    def constrained(x):
        e = energy_fn(x)
        return e + sum(c.penalty(x, e) for c in cs)

    return constrained


def project_all(constraints) -> Callable[[PyTree], PyTree]:
    """x -> P_k(...P_1(x)), composing every constraint's projection."""
    cs = _check_list(constraints)

    def project(x):
        for c in cs:
            x = c.project(x)
        return x

    return project


def total_violation(constraints, x, energy) -> jax.Array:
    """Sum of violations of every constraint at one state."""
    cs = _check_list(constraints)
    return sum((c.violation(x, energy) for c in cs), jnp.zeros(()))
