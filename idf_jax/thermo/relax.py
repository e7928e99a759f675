"""Deterministic relaxation to the nearest local minimum, over a batch of states at once.

- L-BFGS (`optax.lbfgs` with its zoom line search), one optimiser per chain under vmap;
- FIRE (Bitzek et al., Phys. Rev. Lett. 97, 170201 (2006)): damped velocity-Verlet
  dynamics that mixes the velocity towards the force and restarts on uphill motion;
  takes an exact projection after every step (e.g. onto a sphere).

Both run a fixed number of iterations inside one jitted `lax.scan` (memory does not grow
with the number of steps); a chain stops moving once its gradient norm is below `gtol`,
and a step that produces a non-finite energy or gradient is not taken.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from .. import _tree
from .._checks import ArgumentError
from ..samplers._base import check_positive, check_positive_int, energy_and_grad
from .constraints import projected_gradient
from .implicit import detach, differentiable, implicit_minimiser

__all__ = ["relax", "resolve_method", "max_curvature"]

PyTree = Any
_METHODS = ("lbfgs", "fire")


def resolve_method(relax: bool | str, *, has_projection: bool) -> str | None:
    """Map the user's `relax=` argument to 'lbfgs', 'fire' or None."""
    if relax is False or relax is None:
        return None
    if relax is True or relax == "auto":
        return "fire"
    if relax in _METHODS:
        return relax
    raise ArgumentError(
        "relax", f"relax must be True, False, 'auto' or one of {_METHODS}, got {relax!r}"
    )


def relax(
    energy_fn: Callable[[PyTree], jax.Array],
    x_batch: PyTree,
    *,
    method: str = "lbfgs",
    num_steps: int = 1000,
    project: Callable[[PyTree], PyTree] | None = None,
    step_size: float | jax.Array | None = None,
    gtol: float | jax.Array = 1e-5,
    dt_max_factor: float | jax.Array = 10.0,
) -> tuple[PyTree, jax.Array]:
    """Relax every state of `x_batch` (leading chain axis) to a nearby local minimum of E.

    Compiled once per (energy, projection, method, num_steps, shapes): new starts, new
    tolerances and new energy parameters (arrays inside an `eqx.Module` energy) reuse it.
    Runs under `jax.jit` / `jax.vmap`, and is differentiable with respect to the energy's
    parameters (`thermo.implicit`): the minimum energy by the envelope theorem
    (dE*/dθ = ∂E/∂θ at x*), the minimiser by the implicit function theorem, in forward
    and reverse mode; with a projection, from the constrained stationarity condition
    (the projected Hessian, `thermo.implicit`), and arrays the projection closes over
    (bounds) are differentiated too. The search itself is never differentiated.

    Args:
        energy_fn: E(x) -> scalar for one state (a function or an `eqx.Module`).
        x_batch: PyTree with a leading chain axis.
        method: 'lbfgs' (optax L-BFGS, memory 10, zoom line search) or 'fire'.
        num_steps: iterations (each costs one gradient for FIRE, one plus the line
            search's for L-BFGS).
        project: exact projection applied after every step (FIRE; with L-BFGS it is
            applied to each iterate, which is exact only for convex feasible sets where
            the minimum is interior).
        step_size: FIRE's initial time step dt_0 (scalar or per chain); default 1e-2.
        gtol: a chain stops when |grad E| < gtol.
        dt_max_factor: FIRE's dt_max = dt_max_factor * dt_0.

    Returns:
        (x_relaxed, energies) with shapes like `x_batch` and (chains,).
    """
    if method not in _METHODS:
        raise ArgumentError("method", f"method must be one of {_METHODS}, got {method!r}")
    num_steps = check_positive_int("num_steps", num_steps)
    check_positive("gtol", gtol)
    leaves = jax.tree.leaves(x_batch)
    if not leaves or any(jnp.ndim(l) == 0 for l in leaves):
        raise ArgumentError(
            "x_batch", "x_batch must be a PyTree of arrays with a leading chain axis"
        )
    n = leaves[0].shape[0]
    if step_size is None:
        step_size = 1e-2
    check_positive("step_size", step_size)
    check_positive("dt_max_factor", dt_max_factor)
    dt0 = jnp.broadcast_to(jnp.asarray(step_size, jnp.float32), (n,))
    example = jax.tree.map(lambda l: l[0], x_batch)
    energy = differentiable(energy_fn, example)
    proj = None if project is None else differentiable(project, example)
    x, _ = _relax_jit(
        detach(energy),
        None if proj is None else detach(proj),
        jax.lax.stop_gradient(x_batch),
        dt0,
        jnp.asarray(gtol, jnp.float32),
        jnp.asarray(dt_max_factor, jnp.float32),
        method=method,
        num_steps=num_steps,
    )
    return _readout_jit(energy, proj, x)


