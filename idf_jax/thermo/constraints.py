"""Composable constraints on states: penalties added to the energy, or exact projections.

A constraint is an `equinox.Module` with
- `penalty(x, energy) -> scalar >= 0`: zero exactly when satisfied (energy units);
- `project(x) -> x`: maps onto the feasible set where that is cheap and exact (identity
  otherwise);
- `violation(x, energy) -> scalar >= 0`: how far from feasible (the constraint's units).

`apply_constraints(energy_fn, constraints)` returns E(x) + sum of penalties;
`project_all(constraints)` composes the projections; `penalised_and_projection` gives
both at once (with a user projection); `projected_gradient` is the gradient on the
feasible set that minimisers under a projection use (zero exactly at a constrained
stationary point).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from .. import _tree
from .._checks import is_traced

__all__ = [
    "Constraint",
    "Box",
    "Sphere",
    "Equality",
    "Inequality",
    "EnergyMax",
    "apply_constraints",
    "project_all",
    "penalised_and_projection",
    "projected_gradient",
    "normal_step",
    "total_violation",
    "parse",
    "validate",
    "has_projection",
    "KNOWN_NAMES",
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

    @property
    def projects(self) -> bool:
        """True when `project` is a non-trivial exact projection."""
        return False

    def check(self, x: PyTree, energy_fn=None) -> None:
        """Raise ValueError when the constraint cannot apply to states shaped like `x`."""

    def __call__(self, x: PyTree) -> PyTree:
        """The constraint as a projection callable (`relax(..., project=Sphere())`): a
        PyTree, so its arrays (bounds, radius) are data and can be differentiated."""
        return self.project(x)


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

    @property
    def projects(self) -> bool:
        return self.mode == "project"

    def check(self, x, energy_fn=None):
        for name, b in (("lower", self.lower), ("upper", self.upper)):
            if b is None:
                continue
            if _tree_like(b, x):
                pairs = zip(jax.tree.leaves(b), jax.tree.leaves(x))
            elif jax.tree.structure(b).num_leaves == 1:
                pairs = ((b, leaf) for leaf in jax.tree.leaves(x))
            else:
                raise ValueError(
                    f"Box {name} bound has PyTree structure {jax.tree.structure(b)}, "
                    f"which matches neither a scalar nor the state's {jax.tree.structure(x)}"
                )
            for bl, xl in pairs:
                bs, xs = jnp.shape(bl), jnp.shape(xl)
                try:
                    out = jnp.broadcast_shapes(bs, xs)
                except ValueError:
                    out = None
                if out != tuple(xs):
                    raise ValueError(
                        f"Box {name} bound of shape {bs} is inconsistent with a state leaf of "
                        f"shape {xs}"
                    )
        if self.lower is not None and self.upper is not None:
            lo, hi = self._bounds(x)
            bad = jax.tree.leaves(jax.tree.map(lambda a, b: jnp.any(a > b), lo, hi))
            if any(bool(v) for v in bad if not is_traced(v)):
                raise ValueError("Box has lower > upper somewhere")

    def project(self, x):
        if self.mode != "project":
            return x
        lo, hi = self._bounds(x)
        return jax.tree.map(jnp.clip, x, lo, hi)

    def _sq_overshoot(self, x):
        lo, hi = self._bounds(x)
        over = jax.tree.map(
            lambda a, l, h: jnp.sum(jnp.maximum(a - h, 0.0) ** 2 + jnp.maximum(l - a, 0.0) ** 2),
            x,
            lo,
            hi,
        )
        return sum(jax.tree.leaves(over))

    def violation(self, x, energy=None):
        return jnp.sqrt(self._sq_overshoot(x))

    def penalty(self, x, energy=None):
        # weight * sum(overshoot^2), written without the sqrt of `violation` so that its
        # gradient is finite (zero) inside the box.
        if self.mode == "project":
            return jnp.zeros(())
        return self.weight * self._sq_overshoot(x)


class Sphere(Constraint):
    """Rows on a sphere: |x[..., :]| == radius along the last axis of every leaf.

    mode='project' normalises exactly (points on a sphere: the Thomson problem);
    mode='penalty' adds weight * sum((|row| - radius)^2).
    """

    radius: Any = 1.0
    weight: float = eqx.field(static=True, default=1e3)
    mode: str = eqx.field(static=True, default="project")

    def __check_init__(self):
        _check_mode(self.mode)
        r = self.radius
        if not is_traced(r) and not bool(jnp.all(jnp.asarray(r) > 0)):
            raise ValueError(f"Sphere radius must be > 0, got {r!r}")

    @property
    def projects(self) -> bool:
        return self.mode == "project"

    def check(self, x, energy_fn=None):
        if jnp.ndim(self.radius) != 0:
            raise ValueError(f"Sphere radius must be a scalar, got shape {jnp.shape(self.radius)}")
        for leaf in jax.tree.leaves(x):
            if jnp.ndim(leaf) == 0:
                raise ValueError("Sphere needs state leaves with a last axis (the coordinates)")

    def _norms(self, x):
        return jax.tree.map(lambda a: jnp.linalg.norm(a, axis=-1, keepdims=True), x)

    def project(self, x):
        if self.mode != "project":
            return x
        return jax.tree.map(lambda a, n: self.radius * a / n, x, self._norms(x))

    def _sq_offset(self, x):
        offs = jax.tree.map(lambda n: jnp.sum((n - self.radius) ** 2), self._norms(x))
        return sum(jax.tree.leaves(offs))

    def violation(self, x, energy=None):
        return jnp.sqrt(self._sq_offset(x))

    def penalty(self, x, energy=None):
        if self.mode == "project":
            return jnp.zeros(())
        return self.weight * self._sq_offset(x)


class Equality(Constraint):
    """fn(x) == target (fn returns an array); penalty weight * sum((fn(x) - target)^2)."""

    fn: Callable = eqx.field(static=True)
    target: Any = 0.0
    weight: float = eqx.field(static=True, default=1e3)

    def check(self, x, energy_fn=None):
        out = _eval_shape("Equality", self.fn, x)
        ts = jnp.shape(self.target)
        try:
            ok = jnp.broadcast_shapes(out, ts) == tuple(out)
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(
                f"Equality target of shape {ts} is inconsistent with fn(x) of shape {out}"
            )

    def violation(self, x, energy=None):
        return jnp.sqrt(jnp.sum((jnp.asarray(self.fn(x)) - self.target) ** 2))

    def penalty(self, x, energy=None):
        return self.weight * jnp.sum((jnp.asarray(self.fn(x)) - self.target) ** 2)


class Inequality(Constraint):
    """fn(x) <= 0 elementwise; penalty weight * sum(max(fn(x), 0)^2)."""

    fn: Callable = eqx.field(static=True)
    weight: float = eqx.field(static=True, default=1e3)

    def check(self, x, energy_fn=None):
        _eval_shape("Inequality", self.fn, x)

    def violation(self, x, energy=None):
        return jnp.sqrt(jnp.sum(jnp.maximum(jnp.asarray(self.fn(x)), 0.0) ** 2))

    def penalty(self, x, energy=None):
        return self.weight * jnp.sum(jnp.maximum(jnp.asarray(self.fn(x)), 0.0) ** 2)


class EnergyMax(Constraint):
    """E(x) <= value; penalty weight * max(E - value, 0)^2 (energy units squared)."""

    value: float
    weight: float = eqx.field(static=True, default=1.0)

    def check(self, x, energy_fn=None):
        v = self.value
        if not is_traced(v) and not bool(jnp.all(jnp.isfinite(jnp.asarray(v)))):
            raise ValueError(f"EnergyMax value must be finite, got {v!r}")
        if jnp.ndim(v) != 0:
            raise ValueError(f"EnergyMax value must be a scalar, got shape {jnp.shape(v)}")

    def violation(self, x, energy=None):
        if energy is None:
            raise ValueError("EnergyMax needs the energy of the state")
        return jnp.maximum(energy - self.value, 0.0)

    def penalty(self, x, energy=None):
        return self.weight * self.violation(x, energy) ** 2


def _eval_shape(name, fn, x):
    try:
        out = jax.eval_shape(fn, x)
    except Exception as err:  # noqa: BLE001 - re-raised with context
        raise ValueError(f"{name} constraint fn fails on a state shaped like x: {err}") from err
    if not hasattr(out, "shape"):
        raise ValueError(f"{name} constraint fn must return one array, got {out!r}")
    return tuple(out.shape)


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
            "constraints must be a Constraint or a sequence of them, "
            f"got {type(constraints).__name__}"
        )
    for c in constraints:
        if not isinstance(c, Constraint):
            raise ValueError(
                f"constraints must be idf_jax.thermo.constraints objects, got {type(c).__name__}"
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


def penalised_and_projection(energy_fn, constraints, project=None):
    """(E + penalties, the composed projection or None): a user `project` after the
    constraints' own projections, None when nothing projects."""
    cs = _check_list(constraints)
    penalised = apply_constraints(energy_fn, cs)
    proj_c = project_all(cs) if any(c.projects for c in cs) else None
    if project is not None and proj_c is not None:
        return penalised, (lambda x: project(proj_c(x)))
    return penalised, (project if project is not None else proj_c)


