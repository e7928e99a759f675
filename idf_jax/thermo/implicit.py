"""Differentiable minima: the envelope theorem and the implicit function theorem.

A local minimiser x*(θ) of E(x; θ) satisfies grad_x E(x*; θ) = 0. Differentiating that
identity gives (implicit function theorem)

    dx*/dθ = -H^-1 ∂²E/∂x∂θ,   H = ∂²E/∂x² at x*,

solved matrix-free here (Hessian-vector products, conjugate gradients from lineax), and
for the minimum energy (envelope theorem)

    dE*/dθ = ∂E/∂θ at x*,

which is what `jax.grad` of `E(stop_gradient(x*); θ)` gives.

The rule is written as a JVP (as `optimistix`'s `implicit_jvp`: one transposable linear
solve, lineax's conjugate gradients inside `jax.lax.custom_linear_solve`),
so x*(θ) is differentiable in forward mode (`jax.jvp`, `jax.jacfwd`) and, by JAX's
transposition of that linear map, in reverse mode (`jax.grad`, `jax.jacrev`).

Under an exact projection P (a sphere, a box), x* is a minimum of E restricted to the
feasible set, where grad_x E is not zero but normal to it. There the rule is applied to
f(u) = E(P(u)) at a point u* with P(u*) = x* (u* = x* - η grad E, a short step against
the normal force, so that active box bounds are strictly outside and their Jacobian is
exact): grad f(u*) = 0 is the constrained stationarity condition, and the Hessian of f
is the projected Hessian with the constraint's curvature (the Lagrangian term, e.g.
-λ Π on a sphere) included by autodiff. The tangent of x* is then J_P(u*) du* plus the
projection's own dependence on θ (a bound that moves).

The search that finds x* (annealing, FIRE, L-BFGS with line searches) is never
differentiated: `detach` cuts the energy's parameters out of it, so its loops cost
nothing and produce no NaN. The parameters θ may be arrays inside an `eqx.Module`
energy or values a plain function closes over (hoisted with `jax.closure_convert`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx

from .. import _tree
from .._custom_types import PyTree
from ..samplers._base import Energy
from .constraints import normal_step

__all__ = ["detach", "differentiable", "implicit_minimiser"]


class _Bound(eqx.Module):
    """A closure-converted function: `fn(x, *consts)` with the hoisted values as leaves."""

    fn: Callable[..., Any] = eqx.field(static=True)
    consts: tuple

    def __call__(self, x: PyTree) -> Any:
        return self.fn(x, *self.consts)


def differentiable(energy_fn: Callable[[PyTree], Any], example: PyTree) -> Any:
    """`energy_fn` (or a projection) as a callable PyTree whose array leaves are its θ.

    An `eqx.Module` is returned as it is; a plain function that closes over values being
    differentiated or traced has them hoisted (`jax.closure_convert`); a plain function
    closing over nothing traced is wrapped static (`Energy`).
    """
    if isinstance(energy_fn, eqx.Module):
        return energy_fn
    converted, consts = jax.closure_convert(energy_fn, example)
    if not consts:
        return Energy(energy_fn)
    return _Bound(converted, tuple(consts))


def detach(energy: Any) -> Any:
    """The same energy with `stop_gradient` on every array leaf (for the search)."""
    dynamic, static = eqx.partition(energy, eqx.is_array)
    return eqx.combine(jax.lax.stop_gradient(dynamic), static)


def _composed(energy, project):
    if project is None:
        return energy
    return lambda u: energy(project(u))


def _stationarity(root, inputs):
    """grad_u E(P(u)) at u = root: zero at a (constrained) minimum."""
    energy, project, _ = inputs
    return jax.grad(_composed(energy, project))(root)


def _search_point(inputs):
    """The root u* of `_stationarity` (value only: its tangents come from the solve)."""
    energy, project, x_star = inputs
    if project is None:
        return x_star
    g = jax.grad(energy)(x_star)
    return _tree.add_scaled(x_star, g, -normal_step(x_star, g))


def _solver(x_star: PyTree, max_steps: int) -> lx.CG:
    dtypes = [jnp.result_type(leaf) for leaf in jax.tree.leaves(x_star)]
    wide = any(d == jnp.float64 for d in dtypes)
    rtol, atol = (1e-10, 1e-14) if wide else (1e-6, 1e-9)
    return lx.CG(rtol=rtol, atol=atol, max_steps=max_steps)


@eqx.filter_custom_jvp
def _root(inputs, solver):
    """u* (value only); its tangents are defined by `_root_jvp`."""
    del solver
    return _search_point(inputs)


@_root.def_jvp
def _root_jvp(primals, tangents):
    """du* = -(∂F/∂u)^-1 (∂F/∂θ) dθ for F = `_stationarity` (a linear map of dθ).

    ∂F/∂u is the (projected) Hessian: symmetric positive semi-definite, applied by
    forward-over-reverse products and inverted by lineax's conjugate gradients inside
    `jax.lax.custom_linear_solve`, which is linear in its right-hand side, batches, and
    transposes (symmetric: the same solve), so JAX derives reverse mode from this rule.
    A failed solve (x* not a minimum) gives NaN tangents for that state, never an error.
    """
    inputs, solver = primals
    t_inputs, _ = tangents
    root = _root(inputs, solver)
    no_tangent = jax.tree.map(lambda t: t is None, t_inputs, is_leaf=lambda t: t is None)
    nondiff, diff = eqx.partition(inputs, no_tangent, is_leaf=lambda t: t is None)

    def residual_of(d):
        return _stationarity(root, eqx.combine(d, nondiff))

    _, rhs = jax.jvp(residual_of, (diff,), (t_inputs,))

    def hess(v):
        return jax.jvp(lambda u: _stationarity(u, inputs), (root,), (v,))[1]

    _, project, x_star = inputs
    if project is None:
        hvp = hess
    else:
        # E(P(u)) is flat along the directions P removes (radial on a sphere, an active
        # bound's coordinate): add c (I - J_P(x*)) there, which is zero on the feasible
        # set's tangent space, so the solution is unchanged but the operator is definite
        # and conjugate gradients do not drift along the flat directions in float32.
        # c: a Rayleigh quotient of the Hessian on a fixed vector (primal values only, so
        # the operator stays independent of the tangents and transposes).
        v0 = _tree.normal_like(jax.random.key(0), root)
        c = _tree.vdot(v0, hess(v0)) / jnp.maximum(_tree.sq_norm(v0), 1e-30)
        c = jax.lax.stop_gradient(c)
        c = jnp.where(jnp.isfinite(c) & (c > 0), c, 1.0)

        def hvp(v):
            jv = jax.jvp(project, (x_star,), (v,))[1]
            return _tree.add_scaled(hess(v), _tree.add_scaled(v, jv, -1.0), c)

    def cg(matvec, b):
        operator = lx.FunctionLinearOperator(
            matvec,
            jax.eval_shape(lambda: b),
            tags=frozenset({lx.symmetric_tag, lx.positive_semidefinite_tag}),
        )
        return lx.linear_solve(operator, b, solver, throw=False).value

    sol = jax.lax.custom_linear_solve(hvp, rhs, cg, symmetric=True)
    return root, jax.tree.map(jnp.negative, sol)


def implicit_minimiser(
    energy: Any,
    x_star: PyTree,
    *,
    project: Callable[[PyTree], PyTree] | None = None,
    max_steps: int = 256,
) -> PyTree:
    """x* (one state) with tangents from the implicit function theorem.

    The value is `x_star` (found by any search, its gradient cut); its derivative with
    respect to the array leaves of `energy` (see `differentiable`) is
    -H^-1 ∂(grad_x E)/∂θ, H solved matrix-free by conjugate gradients (lineax), in
    forward and reverse mode (`jax.jvp`, `jax.jacfwd`, `jax.grad`, `jax.jacrev`).

    With `project` (an exact projection onto the feasible set the search kept x* on:
    a sphere, a box), the stationarity condition is the constrained one, grad of
    E(P(u)) = 0, and H the projected Hessian including the constraint's curvature
    (module docstring); arrays the projection closes over (bounds) are differentiated
    too. H is taken as positive semi-definite: x* must be a local minimum; flat modes
    such as rigid motions of a cluster are fine as long as θ does not push along them.
    """
    x_star = jax.lax.stop_gradient(x_star)
    proj = None if project is None else differentiable(project, x_star)
    root = _root((energy, proj, x_star), _solver(x_star, max_steps))
    if proj is None:
        return root
    moved = proj(root)
    # The value stays exactly x_star; the tangent is d P(u*) (J_P du* + dP/dθ).
    return jax.tree.map(lambda x, m: x + (m - jax.lax.stop_gradient(m)), x_star, moved)