@eqx.filter_jit
def _readout_jit(energy, project, x):
    """Positions with implicit-function-theorem gradients (the constrained stationarity
    condition under a projection), energies by the envelope theorem."""
    x = jax.vmap(lambda e, p, y: implicit_minimiser(e, y, project=p), in_axes=(None, None, 0))(
        energy, project, x
    )
    return x, jax.vmap(energy)(jax.lax.stop_gradient(x))


@eqx.filter_jit
def _relax_jit(energy, project, x_batch, dt0, gtol, dt_max_factor, *, method, num_steps):
    if method == "lbfgs":
        return lbfgs_one_batch(energy, project, num_steps, gtol)(x_batch)
    return jax.vmap(fire_one(energy, project, num_steps, gtol, dt_max_factor))(x_batch, dt0)


def max_curvature(energy_fn, x_batch, num_iters: int = 20) -> jax.Array:
    """(chains,) estimate of the largest Hessian eigenvalue |lambda_max| of E at each state.

    Power iteration v <- H v / |H v| with finite-difference Hessian-vector products
    H v ~ (grad E(x + h v) - grad E(x)) / h, h = 1e-3 * max(rms(x), 1e-2) (cheaper to
    compile than forward-over-reverse autodiff; the estimate only sets step sizes).
    `num_iters` gradients per chain. Non-finite -> inf.
    """
    return _curvature_jit(energy_fn, x_batch, num_iters)


@eqx.filter_jit
def _curvature_jit(energy_fn, x_batch, num_iters):
    return jax.vmap(curvature_one(energy_fn, num_iters))(x_batch)


def curvature_one(energy_fn, num_iters: int = 20):
    """The per-state power iteration of `max_curvature` (not jitted, for composition)."""
    grad_fn = jax.grad(energy_fn)

    def one(x):
        g0 = grad_fn(x)
        size = sum(jnp.size(l) for l in jax.tree.leaves(x))
        h = 1e-3 * jnp.maximum(jnp.sqrt(_tree.sq_norm(x) / size), 1e-2)
        v = _tree.normal_like(jax.random.key(0), x)
        v = _tree.mul(v, 1.0 / jnp.sqrt(_tree.sq_norm(v)))

        def body(carry, _):
            v, _ = carry
            g1 = grad_fn(_tree.add_scaled(x, v, h))
            hv = _tree.mul(_tree.add_scaled(g1, g0, -1.0), 1.0 / h)
            lam = jnp.sqrt(_tree.sq_norm(hv))
            v = _tree.mul(hv, 1.0 / jnp.maximum(lam, 1e-30))
            return (v, lam), None

        lam0 = jnp.zeros((), jnp.result_type(*jax.tree.leaves(g0)))
        (_, lam), _ = jax.lax.scan(body, (v, lam0), None, length=num_iters)
        return jnp.where(jnp.isfinite(lam), lam, jnp.inf)

    return one