#: Relative length of the step against the gradient in `normal_step`.
NORMAL_STEP = 1e-3


def normal_step(x: PyTree, g: PyTree) -> jax.Array:
    """η with |η g| = NORMAL_STEP |x| (0 where g = 0).

    At a constrained stationary point x of an exact projection P, the gradient is normal
    to the feasible set and P(x - η g) = x for any short step: long enough that an
    active box bound is strictly overshot (its clip has Jacobian 0, not a tie), short
    enough to stay on the same side of a sphere.
    """
    gn = jnp.sqrt(_tree.sq_norm(g))
    xn = jnp.sqrt(_tree.sq_norm(x))
    return jnp.where(gn > 0, NORMAL_STEP * jnp.maximum(xn, 1e-6) / jnp.maximum(gn, 1e-30), 0.0)


def projected_gradient(project: Callable[[PyTree], PyTree], x: PyTree, g: PyTree) -> PyTree:
    """The gradient of u -> E(P(u)) at u = x - η g (g = grad E(x), x feasible).

    J_P(u)^T g: the tangential part of g on a sphere (the radial part removed), g with
    the components that push against an active box bound set to zero, g itself inside
    the feasible set. It vanishes exactly at a constrained stationary point, so it is
    the force and the convergence measure of minimisers that project.
    """
    u = _tree.add_scaled(x, g, -normal_step(x, g))
    _, vjp = jax.vjp(project, u)
    (out,) = vjp(g)
    return out


