"""Batched L-BFGS local minimisation for basin hopping: one evaluation per iteration.

`lbfgs_until_one(energy_fn, project, memory)` gives `one(x0, max_iter, gtol, max_step)
-> (x, E, evaluations)` for one state, a `lax.while_loop` meant to run under `vmap`
over many chains. Every iteration evaluates the energy and gradient exactly once, at a
trial point x + alpha d (d the L-BFGS direction from the last `memory` pairs, two-loop
recursion, initial Hessian scaled by s.y / y.y):

- the trial is accepted when it satisfies the Armijo condition
  E(x_t) <= E(x) + c1 g.(x_t - x), c1 = 1e-4 (or, where float rounding hides the
  decrease, E rose by at most a few ulps and |grad| fell); the pair (s, y) enters the
  memory when s.y > 0; the next trial is the full quasi-Newton step alpha = 1;
- otherwise the step shrinks (quadratic interpolation, clipped to [0.1, 0.5] times the
  last step) and the next iteration tries again from the same x.

So the line search is spread over iterations instead of nested in them: under `vmap`
no chain waits for another's inner search, and `evaluations` counts exactly the energy
and gradient evaluations each chain made (iterations + 1). A chain stops at
|grad E| < gtol, after `max_iter` iterations, or after 20 consecutive rejected trials
(after 8 the memory is dropped and it restarts along -grad). Every trial step is scaled
so that no coordinate moves more than `max_step` (a start with overlapping atoms cannot
throw them away); `project` (an exact map onto the feasible set) is applied to every
trial point. Converged chains are masked: they do no further work that counts.

The iteration is also available in pieces for loops that run many relaxations on their
own clocks (`thermo.hop_async`): `lbfgs_start` / `lbfgs_restart` (a state at a new
start), `lbfgs_trial` (the next trial point), `lbfgs_update` (the bookkeeping after its
evaluation); `lbfgs_run` is a while loop over trial + evaluation + update that returns
the state (a run stopped at its iteration cap can be continued), `lbfgs_until_one` its
position and energy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from ..samplers._base import energy_and_grad

__all__ = [
    "lbfgs_until_one",
    "lbfgs_run",
    "lbfgs_start",
    "lbfgs_restart",
    "lbfgs_trial",
    "lbfgs_update",
    "LOCAL_METHODS",
]

PyTree = Any
LOCAL_METHODS = ("lbfgs", "fire")
_C1 = 1e-4
_RESET_AFTER = 8
_GIVE_UP_AFTER = 20


def _two_loop(g, s_mem, y_mem, rho, head, count, memory):
    """-H g by the L-BFGS two-loop recursion over the stored pairs (newest first)."""
    order = (head - 1 - jnp.arange(memory)) % memory
    valid = (jnp.arange(memory) < count).astype(g.dtype)

    def backward(q, j):
        i = order[j]
        a = valid[j] * rho[i] * jnp.dot(s_mem[i], q)
        return q - a * y_mem[i], a

    q, a = jax.lax.scan(backward, g, jnp.arange(memory))
    last = order[0]
    yy = jnp.dot(y_mem[last], y_mem[last])
    gamma = jnp.where((count > 0) & (yy > 0), jnp.dot(s_mem[last], y_mem[last]) / yy, 1.0)
    r = gamma * q

    def forward(r, j):
        i = order[j]
        b = rho[i] * jnp.dot(y_mem[i], r)
        return r + valid[j] * (a[j] - b) * s_mem[i], None

    r, _ = jax.lax.scan(forward, r, jnp.arange(memory)[::-1])
    return -r


def lbfgs_start(z0, e0, g0, gtol, memory: int) -> dict:
    """The L-BFGS state of a relaxation that starts at z0 (flat) with E(z0), grad E(z0):
    empty memory, direction -grad, full first step; done at once when |grad| < gtol or
    E(z0) is not finite."""
    m, n, fdt = int(memory), z0.shape[0], z0.dtype
    return dict(
        z=z0,
        e=e0,
        g=g0,
        d=-g0,
        alpha=jnp.ones((), fdt),
        S=jnp.zeros((m, n), fdt),
        Y=jnp.zeros((m, n), fdt),
        rho=jnp.zeros((m,), fdt),
        head=jnp.int32(0),
        count=jnp.int32(0),
        fails=jnp.int32(0),
        stall=jnp.int32(0),
        it=jnp.int32(0),
        done=(_norm(g0) < gtol) | ~jnp.isfinite(e0),
    )


def lbfgs_restart(c: dict, z0, e0, g0, gtol) -> dict:
    """`lbfgs_start` reusing the buffers of state `c` (the memory is emptied by its count:
    the stale pairs, all finite, are masked out of the two-loop recursion)."""
    fdt = z0.dtype
    return dict(
        c,
        z=z0,
        e=e0,
        g=g0,
        d=-g0,
        alpha=jnp.ones((), fdt),
        head=jnp.int32(0),
        count=jnp.int32(0),
        fails=jnp.int32(0),
        stall=jnp.int32(0),
        it=jnp.int32(0),
        done=(_norm(g0) < gtol) | ~jnp.isfinite(e0),
    )


def lbfgs_trial(c: dict, max_step):
    """The next trial point (before any projection) and its step length: z + alpha d,
    scaled so that no coordinate moves more than `max_step`."""
    big = jnp.max(jnp.abs(c["alpha"] * c["d"]))
    alpha = c["alpha"] * jnp.minimum(1.0, max_step / jnp.maximum(big, 1e-30))
    return c["z"] + alpha * c["d"], alpha


def lbfgs_update(
    c: dict,
    zt,
    alpha,
    et,
    gt,
    gtol,
    memory: int,
    stall: int | None = None,
    write=True,
) -> dict:
    """One L-BFGS iteration's bookkeeping after the evaluation (et, gt) at trial zt:
    accept (Armijo, or a rounding-level rise with a smaller gradient) or shrink the step,
    update the memory and the next direction, count the iteration, decide `done`.

    The memory (S, Y, rho) is written one row in place (row `head`), never copied.
    `write` (bool scalar): where False the memory leaves come back unchanged and the
    other leaves are not meaningful (for a caller that discards this update: it can keep
    the returned S, Y, rho instead of selecting them, which would copy the whole memory)."""
    m = int(memory)
    z, e, g, d = c["z"], c["e"], c["g"], c["d"]
    ulp = jnp.finfo(z.dtype).eps
    s = zt - z
    gd = jnp.dot(g, s)
    finite = jnp.isfinite(et) & jnp.all(jnp.isfinite(gt))
    # a trial must move and go downhill (a step that underflowed to zero is a failure)
    armijo = (gd < 0) & (et <= e + _C1 * gd)
    rounding = (et <= e + 8.0 * ulp * (1.0 + jnp.abs(e))) & (_norm(gt) < _norm(g))
    ok = finite & jnp.any(s != 0) & (armijo | rounding)
    # no decrease the energy's precision resolves (stall counting, when asked for)
    flat = et >= e - 8.0 * ulp * jnp.abs(e)
    y = gt - g
    sy = jnp.dot(s, y)
    store = ok & (sy > 1e-10 * jnp.sqrt(jnp.dot(s, s) * jnp.dot(y, y)))
    head, count = c["head"], c["count"]
    # row-sized selects written in place (a select of the whole memory would copy it)
    put = store & write
    s_mem = c["S"].at[head].set(jnp.where(put, s, c["S"][head]))
    y_mem = c["Y"].at[head].set(jnp.where(put, y, c["Y"][head]))
    rho = c["rho"].at[head].set(jnp.where(put, 1.0 / jnp.where(store, sy, 1.0), c["rho"][head]))
    head = jnp.where(store, (head + 1) % m, head)
    count = jnp.where(store, jnp.minimum(count + 1, m), count)
    z = jnp.where(ok, zt, z)
    e_new = jnp.where(ok, et, e)
    g = jnp.where(ok, gt, g)
    fails = jnp.where(ok, 0, c["fails"] + 1)
    reset = fails == _RESET_AFTER
    count = jnp.where(reset, 0, count)
    d_new = _two_loop(g, s_mem, y_mem, rho, head, count, m)
    descent = (jnp.dot(d_new, g) < 0) & jnp.all(jnp.isfinite(d_new))
    count = jnp.where(descent, count, 0)
    d_new = jnp.where(descent, d_new, -g)
    # rejected: shrink towards the minimum of the quadratic through E(x), g.s, E(x_t)
    curv = et - e - gd
    shrink = jnp.where(finite & (curv > 0), -gd / (2.0 * jnp.where(curv > 0, curv, 1.0)), 0.25)
    shrink = jnp.clip(shrink, 0.1, 0.5)
    keep_dir = ~ok & ~reset
    d_next = jnp.where(keep_dir, d, d_new)
    # after a reset: along -grad, with the length of the last rejected step, shrunk
    restart = alpha * shrink * jnp.sqrt(jnp.dot(d, d) / jnp.maximum(jnp.dot(g, g), 1e-30))
    alpha_next = jnp.where(keep_dir, alpha * shrink, jnp.where(reset, restart, 1.0))
    stalls = jnp.where(flat, c["stall"] + 1, 0)
    done = (_norm(g) < gtol) | (fails >= _GIVE_UP_AFTER)
    if stall is not None:
        done = done | (stalls >= int(stall))
    return dict(
        c,
        z=z,
        e=e_new,
        g=g,
        d=d_next,
        alpha=alpha_next,
        S=s_mem,
        Y=y_mem,
        rho=rho,
        head=head,
        count=count,
        fails=fails,
        stall=stalls,
        it=c["it"] + 1,
        done=done,
    )


def _norm(g):
    return jnp.sqrt(jnp.dot(g, g))


def lbfgs_run(
    energy_fn: Callable[[PyTree], jax.Array],
    project: Callable[[PyTree], PyTree] | None,
    memory: int = 8,
    stall: int | None = None,
):
    """L-BFGS for one state, returning its whole state: `run(x0, max_iter, gtol,
    max_step) -> state`, the dict of `lbfgs_start` on the flat (`ravel_pytree`)
    coordinates (z, e, g, memory, it, done: converged or gave up; a run that stopped at
    `max_iter` has done False and can be continued with `lbfgs_trial` / `lbfgs_update`).
    `lbfgs_until_one` is this run's position and energy."""
    m = int(memory)

    def run(x0, max_iter, gtol, max_step):
        if project is not None:
            x0 = project(x0)
        z0, unravel = ravel_pytree(x0)
        fdt = z0.dtype

        def f(z):
            e, g = energy_and_grad(energy_fn, unravel(z))
            return e, ravel_pytree(g)[0]

        e0, g0 = f(z0)
        max_step = jnp.asarray(max_step, fdt)
        gtol = jnp.asarray(gtol, fdt)

        def cond(c):
            return (c["it"] < max_iter) & ~c["done"]

        def body(c):
            zt, alpha = lbfgs_trial(c, max_step)
            if project is not None:
                zt = ravel_pytree(project(unravel(zt)))[0]
            et, gt = f(zt)
            return lbfgs_update(c, zt, alpha, et, gt, gtol, m, stall)

        return jax.lax.while_loop(cond, body, lbfgs_start(z0, e0, g0, gtol, m))

    return run


def lbfgs_until_one(
    energy_fn: Callable[[PyTree], jax.Array],
    project: Callable[[PyTree], PyTree] | None,
    memory: int = 8,
    stall: int | None = None,
):
    """L-BFGS for one state that stops at convergence (see the module docstring).

    `one(x0, max_iter, gtol, max_step) -> (x, E, evaluations)`; every argument is data,
    so one compilation serves every budget, tolerance and step cap. `stall`: also stop
    after this many consecutive iterations whose energy did not fall by more than its
    float precision resolves (8 ulps): a polish at a tolerance below the energy's
    rounding noise then ends when it stops gaining, not at `max_iter` (None: never).
    """
    run = lbfgs_run(energy_fn, project, memory, stall)

    def one(x0, max_iter, gtol, max_step):
        out = run(x0, max_iter, gtol, max_step)
        unravel = ravel_pytree(x0)[1]
        return unravel(out["z"]), out["e"], out["it"] + 1

    return one