def _energy_and_force_grad(energy_fn, project):
    """x -> (E, the gradient FIRE moves against): grad E, or under a projection the
    gradient on the feasible set (`constraints.projected_gradient`: zero at a
    constrained minimum, so the convergence test |g| < gtol can be met there)."""
    if project is None:
        return lambda x: energy_and_grad(energy_fn, x)

    def eg(x):
        e, g = energy_and_grad(energy_fn, x)
        return e, projected_gradient(project, x, g)

    return eg


def _finite(e, g):
    return jnp.isfinite(e) & _tree.all_finite(g)


def lbfgs_one_batch(energy_fn, project, num_steps, gtol=1e-5):
    """L-BFGS over a batch: `f(x_batch) -> (x, E)` (vmapped, not jitted, for composition)."""
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(energy_fn)

    def one(x0):
        if project is not None:
            x0 = project(x0)
        state = opt.init(x0)
        e0, g0 = energy_and_grad(energy_fn, x0)

        def body(carry, _):
            x, st, e, done = carry
            v, g = value_and_grad(x, state=st)
            upd, st_new = opt.update(g, st, x, value=v, grad=g, value_fn=energy_fn)
            x_new = optax.apply_updates(x, upd)
            if project is not None:
                x_new = project(x_new)
            e_new, g_new = energy_and_grad(energy_fn, x_new)
            ok = _finite(e_new, g_new) & _tree.all_finite(st_new) & ~done & (e_new <= e)
            x = _tree.select(ok, x_new, x)
            st = _tree.select(ok, st_new, st)
            e = jnp.where(ok, e_new, e)
            gn = jnp.sqrt(_tree.sq_norm(_tree.select(ok, g_new, g)))
            done = done | (gn < gtol) | ~ok
            return (x, st, e, done), None

        done0 = jnp.sqrt(_tree.sq_norm(g0)) < gtol
        (x, _, e, _), _ = jax.lax.scan(body, (x0, state, e0, done0), None, length=num_steps)
        return x, e

    return jax.vmap(one)


_FIRE_N_MIN, _FIRE_F_INC, _FIRE_F_DEC, _FIRE_ALPHA0, _FIRE_F_ALPHA = 5, 1.1, 0.5, 0.1, 0.99
"""FIRE's constants (Bitzek et al. 2006): steps downhill before speeding up, dt growth and
cut factors, the initial mixing alpha and its decay."""


def _fire_mix(f, v, fn, dt, alpha, n_pos, dt_max):
    """FIRE's velocity mixing and step control: v <- (1 - alpha) v + alpha |v| f / |f|
    while the power f.v > 0 (dt grows after n_min such steps, alpha decays); v = 0, dt
    cut and alpha reset when it goes uphill. `fn` is |f|. Returns (v, dt, alpha, n_pos)."""
    power = _tree.vdot(f, v)
    vn = jnp.sqrt(_tree.sq_norm(v))
    mixed = _tree.add_scaled(_tree.mul(v, 1.0 - alpha), f, alpha * vn / jnp.maximum(fn, 1e-30))
    uphill = power <= 0.0
    v = _tree.select(uphill, jax.tree.map(jnp.zeros_like, v), mixed)
    speed_up = ~uphill & (n_pos > _FIRE_N_MIN)
    grown = jnp.minimum(dt * _FIRE_F_INC, dt_max)
    dt = jnp.where(uphill, dt * _FIRE_F_DEC, jnp.where(speed_up, grown, dt))
    alpha = jnp.where(uphill, _FIRE_ALPHA0, jnp.where(speed_up, alpha * _FIRE_F_ALPHA, alpha))
    n_pos = jnp.where(uphill, 0, n_pos + 1)
    return v, dt, alpha, n_pos


