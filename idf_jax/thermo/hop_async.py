"""Asynchronous basin hopping: one loop iteration is one L-BFGS iteration of every chain.

The synchronous hop loop (`basin_hopping._chunk_jit`) runs a whole hop per iteration:
perturb every chain, relax every chain to convergence, Metropolis. Under `vmap` a hop
lasts as long as its slowest relaxation, and chains whose relaxation has ended wait,
masked, for the others (on LJ and AB chains about half of the evaluated work). Here each
chain is a small state machine and the loop never waits for a chain:

- every FRESH or RELAXING chain evaluates E and grad E once per iteration, at its start
  (FRESH: the L-BFGS memory is emptied and the relaxation begins,
  `local_min.lbfgs_restart`) or at its L-BFGS trial point (`local_min.lbfgs_trial` /
  `lbfgs_update`: the same iteration as `lbfgs_until_one`'s, with 16 memory pairs where
  the synchronous loop keeps 8: see `_MEMORY`); a relaxation that ends
  (|grad| < gtol, the hop cap's iterations, or the line search gave up) is ENDED;
- every `_SERVICE_EVERY` (4) iterations the ENDED chains are judged: Metropolis on the
  relaxed energy against the chain's current minimum, step-scale adaptation, best
  state, hop and minimisation counts, first-hit accounting; they are PENDING. Then the
  PENDING chains with budget left start their next hop: the current minimum is
  perturbed with a move (`moves.apply_move`, the chain's own scale) and projected: FRESH.
  At most K = n (n <= 32) or max(32, n / 4) chains are moved per service (gathered,
  moved, scattered back; a move costs about an energy evaluation); the others wait for
  the next service, the rotating gathering order keeps that fair. Judging and moving in
  batches every few iterations instead of every iteration keeps their cost off the
  L-BFGS iterations; an ended chain waits at most 3 iterations.

The hop cap starts at `params.hop_cap` (relax_steps // 5) and doubles, up to
`params.hop_cap_max`, whenever more than half of the last n judged hop relaxations (n the
chains) ended at it unconverged (`_grow_cap`): where most hops end at minima within it the
cap stays (AB-13: bit-identical to the fixed cap on 10 of 10 seeds), a stiff landscape
(AB-34: median ~490 iterations to converge, none within 100) gets relaxations that end
at minima, so Metropolis compares minima (LJ26 and LJ31 raise it to 200 or so;
benchmarks/README.md, "AB-34: a hop cap that grows"). hop_cap_max = hop_cap: a fixed cap.

So a hop costs its own relaxation's evaluations and nothing else (chains that wait
evaluate nothing and count nothing). A chain starts a hop
only while it has budget left; a hop once started finishes (as in the synchronous loop).
Parallel tempering exchanges neighbouring rungs' accepted minima (always defined: the
chain's current minimum) every `exchange_every` iterations, even and odd pairs in turn,
with the usual probability min(1, exp((1/T_r - 1/T_r+1)(E_r - E_r+1))); an exchanged
chain takes its in-flight relaxation (started from that minimum) with it, so each
relaxation is still judged against the minimum it left. Population annealing resamples
the minima whenever the mean hop count passes a multiple of `resample_every`; a chain
that receives another's minimum drops its in-flight relaxation and starts a new hop.
With `params.restart_every` > 0 (parallel tempering, two groups or more) the worst
quarter of the tempering groups, by the lowest energy each has found, restart from the
best groups' minima whenever the mean hop count passes a multiple of it
(`restart_indices`). With `stop` the loop ends, and evaluates nothing more, once the
target is reached.
Keys: hop h of chain c draws its move and its Metropolis uniform from
fold_in(split(key, chains)[c], h): a search is reproducible from its key whatever the
chunking.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from .. import _tree
from ..samplers._base import energy_and_grad
from .local_min import lbfgs_restart, lbfgs_run, lbfgs_trial, lbfgs_update
from .moves import apply_move

__all__ = ["PENDING", "FRESH", "RELAXING", "ENDED", "first_relaxation", "async_loop"]

PyTree = Any
PENDING, FRESH, RELAXING, ENDED = 0, 1, 2, 3
# L-BFGS pairs kept by every relaxation of the loop. 16, not 8: on AB-13 (11 bend angles,
# stiff Lennard-Jones walls against a soft bend term) a memory of 8 left 84 % of hop
# relaxations at the hop cap (relax_steps // 5 = 100 iterations; median 132 to converge),
# 16 left 34 % (median 88) and halved the evaluations to the record (median 4.2e6 -> 1.9e6
# over seeds 0-19, 17/20 -> 20/20 reached; benchmarks/README.md, Global search).
_MEMORY = 16
_SERVICE_EVERY = 4  # iterations between judging ended relaxations and starting hops
_MEM_KEYS = ("S", "Y", "rho")  # the L-BFGS memory leaves of a relaxation's state


def move_slots(n: int) -> int:
    """How many pending chains get their move in one iteration."""
    return n if n <= 32 else max(32, -(-n // 4))


def first_relaxation(penalised, proj, x0, cap, gtol, max_step):
    """The first local minimisation of every chain, run together under `vmap` for at most
    `cap` iterations (the hop cap, relax_steps // 5): a chain whose relaxation has not
    ended by then continues it in the loop, on its own clock, up to relax_steps
    iterations in all (so no chain waits for the slowest first relaxation, which from a
    random start can take several times the median). Returns the states (relaxed, or as
    far as they got), their energies, the evaluations spent and the in-flight state of
    every chain: RELAXING (and `first`) where the relaxation goes on, else PENDING."""
    example = jax.tree.map(lambda l: l[0], x0)
    _, unravel = ravel_pytree(example)
    run = jax.vmap(lbfgs_run(penalised, proj, _MEMORY), in_axes=(0, None, None, None))
    lb = run(x0, cap, gtol, max_step)
    going = ~lb["done"] & jnp.isfinite(lb["e"])
    walk = {
        "lb": lb,
        "phase": jnp.where(going, RELAXING, PENDING).astype(jnp.int32),
        "first": going,
        "resampled": jnp.int32(0),
        "restarted": jnp.int32(0),  # restarts of the worst tempering groups (`_restart_groups`)
        # the hop cap now, and the hop relaxations judged / ended at it unconverged
        # since it was last reviewed (`_grow_cap`)
        "cap": jnp.asarray(cap, jnp.int32),
        "judged": jnp.int32(0),
        "capped": jnp.int32(0),
    }
    return jax.vmap(unravel)(lb["z"]), lb["e"], lb["it"] + 1, walk


def async_loop(
    penalised, proj, moves, params, carry, h_stop, stop, *, kind, rungs, resample, temperatures
):
    """Iterations until the longest-running chain has done `h_stop` hops, every chain has
    spent its budget, or (`stop`) the target has been reached. `temperatures(carry)` gives
    each chain's Metropolis temperature; `carry.hop` counts iterations."""
    n = carry.e.shape[0]
    k_moves = move_slots(n)
    example = jax.tree.map(lambda l: l[0], carry.x)
    _, unravel = ravel_pytree(example)
    fdt = carry.e.dtype
    keys = jax.random.split(params.key, n + 1)
    base, k_ex_base = keys[:n], keys[n]

    def flat(x):
        return ravel_pytree(x)[0]

    def evaluate(z):
        e, g = energy_and_grad(penalised, unravel(z))
        return e, flat(g)

    def hop_key(slot, h):
        return jax.random.fold_in(base[slot], h)

    def perturb(slot, h, x, log_scale):
        xn = apply_move(moves, jax.random.fold_in(hop_key(slot, h), 0), x, jnp.exp(log_scale))
        if proj is not None:
            xn = proj(xn)
        return flat(xn)

    def uniform(slot, h):
        return jax.random.uniform(jax.random.fold_in(hop_key(slot, h), 1), (), fdt)

    def trial(lb):
        zt, alpha = lbfgs_trial(lb, params.max_step)
        if proj is not None:
            zt = flat(proj(unravel(zt)))
        return zt, alpha

    def work_left(c):
        w = c.walk
        has_budget = c.n_eval < params.budget
        return jnp.any(w["phase"] != PENDING) | jnp.any(has_budget)

    def cond(c):
        hit_stop = stop & (c.first_hop >= 0)
        return (jnp.max(c.hops) < h_stop) & work_left(c) & ~hit_stop

    def judge(c):
        """Metropolis, scale adaptation and accounting for every ENDED relaxation."""
        w = c.walk
        lb, phase = w["lb"], w["phase"]
        ended = phase == ENDED
        # the end of a chain's first relaxation (continued from `first_relaxation`):
        # its minimum replaces the partly relaxed start; no hop, no adaptation
        first = ended & w["first"]
        hop_end = ended & ~first
        h_now = c.hops + 1  # the hop being judged
        er = jnp.where(jnp.isfinite(lb["e"]), lb["e"], jnp.inf)
        temps = temperatures(c)
        u = jax.vmap(uniform)(jnp.arange(n), h_now)
        acc = first | (hop_end & (jnp.log(u) < -(er - c.e) / temps))
        x = _tree.select_rows(acc, jax.vmap(unravel)(lb["z"]), c.x)
        e = jnp.where(acc, er, c.e)
        same = jnp.abs(er - c.e) <= 1e-6 * (1.0 + jnp.abs(c.e))
        step = params.adapt_rate * jnp.where(same, 1.0, acc.astype(fdt) - params.target_acc)
        lo = jnp.log(params.scale0) - 6.0
        log_scale = jnp.clip(c.log_scale + jnp.where(hop_end, step, 0.0), lo, lo + 9.0)
        better = e < c.best_e
        best_e = jnp.where(better, e, c.best_e)
        hops = c.hops + hop_end.astype(jnp.int32)
        n_min = c.n_min + hop_end.astype(jnp.int32)
        hit = best_e <= params.target + params.target_tol
        first_now = (c.first_hop < 0) & jnp.any(hit)
        # a hop relaxation that ended without converging (done) stopped at the cap
        # (int32 sums: under x64 a plain sum would widen the loop's carry)
        judged = w["judged"] + jnp.sum(hop_end, dtype=jnp.int32)
        capped = w["capped"] + jnp.sum(hop_end & ~lb["done"], dtype=jnp.int32)
        return c._replace(
            x=x,
            e=e,
            best_x=_tree.select_rows(better, x, c.best_x),
            best_e=best_e,
            log_scale=log_scale,
            accepted=c.accepted + (acc & hop_end).astype(fdt),
            hops=hops,
            n_min=n_min,
            hit_hop=jnp.where((c.hit_hop < 0) & hit, hops, c.hit_hop),
            first_hop=jnp.where(first_now, jnp.max(hops), c.first_hop),
            hit_evals=jnp.where(first_now, jnp.sum(c.n_eval.astype(jnp.float32)), c.hit_evals),
            hit_mins=jnp.where(first_now, jnp.sum(n_min.astype(jnp.float32)), c.hit_mins),
            walk=dict(
                w,
                phase=jnp.where(ended, PENDING, phase),
                first=w["first"] & ~ended,
                judged=judged,
                capped=capped,
            ),
        )

    def grow_cap(c):
        return c._replace(walk=_grow_cap(c.walk, n, params.hop_cap_max))

    def start_hops(c):
        """The next hop of up to k_moves PENDING chains with budget left: FRESH."""
        w = c.walk
        lb, phase = w["lb"], w["phase"]
        want = (phase == PENDING) & (c.n_eval < params.budget)
        order = (jnp.arange(n) + (c.hop * k_moves) % n) % n
        j = jnp.nonzero(want[order], size=k_moves, fill_value=n)[0]
        idx = jnp.where(j < n, order[jnp.minimum(j, n - 1)], n)
        safe = jnp.minimum(idx, n - 1)
        starts = jax.vmap(perturb)(safe, c.hops[safe] + 1, _tree.take(c.x, safe), c.log_scale[safe])
        lb = dict(lb, z=lb["z"].at[idx].set(starts, mode="drop"))
        return c._replace(walk=dict(w, lb=lb, phase=phase.at[idx].set(FRESH, mode="drop")))

    def service(c):
        return start_hops(grow_cap(judge(c)))

    def body(c):
        c = jax.lax.cond(c.hop % _SERVICE_EVERY == 0, service, lambda q: q, c)
        w = c.walk
        lb, phase = w["lb"], w["phase"]
        # one evaluation for every chain that is relaxing or starting to
        fresh = phase == FRESH
        relaxing = phase == RELAXING
        # once the target is reached a stopping search evaluates nothing more
        evaluating = (fresh | relaxing) & ~(stop & (c.first_hop >= 0))
        fresh, relaxing = fresh & evaluating, relaxing & evaluating
        zt, alpha = jax.vmap(trial)(lb)
        zt = jnp.where(fresh[:, None], lb["z"], zt)
        et, gt = jax.vmap(evaluate)(zt)
        started = jax.vmap(lbfgs_restart, in_axes=(0, 0, 0, 0, None))(lb, zt, et, gt, params.gtol)
        stepped = jax.vmap(lbfgs_update, in_axes=(0, 0, 0, 0, 0, None, None, None, 0))(
            lb, zt, alpha, et, gt, params.gtol, _MEMORY, None, relaxing
        )
        # the memory (chains, 16, dim) is written in place by the relaxing chains only
        # (`write`) and left alone by a restart: taken as is, not selected (a copy)
        mem = {k: stepped[k] for k in _MEM_KEYS}
        small = {k: v for k, v in lb.items() if k not in _MEM_KEYS}
        pick = {k: started[k] for k in small}
        pick = _tree.select_rows(
            fresh, pick, _tree.select_rows(relaxing, {k: stepped[k] for k in small}, small)
        )
        lb = dict(pick, **mem)
        # a first relaxation may run to relax_steps iterations in all, a hop's to the cap
        limit = jnp.where(w["first"], params.relax_steps, w["cap"])
        ended = evaluating & (lb["done"] | (lb["it"] >= limit))
        phase = jnp.where(ended, ENDED, jnp.where(fresh, RELAXING, phase))
        it = c.hop + 1
        c = c._replace(
            hop=it,
            n_eval=c.n_eval + evaluating.astype(jnp.int32),
            walk=dict(w, lb=lb, phase=phase),
        )
        if kind == "parallel_tempering" and rungs > 1:
            due = (it % params.exchange_every) == 0
            parity = (it // params.exchange_every) % 2
            k_swap = jax.random.fold_in(k_ex_base, it)
            c = jax.lax.cond(
                due,
                lambda q: _exchange(q, temperatures(q), k_swap, parity, rungs, params),
                lambda q: q,
                c,
            )
        if kind == "parallel_tempering" and 1 < rungs < n:
            every = params.restart_every
            mean_hops = jnp.mean(c.hops.astype(fdt))
            due = (every > 0) & (jnp.floor(mean_hops / jnp.maximum(every, 1)) > c.walk["restarted"])
            c = jax.lax.cond(due, lambda q: _restart_groups(q, rungs), lambda q: q, c)
        if kind == "population":
            mean_hops = jnp.mean(c.hops.astype(fdt))
            due = jnp.floor(mean_hops / resample) > c.walk["resampled"]
            k_res = jax.random.fold_in(k_ex_base, it)
            c = jax.lax.cond(due, lambda q: _resample(q, temperatures(q)[0], k_res), lambda q: q, c)
        return c

    return jax.lax.while_loop(cond, body, carry)


def _grow_cap(walk, window, cap_max):
    """Review the hop cap once `window` hop relaxations have been judged since the last
    review: doubled (at most `cap_max`) when more than half of them ended at it without
    converging, else kept; the counts start again. Never lowered."""
    full = walk["judged"] >= window
    grow = full & (2 * walk["capped"] > walk["judged"])
    cap = jnp.where(grow, jnp.minimum(2 * walk["cap"], cap_max), walk["cap"])
    zero = jnp.int32(0)
    return dict(
        walk,
        cap=jnp.maximum(cap, walk["cap"]).astype(jnp.int32),
        judged=jnp.where(full, zero, walk["judged"]).astype(jnp.int32),
        capped=jnp.where(full, zero, walk["capped"]).astype(jnp.int32),
    )


def exchange_indices(e, temps, active, key, parity, rungs):
    """Replica exchange between neighbouring rungs (chain c has rung c % rungs; pairs
    (c, c + 1) whose lower rung has the given `parity`), Metropolis on
    (1/T_c - 1/T_{c+1}) (E_c - E_{c+1}); only pairs of `active` chains swap. Returns the
    (n,) source index of each slot."""
    n = e.shape[0]
    idx = jnp.arange(n)
    rung = idx % rungs
    lower = (rung % 2 == parity) & (rung + 1 < rungs)
    up = jnp.minimum(idx + 1, n - 1)
    log_r = (1.0 / temps - 1.0 / temps[up]) * (e - e[up])
    log_r = jnp.where(jnp.isnan(log_r), -jnp.inf, log_r)
    u = jax.random.uniform(key, (n,), e.dtype)
    swap_lo = lower & active & active[up] & (jnp.log(u) < log_r)
    down = jnp.maximum(idx - 1, 0)
    swap_hi = (rung >= 1) & swap_lo[down]
    return jnp.where(swap_lo, up, jnp.where(swap_hi, down, idx))


def _exchange(c, temps, key, parity, rungs, params):
    """Neighbouring rungs exchange their minima (`exchange_indices`), each with its
    in-flight relaxation; what belongs to the slot (scale, counts, budget) stays. Only
    chains with budget left exchange (a spent chain takes on no new relaxation)."""
    src = exchange_indices(c.e, temps, c.n_eval < params.budget, key, parity, rungs)
    w = c.walk
    walk = dict(w, lb=_tree.take(w["lb"], src), phase=w["phase"][src], first=w["first"][src])
    return c._replace(x=_tree.take(c.x, src), e=c.e[src], walk=walk)


def resample_indices(e, t_last, t_now, key):
    """Systematic resampling of a population of energies `e` (n,) from temperature `t_last`
    to `t_now`: weights exp(-(1/t_now - 1/t_last) E), non-finite weights 0; the identity
    when every weight is 0. Returns the (n,) source index of each slot."""
    n = e.shape[0]
    logw = -(1.0 / t_now - 1.0 / t_last) * e
    logw = jnp.where(jnp.isfinite(logw), logw, -jnp.inf)
    wts = jnp.exp(logw - jnp.max(logw))
    wts = jnp.where(jnp.isfinite(wts), wts, 0.0)
    tot = jnp.sum(wts)
    cum = jnp.cumsum(wts) / jnp.where(tot > 0, tot, 1.0)
    u = (jax.random.uniform(key, (), e.dtype) + jnp.arange(n, dtype=e.dtype)) / n
    idx = jnp.clip(jnp.searchsorted(cum, u), 0, n - 1)
    return jnp.where(tot > 0, idx, jnp.arange(n))


def restart_indices(best_e, rungs):
    """Source slot of every chain when the worst quarter (at least one) of the tempering
    groups (chains g * rungs .. g * rungs + rungs - 1), ranked by the lowest energy any
    of their chains has found, take on the chains of as many of the best groups, rung by
    rung (the k-th worst group copies the k-th best); the others keep theirs."""
    n = best_e.shape[0]
    groups = n // rungs
    g_best = jnp.min(jnp.where(jnp.isnan(best_e), jnp.inf, best_e).reshape(groups, rungs), axis=1)
    order = jnp.argsort(g_best, stable=True)
    k = max(1, groups // 4)
    src = jnp.arange(groups).at[order[groups - k :][::-1]].set(order[:k])
    return (src[:, None] * rungs + jnp.arange(rungs)[None, :]).reshape(n)


def _restart_groups(c, rungs):
    """The worst tempering groups restart from the best groups' minima (`restart_indices`);
    a chain that receives another's minimum drops its in-flight relaxation and starts a
    new hop from it (as after a resampling); scales, counts and bests stay with the slot."""
    return _take_minima(c, restart_indices(c.best_e, rungs), "restarted")


def _resample(c, t_now, key):
    """Systematic resampling of the minima (`resample_indices`); a chain that receives
    another's minimum starts a new hop from it."""
    c = _take_minima(c, resample_indices(c.e, c.t_last, t_now, key), "resampled")
    return c._replace(t_last=t_now)


def _take_minima(c, idx, counter: str):
    """Chain i takes chain idx[i]'s minimum; a chain that received another's starts a
    new hop from it (its in-flight relaxation dropped); `walk[counter]` counts the event."""
    moved = idx != jnp.arange(c.e.shape[0])
    w = c.walk
    walk = dict(
        w,
        phase=jnp.where(moved, PENDING, w["phase"]),
        first=w["first"] & ~moved,
        **{counter: w[counter] + 1},
    )
    return c._replace(x=_tree.take(c.x, idx), e=c.e[idx], walk=walk)