def total_violation(constraints, x, energy) -> jax.Array:
    """Sum of violations of every constraint at one state."""
    cs = _check_list(constraints)
    return sum((c.violation(x, energy) for c in cs), jnp.zeros(()))


# ------------------------------------------------------------ named specs and checks

#: Names `parse` accepts in a dict spec, with what each builds.
KNOWN_NAMES = {
    "energy_max": "EnergyMax(value): E(x) <= value, by penalty",
    "box": "Box(lower, upper) from a (lower, upper) pair, by projection",
    "lower": "Box(lower=value), by projection",
    "upper": "Box(upper=value), by projection",
}


def parse(spec) -> tuple[Constraint, ...]:
    """Constraints from None, a `Constraint`, a sequence of them, or a dict spec.

    A dict maps names in `KNOWN_NAMES` to values, e.g.
    `{'energy_max': 1000.0, 'box': (-5.0, 5.0)}`; an unknown name is a ValueError that
    lists the known ones. Ensemble-level conditions (like the blueprint's
    'entropy_min') are not per-state constraints: `idf_jax.blueprint.engine` handles them.
    """
    if isinstance(spec, dict):
        unknown = sorted(set(spec) - set(KNOWN_NAMES))
        if unknown:
            raise ValueError(
                f"unknown constraint name(s) {unknown}; known names: {sorted(KNOWN_NAMES)}"
            )
        out: list[Constraint] = []
        if "energy_max" in spec:
            out.append(EnergyMax(float(spec["energy_max"])))
        if "box" in spec:
            box = spec["box"]
            if not isinstance(box, (tuple, list)) or len(box) != 2:
                raise ValueError(f"'box' must be a (lower, upper) pair, got {box!r}")
            out.append(Box(lower=box[0], upper=box[1]))
        if "lower" in spec or "upper" in spec:
            out.append(Box(lower=spec.get("lower"), upper=spec.get("upper")))
        return tuple(out)
    return _check_list(spec)


def validate(constraints, x: PyTree, energy_fn=None) -> tuple[Constraint, ...]:
    """Check every constraint against one example state; ValueError on inconsistent shapes."""
    cs = parse(constraints)
    for c in cs:
        c.check(x, energy_fn)
    return cs


def has_projection(constraints) -> bool:
    """True when some constraint projects exactly (e.g. a Box in 'project' mode)."""
    return any(c.projects for c in parse(constraints))
