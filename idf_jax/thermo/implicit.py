"""Differentiable minima: the envelope theorem and the implicit function theorem.

A local minimiser x*(θ) of E(x; θ) satisfies grad_x E(x*; θ) = 0. Differentiating that
identity gives (implicit function theorem)

    dx*/dθ = -H^-1 ∂²E/∂x∂θ,   H = ∂²E/∂x² at x*,

solved matrix-free here (Hessian-vector products, conjugate gradients from lineax), and
for the minimum energy (envelope theorem)

    dE*/dθ = ∂E/∂θ at x*,

which is what `jax.grad` of `E(stop_gradient(x*); θ)` gives. The search that finds x*
(annealing, FIRE, L-BFGS with line searches) is never differentiated: `detach` cuts the
energy's parameters out of it, so its loops cost nothing in reverse mode and produce no
NaN. The parameters θ may be arrays inside an `eqx.Module` energy or values a plain
function closes over (hoisted with `jax.closure_convert`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import lineax as lx

from .._custom_types import PyTree
from ..samplers._base import Energy

__all__ = ["detach", "differentiable", "implicit_minimiser"]


class _Bound(eqx.Module):
    """A closure-converted energy: `fn(x, *consts)` with the hoisted values as leaves."""

    fn: Callable[..., jax.Array] = eqx.field(static=True)
    consts: tuple

    def __call__(self, x: PyTree) -> jax.Array:
        return self.fn(x, *self.consts)


def differentiable(energy_fn: Callable[[PyTree], jax.Array], example: PyTree) -> Any:
    """`energy_fn` as a callable PyTree whose array leaves are its parameters θ.

    An `eqx.Module` energy is returned as it is; a plain function that closes over
    values being differentiated or traced has them hoisted (`jax.closure_convert`); a
    plain function closing over nothing traced is wrapped static (`Energy`).
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


def _grad_x(energy, x):
    return jax.grad(lambda y: energy(y))(x)


@eqx.filter_custom_vjp
def _minimiser(energy, x_star, max_steps):
    del energy, max_steps
    return x_star


@_minimiser.def_fwd
def _minimiser_fwd(perturbed, energy, x_star, max_steps):
    del perturbed, energy, max_steps
    return x_star, None


@_minimiser.def_bwd
def _minimiser_bwd(residuals, grad_obj, perturbed, energy, x_star, max_steps):
    """x̄ -> θ̄ = -(∂ grad_x E / ∂θ)^T H^-1 x̄ (H symmetric: one CG solve, one VJP)."""
    del residuals, perturbed

    def hvp(v):
        return jax.jvp(lambda x: _grad_x(energy, x), (x_star,), (v,))[1]

    operator = lx.FunctionLinearOperator(
        hvp,
        jax.eval_shape(lambda: x_star),
        tags=frozenset({lx.symmetric_tag, lx.positive_semidefinite_tag}),
    )
    solver = lx.CG(rtol=1e-6, atol=1e-9, max_steps=max_steps)
    lam = lx.linear_solve(operator, grad_obj, solver, throw=False).value
    _, vjp = eqx.filter_vjp(lambda e: _grad_x(e, x_star), energy)
    (g_energy,) = vjp(lam)
    return jax.tree.map(lambda g: -g, g_energy)


def implicit_minimiser(energy: Any, x_star: PyTree, *, max_steps: int = 256) -> PyTree:
    """x* (one state) with tangents from the implicit function theorem.

    The value is `x_star` (found by any search, its gradient cut); its derivative with
    respect to the array leaves of `energy` (see `differentiable`) is
    -H^-1 ∂(grad_x E)/∂θ, H solved matrix-free by conjugate gradients (lineax). H is
    taken as positive semi-definite: x* must be a local minimum; flat modes such as
    rigid motions of a cluster are fine as long as θ does not push along them. This is a
    reverse-mode rule (`jax.grad`, `jax.jacrev`); forward mode is not defined.
    """
    return _minimiser(energy, jax.lax.stop_gradient(x_star), max_steps)