def fire_one(energy_fn, project, num_steps, gtol, dt_max_factor):
    """FIRE for one state: `one(x0, dt0) -> (x, E)` (not jitted, for composition)."""

    eg = _energy_and_force_grad(energy_fn, project)

    def one(x0, dt0):
        if project is not None:
            x0 = project(x0)
        e0, g0 = eg(x0)
        v0 = jax.tree.map(jnp.zeros_like, x0)
        dt_max = dt_max_factor * dt0

        def body(c, _):
            x, v, e, g, dt, alpha, n_pos = c
            f = _tree.mul(g, -1.0)
            v, dt, alpha, n_pos = _fire_mix(
                f, v, jnp.sqrt(_tree.sq_norm(f)), dt, alpha, n_pos, dt_max
            )
            # semi-implicit Euler (MD step with unit mass)
            v_new = _tree.add_scaled(v, f, dt)
            x_new = _tree.add_scaled(x, v_new, dt)
            if project is not None:
                x_new = project(x_new)
            e_new, g_new = eg(x_new)
            ok = _finite(e_new, g_new) & (jnp.sqrt(_tree.sq_norm(g)) >= gtol)
            x = _tree.select(ok, x_new, x)
            v = _tree.select(ok, v_new, jax.tree.map(jnp.zeros_like, v))
            e = jnp.where(ok, e_new, e)
            g = _tree.select(ok, g_new, g)
            dt = jnp.where(ok | (jnp.sqrt(_tree.sq_norm(g)) < gtol), dt, dt * _FIRE_F_DEC)
            return (x, v, e, g, dt, alpha, n_pos), None

        init = (x0, v0, e0, g0, dt0, jnp.float32(_FIRE_ALPHA0), jnp.int32(0))
        (x, _, e, _, _, _, _), _ = jax.lax.scan(body, init, None, length=num_steps)
        return x, e

    return one


def fire_until_one(energy_fn, project):
    """FIRE for one state that stops at convergence (a `lax.while_loop`).

    `one(x0, dt0, dt_max, max_step, max_iter, gtol) -> (x, E, iterations)`: stops when
    |grad E| < gtol or after `max_iter` iterations (all arguments are data, so one
    compilation serves every budget). Each displacement coordinate is clipped to
    +-`max_step`, so a start with huge forces (an overlap after a global move) cannot
    throw particles away. Under `vmap` the loop runs until every chain has stopped
    (chains that stopped are masked); `iterations` counts each chain's own gradient
    evaluations (one per iteration, plus one at the start).
    """

    eg = _energy_and_force_grad(energy_fn, project)

    def one(x0, dt0, dt_max, max_step, max_iter, gtol):
        if project is not None:
            x0 = project(x0)
        e0, g0 = eg(x0)
        fdt = jnp.result_type(e0)
        v0 = jax.tree.map(jnp.zeros_like, x0)

        def gnorm(g):
            return jnp.sqrt(_tree.sq_norm(g))

        def cond(c):
            _, _, _, g, _, _, _, it = c
            return (it < max_iter) & (gnorm(g) >= gtol)

        def body(c):
            x, v, e, g, dt, alpha, n_pos, it = c
            f = _tree.mul(g, -1.0)
            v, dt, alpha, n_pos = _fire_mix(f, v, gnorm(f), dt, alpha, n_pos, dt_max)
            v_new = _tree.add_scaled(v, f, dt)
            dx = jax.tree.map(lambda a: jnp.clip(a * dt, -max_step, max_step), v_new)
            x_new = jax.tree.map(jnp.add, x, dx)
            if project is not None:
                x_new = project(x_new)
            e_new, g_new = eg(x_new)
            ok = _finite(e_new, g_new)
            x = _tree.select(ok, x_new, x)
            v = _tree.select(ok, v_new, jax.tree.map(jnp.zeros_like, v))
            e = jnp.where(ok, e_new, e)
            g = _tree.select(ok, g_new, g)
            dt = jnp.where(ok, dt, dt * _FIRE_F_DEC)
            return (x, v, e, g, dt, alpha, n_pos, it + 1)

        init = (
            x0,
            v0,
            e0,
            g0,
            jnp.asarray(dt0, fdt),
            jnp.asarray(_FIRE_ALPHA0, fdt),
            jnp.int32(0),
            jnp.int32(0),
        )
        x, _, e, _, _, _, _, it = jax.lax.while_loop(cond, body, init)
        return x, e, it + 1

    return one
