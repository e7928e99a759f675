"""`sample_nuts_desync`: many NUTS chains, each at its own pace (desynchronised NUTS).

Under `jax.vmap` a NUTS transition is a `while_loop` whose every iteration runs for all
chains until the longest trajectory among them ends: the cost of a transition is the
*maximum* over chains of their leapfrog counts, and summed over transitions that is
sum_t max_c L_ct. Here the transition is the finite-state machine of
`idf_jax.samplers.nuts` (one leapfrog step per `advance`), and one loop iteration
advances every chain by one leapfrog step; a chain that finishes its transition records
its draw and starts its next transition at the next restart point, at most
`restart_every` iterations later (Dance, Glaser, Orbanz &
Adams, "Efficiently vectorized MCMC on modern accelerators", ICML 2025). The run
costs max_c sum_t L_ct iterations, close to the mean when there are many draws.

Chain c's transition t uses the key `fold_in(split(key, chains)[c], t)`, the key
`idf.sample` gives chain c at step t, so both drivers produce the same draws.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

from .._checks import ArgumentError, as_key, nonnegative_int
from ..samplers._base import check_positive_int
from ..samplers.langevin import LangevinState
from ..samplers.nuts import (
    NUTS,
    NUTSWork,
    _advance,
    _draws,
    _finish,
    _leaf,
    _merge,
    _start,
    _start_drawn,
)
from ._driver import Trace

__all__ = ["sample_nuts_desync"]

PyTree = Any
_TABLE_MAX_ELEMENTS = 2**24  # pre-drawn transition inputs: at most 64 MB in float32


def _stats(info) -> Array:
    """(5,) float32: acceptance rate, accepted, leapfrog steps, tree depth, turning."""
    return jnp.stack(
        [
            info.acceptance_rate.astype(jnp.float32),
            info.is_accepted.astype(jnp.float32),
            info.num_integration_steps.astype(jnp.float32),
            info.tree_depth.astype(jnp.float32),
            info.is_turning.astype(jnp.float32),
        ]
    )


class _Chain(NamedTuple):
    work: NUTSWork
    t: Array  # transitions completed
    positions: Array  # (draws, d) flat
    energies: Array  # (draws,)
    divergences: Array  # (draws,) bool
    sums: Array  # (5,) acceptance, accepted, steps, depth, turning over recorded draws
    num_divergent: Array
    num_grad: Array  # leapfrog steps taken (gradient evaluations), burn-in included
    final: tuple  # (x, E, grad E) flat, at the end of transition `total` (restart_every == 1)


def _run(
    static,
    dynamic,
    key,
    x0_batch,
    *,
    num_draws: int,
    burn_in: int,
    max_iterations: int,
    restart_every: int,
):
    sampler: NUTS = eqx.combine(dynamic, static)
    n = jax.tree.leaves(x0_batch)[0].shape[0]
    like = jax.tree.map(lambda l: l[0], x0_batch)
    ops = sampler.ops(like)
    total = burn_in + num_draws
    chain_keys = jax.random.split(key, n)

    def init_one(ck, x0):
        state = sampler.init(x0)
        work = sampler.start(ops, jax.random.fold_in(ck, 0), state)
        x = work.prop.x
        z = jnp.zeros((), jnp.int32)
        return _Chain(
            work,
            z,
            jnp.full((num_draws, x.shape[0]), jnp.nan, x.dtype),
            jnp.full((num_draws,), jnp.nan, x.dtype),
            jnp.zeros((num_draws,), bool),
            jnp.zeros((5,), jnp.float32),
            z,
            z,
            (x, work.prop.e, work.prop.g),
        )

    def advance_one(c: _Chain) -> _Chain:
        # a chain whose transition is done waits (masked) for the next restart
        moving = (c.t < total) & ~c.work.done
        w = _advance(ops, c.work)
        work = jax.tree.map(lambda a, old: jnp.where(moving, a, old), w, c.work)
        return c._replace(work=work, num_grad=c.num_grad + moving.astype(jnp.int32))

    def restart_one(ck, c: _Chain) -> _Chain:
        w = c.work
        finished = w.done & (c.t < total)
        _, info = _finish(ops, w)
        record = finished & (c.t >= burn_in)
        idx = jnp.where(record, c.t - burn_in, num_draws)  # out of range: dropped
        restart = _start(ops, jax.random.fold_in(ck, c.t + 1), w.prop.x, w.prop.e, w.prop.g)
        stats = _stats(info)
        return _Chain(
            jax.tree.map(lambda r, old: jnp.where(finished, r, old), restart, w),
            c.t + finished.astype(jnp.int32),
            c.positions.at[idx].set(w.prop.x, mode="drop"),
            c.energies.at[idx].set(w.prop.e, mode="drop"),
            c.divergences.at[idx].set(info.diverged, mode="drop"),
            c.sums + jnp.where(record, stats, 0.0),
            c.num_divergent + (finished & info.diverged).astype(jnp.int32),
            c.num_grad,
            c.final,
        )

    # restart_every == 1: every transition's random inputs (momentum noise, directions,
    # leaf-stream key) drawn in one vectorised batch before the loop when they fit, so a
    # restart is a gather (one Threefry restart per chain per iteration cost ~1.5x the
    # leapfrog iteration itself on CPU). Row t of chain c: transition t + 1's key
    # fold_in(chain_keys[c], t + 1), the key `idf.sample` uses.
    flat_dim = ops.inv_mass.shape[0]
    table = None
    if restart_every == 1 and n * total * (flat_dim + 3) <= _TABLE_MAX_ELEMENTS:
        x_like = jnp.zeros((flat_dim,), ops.inv_mass.dtype)
        ts = jnp.arange(1, total + 1)
        table = jax.vmap(
            lambda ck: jax.vmap(lambda t: _draws(jax.random.fold_in(ck, t), x_like))(ts)
        )(chain_keys)

    def step_one(ck, c: _Chain, tab) -> _Chain:
        # restart_every == 1, one iteration per chain: restart (if the previous iteration
        # ended the transition), merge (if the previous leaf completed a subtree), record
        # (if that merge ended the transition), then one leapfrog leaf, unmasked. Every
        # select of the machine state reads a predicate carried from the previous
        # iteration: a predicate computed in the same iteration is re-evaluated inside
        # each of the ~30 select fusions by XLA:CPU (2-3x the iteration's cost), and
        # `optimization_barrier` does not stop that there. The leaf of an iteration that
        # ends a transition is wasted (overwritten by the restart): L + 1 iterations per
        # transition of L leapfrogs. Chains past `total` keep running unrecorded.
        w = c.work
        t = c.t
        if tab is None:
            draws = _draws(jax.random.fold_in(ck, t), w.prop.x)
        else:  # transition t's random inputs, drawn before the loop (row t - 1)
            draws = jax.tree.map(lambda a: a[jnp.clip(t - 1, 0, total - 1)], tab)
        restart = _start_drawn(ops, draws, w.prop.x, w.prop.e, w.prop.g)
        w = jax.tree.map(lambda r, old: jnp.where(c.work.done, r, old), restart, w)
        do_merge = c.work.sub_done & ~c.work.done
        w = jax.tree.map(lambda m, old: jnp.where(do_merge, m, old), _merge(ops, w), w)
        finished = w.done
        live = t < total
        record = finished & live & (t >= burn_in)
        _, info = _finish(ops, w)
        idx = jnp.where(record, t - burn_in, num_draws)  # out of range: dropped
        stats = _stats(info)
        last = finished & (t == total - 1)
        final = jax.tree.map(
            lambda new, old: jnp.where(last, new, old), (w.prop.x, w.prop.e, w.prop.g), c.final
        )
        leafed = _leaf(ops, w)
        # the finished transition's counters, kept for nothing: the restart replaces all
        leafed = leafed._replace(done=w.done)
        return _Chain(
            leafed,
            t + finished.astype(jnp.int32),
            c.positions.at[idx].set(w.prop.x, mode="drop"),
            c.energies.at[idx].set(w.prop.e, mode="drop"),
            c.divergences.at[idx].set(info.diverged, mode="drop"),
            c.sums + jnp.where(record, stats, 0.0),
            c.num_divergent + (finished & live & info.diverged).astype(jnp.int32),
            c.num_grad + (live & ~finished).astype(jnp.int32),
            final,
        )

    chains = jax.vmap(init_one)(chain_keys, x0_batch)

    def cond(carry):
        i, c = carry
        return (i < max_iterations) & jnp.any(c.t < total)

    def body(carry):
        # `restart_every` leapfrog iterations, then finished chains record and restart:
        # the restart (a momentum draw per chain) is paid once per block, and a finished
        # chain idles at most restart_every - 1 iterations
        i, c = carry
        if restart_every == 1:
            return i + 1, jax.vmap(step_one)(chain_keys, c, table)
        c = jax.lax.fori_loop(0, restart_every, lambda _, c: jax.vmap(advance_one)(c), c)
        return i + restart_every, jax.vmap(restart_one)(chain_keys, c)

    iterations, chains = jax.lax.while_loop(cond, body, (jnp.zeros((), jnp.int32), chains))
    unravel = jax.vmap(jax.vmap(ops.unravel))
    done_draws = jnp.clip(chains.t - burn_in, 0, num_draws)
    denom = jnp.maximum(done_draws, 1).astype(jnp.float32)
    names = ("acceptance_rate", "is_accepted", "num_integration_steps", "tree_depth", "is_turning")
    stats: dict[str, Array] = {k: chains.sums[:, j] / denom for j, k in enumerate(names)}
    frozen = jnp.zeros((n,), bool)
    stats.update(
        frozen=frozen,
        diverged=frozen,
        num_divergent=chains.num_divergent,
        num_draws_done=done_draws,
        num_gradient_evals=chains.num_grad,
        num_iterations=iterations,
    )
    if restart_every == 1:
        fx, fe, fg = chains.final
        # a chain stopped by max_iterations before `total` ends where its work stands
        early = chains.t < total
        fx = jnp.where(early[:, None], chains.work.prop.x, fx)
        fe = jnp.where(early, chains.work.prop.e, fe)
        fg = jnp.where(early[:, None], chains.work.prop.g, fg)
    else:
        fx, fe, fg = chains.work.prop.x, chains.work.prop.e, chains.work.prop.g
    final = jax.vmap(lambda x, e, g: (ops.unravel(x), e, ops.unravel(g)))(fx, fe, fg)
    return Trace(
        unravel(chains.positions), chains.energies, stats, LangevinState(*final), chains.divergences
    )


_run_jit = jax.jit(
    _run,
    static_argnums=(0,),
    static_argnames=("num_draws", "burn_in", "max_iterations", "restart_every"),
)


def sample_nuts_desync(
    sampler: NUTS,
    key: PRNGKeyArray,
    x0_batch: PyTree,
    num_draws: int,
    *,
    burn_in: int = 0,
    max_iterations: int | None = None,
    restart_every: int = 1,
) -> Trace:
    """Run NUTS on every chain of `x0_batch`, each chain at its own pace.

    Every iteration of one compiled loop advances every chain by one leapfrog step; a
    chain whose transition ends records the draw and starts its next transition within
    `restart_every` iterations, so no chain waits for the longest trajectory of the
    batch (see the module docstring). Gives the same draws as `idf.sample(sampler, key, x0_batch,
    burn_in + num_draws, burn_in=burn_in)`.

    Args:
        sampler: an `idf.nuts(...)` sampler (its step size, temperature and mass traced).
        key: PRNG key; chain c's transition t uses `fold_in(split(key, chains)[c], t)`.
        x0_batch: PyTree of float arrays with a leading chain axis.
        num_draws: recorded transitions per chain (after `burn_in` unrecorded ones).
        burn_in: leading transitions per chain that are not recorded.
        max_iterations: a cap on loop iterations (leapfrog steps per chain, the gradient
            budget); chains not done by then have NaN in their missing draws and
            `stats['num_draws_done']` says how many they made. Default: no practical cap.
        restart_every: 1 (default): a chain that ends its transition records it and
            restarts in the next iteration (one idle leaf per transition), with every
            transition's random inputs drawn in bulk before the loop when they fit in
            2^26 numbers. k > 1: finished chains record and restart every k iterations
            (idling up to k - 1), the whole machine state masked every iteration (the
            earlier scheme; slower on CPU, kept for comparison).

    Returns:
        A `Trace`: positions (chains, draws, ...), energies, divergences (chains, draws),
        stats (per chain: mean acceptance_rate, is_accepted, num_integration_steps,
        tree_depth, is_turning over the recorded draws; num_divergent, num_draws_done,
        num_gradient_evals; num_iterations: the loop's leapfrog iterations, the
        wall-clock cost in leapfrog steps, idle ones included) and the final state.
    """
    if not isinstance(sampler, NUTS):
        raise ArgumentError(
            "sampler", f"sample_nuts_desync needs an idf.nuts sampler, got {type(sampler).__name__}"
        )
    num_draws = check_positive_int("num_draws", num_draws)
    burn_in = nonnegative_int("burn_in", burn_in)
    key = as_key(key)
    leaves = jax.tree.leaves(x0_batch)
    if not leaves or any(jnp.ndim(l) == 0 for l in leaves):
        raise ArgumentError(
            "x0_batch", "x0_batch must be a PyTree of arrays with a leading chain axis"
        )
    if any(not jnp.issubdtype(jnp.result_type(l), jnp.floating) for l in leaves):
        raise ArgumentError(
            "x0_batch", "x0_batch leaves must be float arrays (NUTS moves along gradients)"
        )
    n = leaves[0].shape[0]
    if any(l.shape[0] != n for l in leaves):
        raise ArgumentError("x0_batch", "every leaf of x0_batch needs the same leading chain axis")
    if max_iterations is None:
        max_iterations = min((burn_in + num_draws) * (2**sampler.max_tree_depth), 2**31 - 1)
    max_iterations = check_positive_int("max_iterations", max_iterations)
    restart_every = check_positive_int("restart_every", restart_every)
    dynamic, static = eqx.partition(sampler, eqx.is_array)
    return _run_jit(
        static,
        dynamic,
        key,
        x0_batch,
        num_draws=num_draws,
        burn_in=burn_in,
        max_iterations=max_iterations,
        restart_every=restart_every,
    )
