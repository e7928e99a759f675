"""Basin hopping over many chains in one compiled loop, with tempering or a population.

One hop of chain c (Wales & Doye, J. Phys. Chem. A 101, 5111 (1997)): perturb the
current minimum with a move (`thermo.moves`: a capsule's domain moves or a Gaussian
kick) of the chain's own scale, relax it to the nearest local minimum (`local="lbfgs"`:
`local_min.lbfgs_until_one`, one evaluation per iteration; `local="fire"`:
`relax.fire_until_one`; both stop at |grad E| < gtol, at most `relax_steps` iterations,
and count each chain's own evaluations), accept the new minimum with probability
min(1, exp(-(E_new - E) / T_c)). The move scale follows
log s += rate (accepted - target_acceptance), and log s += rate when the hop fell back
into the minimum it left (the kick was too small to leave the basin); it stays within
[e^-6, e^3] times its start, 0.2 x the states' length scale. Three ways to set T_c:

- "basin_hopping": one temperature for every chain;
- "parallel_tempering": chains in groups of R replicas on a geometric temperature ladder;
  after every hop neighbouring replicas (even pairs on even hops, odd pairs on odd ones)
  exchange their minima with probability min(1, exp((1/T_r - 1/T_r+1)(E_r - E_r+1)));
- "population": one temperature for all, lowered geometrically with the fraction of the
  budget used, the population resampled (systematic resampling, weights
  exp(-(1/T_now - 1/T_last) E)) every `resample_every` hops: population annealing
  (Hukushima & Iba 2003) on the relaxed energies.

Default temperatures are read from the landscape: the robust spread s of the chains'
first local minima (interquartile range / 1.349; when over a quarter of them are steric
clashes far above the lower quartile, of the others: `_robust_spread`); the ladder runs
from 0.05 s to s, the single temperature is 0.25 s, the population is annealed from s to 0.02 s.

`num_steps` is a budget of energy-and-gradient evaluations per chain (the same unit as
an annealing step): a chain hops until it has spent it. The loop (`loop="sync"`) is a
`lax.while_loop` over hops, run on the host in chunks of hops (one compiled function for
every chunk: chunk bounds are data), which gives progress, checkpoints and the wall time
to the first hit of a target; under `jit` / `vmap` it runs to the end in one call. With
`stop_at_target` the loop itself stops in the hop that first reaches the target.
`loop="async"` (`thermo.hop_async`) runs the same search as a loop over L-BFGS
iterations in which each chain hops on its own clock (chunks: hops of the
longest-running chain).
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import _tree
from .._checks import is_traced
from .._progress import Progress
from ..run._checkpoint import _key_fingerprint, _load_checkpoint, _save_checkpoint
from ..samplers._base import energy_and_grad
from . import constraints as _constraints
from . import relax as _relax
from .hop_async import _MEMORY as _HOP_MEMORY
from .hop_async import PENDING, async_loop, exchange_indices, first_relaxation, resample_indices
from .local_min import lbfgs_until_one
from .moves import Move, apply_move

__all__ = [
    "SEARCH_METHODS",
    "HOP_LOOPS",
    "SearchParams",
    "SearchCarry",
    "SearchOutput",
    "run_search",
    "chain_cost",
    "active_chain_rule",
]

PyTree = Any
SEARCH_METHODS = ("basin_hopping", "parallel_tempering", "population")
HOP_LOOPS = ("async", "sync")
_INT_MAX = np.iinfo(np.int32).max
# active-chain rule (`active_chain_rule`): operations of one loop iteration over all
# active chains at which the per-chain work is taken to dominate the loop's fixed cost
# (CPU), and the fewest chains a batch is cut to: 128, because with the hop loop's L-BFGS
# memory 16 smaller batches reached LJ31's record later than 128 chains at once on 10 of
# 10 seeds' medians (32: trapped in a wrong funnel; 64: 2-4x slower), while LJ26 gained
# 1.6-2.4x from 32-64 (benchmarks/README.md, "active_chains")
ACTIVE_WORK = 1.0e6
ACTIVE_MIN = 128
_LBFGS_OPS_PER_COORD = 16 * _HOP_MEMORY  # two-loop recursion and memory update
# outlier cut of `_robust_spread`, in lower-tail spreads above the lower quartile
_TRIM = 10.0


class SearchParams(NamedTuple):
    """Data of one search (all arrays: new values reuse the compiled loop)."""

    ladder: jax.Array  # (R,) replica temperatures; (1,) basin hopping; (2,) hot, cold
    target: jax.Array
    target_tol: jax.Array
    target_acc: jax.Array
    adapt_rate: jax.Array
    dt0: jax.Array
    dt_max: jax.Array
    max_step: jax.Array
    scale0: jax.Array
    gtol: jax.Array
    budget: jax.Array  # evaluations per chain
    relax_steps: jax.Array
    hop_cap: jax.Array  # iterations of one hop's L-BFGS relaxation (the async loop's start)
    hop_cap_max: jax.Array  # the most the async loop may raise it to (`hop_async._grow_cap`)
    restart_every: jax.Array  # hops between restarts of the worst tempering groups (0: none)
    key: jax.Array
    exchange_every: jax.Array  # iterations between tempering exchanges (async loop)


class SearchCarry(NamedTuple):
    """State of the search between chunks (what a checkpoint holds)."""

    hop: jax.Array  # () hops done (by the longest-running chain)
    x: PyTree  # (chains, ...) current minimum
    e: jax.Array
    best_x: PyTree
    best_e: jax.Array
    log_scale: jax.Array
    accepted: jax.Array  # (chains,) accepted hops
    hops: jax.Array  # (chains,) hops done
    n_min: jax.Array  # (chains,) local minimisations
    n_eval: jax.Array  # (chains,) energy-and-gradient evaluations
    hit_hop: jax.Array  # (chains,) first hop at which the chain reached the target (-1)
    first_hop: jax.Array  # () first hop at which any chain reached it (-1; 0: at the start)
    hit_evals: jax.Array  # () evaluations over all chains until then
    hit_mins: jax.Array  # () local minimisations over all chains until then
    t_last: jax.Array  # () temperature at the last resampling (population)
    walk: Any = None  # the chains' in-flight relaxations (async loop; `hop_async`)


class SearchOutput(NamedTuple):
    ok: jax.Array
    carry: SearchCarry
    params: SearchParams
    wall_time: float
    time_to_target: float


def _op_count(jaxpr) -> int:
    """Operations of a jaxpr: output elements of every elementwise op, 2 m n k for a
    dot_general, input elements for a reduction; a scan counts its body `length` times,
    a while loop its body once (its trip count is data), a cond its dearest branch."""
    from jax.extend import core as jcore

    def sub(v):
        if isinstance(v, jcore.ClosedJaxpr):
            return [v.jaxpr]
        if isinstance(v, jcore.Jaxpr):
            return [v]
        if isinstance(v, (tuple, list)):
            return [j for u in v for j in sub(u)]
        return []

    def size(v):
        return int(np.prod(getattr(v.aval, "shape", ()) or (1,)))

    total = 0
    for eq in jaxpr.eqns:
        name, p = eq.primitive.name, eq.params
        if name == "scan":
            total += int(p["length"]) * _op_count(p["jaxpr"].jaxpr)
        elif name == "cond":
            total += max(_op_count(b.jaxpr) for b in p["branches"])
        elif subs := [j for v in p.values() for j in sub(v)]:
            total += sum(_op_count(j) for j in subs)
        elif name == "dot_general":
            (contract, _), _ = p["dimension_numbers"]
            k = int(np.prod([eq.invars[0].aval.shape[i] for i in contract]))
            total += 2 * k * sum(size(v) for v in eq.outvars)
        elif name.startswith(("reduce", "arg", "cum")):
            total += sum(size(v) for v in eq.invars)
        else:
            total += sum(size(v) for v in eq.outvars)
    return total


def _chain_cost_value(energy_fn, cs, project, example) -> int:
    penalised, _ = _penalised_and_projection(energy_fn, cs, project)
    spec = jax.tree.map(lambda l: jax.ShapeDtypeStruct(jnp.shape(l), jnp.result_type(l)), example)
    closed = jax.make_jaxpr(lambda x: energy_and_grad(penalised, x))(spec)
    dim = sum(int(np.prod(jnp.shape(l))) for l in jax.tree.leaves(example))
    return _op_count(closed.jaxpr) + _LBFGS_OPS_PER_COORD * dim


@eqx.filter_jit
def _chain_cost_jit(energy_fn, cs, project, example):
    # the count is fixed at trace time; jit caches it per structure like the search
    return jnp.asarray(float(_chain_cost_value(energy_fn, cs, project, example)), jnp.float32)


def chain_cost(energy_fn, cs, project, example, *, traced: bool = False) -> int:
    """Per-chain work of one asynchronous loop iteration, in operations (`_op_count` of
    one energy-and-gradient evaluation of the penalised energy, counted from its jaxpr,
    plus the L-BFGS update's ~128 operations per coordinate). A fixed property of the
    energy and the state's shape, not a timing; counted once per structure (cached with
    the compiled search; under an outer trace counted again)."""
    if traced:
        return _chain_cost_value(energy_fn, cs, project, example)
    return int(_chain_cost_jit(energy_fn, cs, project, example))


def active_chain_rule(cost: float, n: int, backend: str | None = None) -> int:
    """How many chains the search runs at a time, from the per-chain cost (`chain_cost`).

    One iteration of the loop costs a fixed overhead plus `cost` per active chain. The
    time to a first hit is (iterations to it) x (cost of an iteration); where the hit
    comes after about the same number of iterations whatever the chain count (measured
    on LJ26 and LJ31, benchmarks/README.md "Global search"), chains beyond what makes
    the per-chain work dominate an iteration only slow each iteration down. The rule:
    the smallest power of two A with A x cost >= ACTIVE_WORK (1e6 operations), at least
    ACTIVE_MIN (128), at most n: 128 chains at a time for AB-13, LJ26 and LJ31 alike
    (~1.2e4 to 4.4e4 operations), more for energies under ~8e3 operations. On an
    accelerator (not measured) every chain runs at once."""
    backend = jax.default_backend() if backend is None else backend
    if backend != "cpu" or n <= ACTIVE_MIN:
        return n
    want = ACTIVE_WORK / max(float(cost), 1.0)
    a = 1 << max(int(np.ceil(np.log2(max(want, 1.0)))), 0)
    return int(min(max(a, ACTIVE_MIN), n))


def _penalised_and_projection(energy_fn, cs, project):
    penalised = _constraints.apply_constraints(energy_fn, cs)
    proj_c = _constraints.project_all(cs) if _constraints.has_projection(cs) else None
    if project is not None and proj_c is not None:
        return penalised, (lambda x: project(proj_c(x)))
    return penalised, (project if project is not None else proj_c)


def _robust_spread(e):
    """Robust spread of the first minima's energies: IQR / 1.349, where more than a
    quarter of the finite energies (the IQR's breakdown point) lie above the cut
    q25 + `_TRIM` x (q25 - q5) / 0.970 (the lower tail's spread; no cut when
    q25 == q5) computed over the energies below the cut. Starts that relax into a
    steric clash (a chain folded through itself: E ~ +1e3 where the physical minima
    lie within a few units) sit above it: on AB-34 over half of the random starts, and
    the plain IQR then gave a ladder at T ~ 60-1 300 against minima ~10 apart. Below
    the breakdown point the plain IQR is kept (a few clashes barely move it)."""
    fin = jnp.isfinite(e)
    ef = jnp.where(fin, e, jnp.nan)
    q5, q25 = jnp.nanpercentile(ef, jnp.array([5.0, 25.0]))
    cut = jnp.where(q25 > q5, q25 + _TRIM * (q25 - q5) / 0.970, jnp.inf)
    above = jnp.sum(fin & (e > cut)) > 0.25 * jnp.sum(fin)
    ef = jnp.where(above & (ef > cut), jnp.nan, ef)
    q25, q75 = jnp.nanpercentile(ef, jnp.array([25.0, 75.0]))
    s = (q75 - q25) / 1.349
    med = jnp.abs(jnp.nanmedian(ef))
    s = jnp.where(s > 0, s, 1e-2 * med)
    return jnp.where(jnp.isfinite(s) & (s > 0), s, 1.0)


def _length_scale(x_batch):
    """Median over chains of the RMS deviation of a state's coordinates from their mean."""
    per = []
    for l in jax.tree.leaves(x_batch):
        flat = l.reshape(l.shape[0], -1)
        per.append(jnp.sum((flat - jnp.mean(flat, axis=1, keepdims=True)) ** 2, axis=1))
    size = sum(int(np.prod(l.shape[1:])) for l in jax.tree.leaves(x_batch))
    rms = jnp.sqrt(sum(per) / max(size, 1))
    s = jnp.median(rms)
    return jnp.where(jnp.isfinite(s) & (s > 0), s, 1.0)


def _local_minimiser(penalised, proj, local):
    """`one(x0, dt0, dt_max, max_step, max_iter, gtol) -> (x, E, evaluations)`."""
    if local == "lbfgs":
        lb = lbfgs_until_one(penalised, proj)
        return lambda x0, dt0, dt_max, max_step, max_iter, gtol: lb(x0, max_iter, gtol, max_step)
    return _relax.fire_until_one(penalised, proj)


@eqx.filter_jit
def _init_jit(
    energy_fn, cs, project, x0, temp_in, relax_steps, consts, *, kind, rungs, local, loop
):
    """First local minimum of every chain (the async loop: as far as the hop cap gets
    it, `hop_async.first_relaxation`); the landscape's scales."""
    penalised, proj = _penalised_and_projection(energy_fn, cs, project)
    eg = jax.vmap(lambda x: energy_and_grad(penalised, x))
    if proj is not None:
        x0 = jax.vmap(proj)(x0)
    e_s, g_s = eg(x0)
    ok = jnp.any(jnp.isfinite(e_s) & jax.vmap(_tree.all_finite)(g_s))
    fdt = jnp.result_type(e_s)
    length = _length_scale(x0).astype(fdt)
    gn = jnp.sqrt(jax.vmap(_tree.sq_norm)(g_s))
    # first FIRE move dt^2 |F| = 1% of the state's length scale (FIRE then adapts dt)
    dt_s = jnp.sqrt(0.01 * length / jnp.maximum(gn, 1e-30))
    dt_s = jnp.where(jnp.isfinite(dt_s) & (dt_s > 0), dt_s, 1e-6).astype(fdt)
    max_step = 0.1 * length
    walk = None
    if loop == "async":
        x, e, it, walk = first_relaxation(
            penalised, proj, x0, consts["hop_cap"], consts["gtol"], max_step
        )
    else:
        minimise = jax.vmap(
            _local_minimiser(penalised, proj, local), in_axes=(0, 0, 0, None, None, None)
        )
        first_steps = 4 * relax_steps if local == "fire" else relax_steps
        x, e, it = minimise(x0, dt_s, 100.0 * dt_s, max_step, first_steps, consts["gtol"])
    e = jnp.where(jnp.isnan(e), jnp.inf, e)
    lam = jax.vmap(_relax.curvature_one(penalised))(x)
    lam = jnp.nanmedian(jnp.where(jnp.isfinite(lam) & (lam > 0), lam, jnp.nan))
    lam = jnp.where(jnp.isfinite(lam) & (lam > 0), lam, 1.0)
    dt0 = (0.1 / jnp.sqrt(lam)).astype(fdt)
    spread = _robust_spread(e).astype(fdt)
    if kind == "parallel_tempering":
        frac = jnp.arange(rungs, dtype=fdt) / max(rungs - 1, 1)
        default = spread * 0.05 * (1.0 / 0.05) ** frac
    elif kind == "population":
        default = spread * jnp.array([1.0, 0.02], fdt)
    else:
        default = spread * jnp.array([0.25], fdt)
    ladder = jnp.where(jnp.isnan(temp_in), default, temp_in.astype(fdt))
    n = e.shape[0]
    target = consts["target"].astype(fdt)
    hit = e <= target + consts["target_tol"].astype(fdt)
    params = SearchParams(
        ladder=ladder,
        target=target,
        target_tol=consts["target_tol"].astype(fdt),
        target_acc=consts["target_acc"].astype(fdt),
        adapt_rate=consts["adapt_rate"].astype(fdt),
        dt0=dt0,
        dt_max=10.0 * dt0,
        max_step=max_step,
        scale0=0.2 * length,
        gtol=consts["gtol"].astype(fdt),
        budget=consts["budget"],
        relax_steps=relax_steps,
        hop_cap=consts["hop_cap"],
        hop_cap_max=consts["hop_cap_max"],
        restart_every=consts["restart_every"],
        key=consts["key"],
        exchange_every=consts["exchange_every"],
    )
    evals = (it + 20).astype(jnp.int32)  # the relaxation and the curvature estimate
    carry = SearchCarry(
        hop=jnp.int32(0),
        x=x,
        e=e,
        best_x=x,
        best_e=e,
        log_scale=jnp.full((n,), jnp.log(params.scale0), fdt),
        accepted=jnp.zeros((n,), fdt),
        hops=jnp.zeros((n,), jnp.int32),
        n_min=jnp.ones((n,), jnp.int32),
        n_eval=evals,
        hit_hop=jnp.where(hit, 0, -1).astype(jnp.int32),
        first_hop=jnp.where(jnp.any(hit), 0, -1).astype(jnp.int32),
        hit_evals=jnp.where(jnp.any(hit), jnp.sum(evals.astype(jnp.float32)), -1.0),
        hit_mins=jnp.where(jnp.any(hit), jnp.float32(n), -1.0),
        t_last=ladder[0],
        walk=walk,
    )
    return ok, carry, params


def _exchange(c: SearchCarry, temps, active, key, parity, rungs):
    """Replica exchange between neighbouring rungs (`exchange_indices`)."""
    src = exchange_indices(c.e, temps, active, key, parity, rungs)
    return c._replace(x=_tree.take(c.x, src), e=c.e[src])


def _resample(c: SearchCarry, t_now, key):
    """Systematic resampling of the population with weights exp(-(1/t_now - 1/t_last) E)."""
    idx = resample_indices(c.e, c.t_last, t_now, key)
    return c._replace(x=_tree.take(c.x, idx), e=c.e[idx], t_last=t_now)


@eqx.filter_jit
def _chunk_jit(
    energy_fn,
    cs,
    project,
    moves,
    params,
    carry,
    h_stop,
    stop,
    *,
    kind,
    rungs,
    resample,
    local,
    loop,
):
    """Hops until hop `h_stop`, until every chain has spent its budget, or (`stop`)
    until the target is reached. `loop="async"`: `hop_async.async_loop`."""
    penalised, proj = _penalised_and_projection(energy_fn, cs, project)
    if loop == "async":
        return async_loop(
            penalised,
            proj,
            moves,
            params,
            carry,
            h_stop,
            stop,
            kind=kind,
            rungs=rungs,
            resample=resample,
            temperatures=lambda c: chain_temperatures(c, params, kind, rungs),
        )
    minimise = _local_minimiser(penalised, proj, local)
    n = carry.e.shape[0]

    def hop_one(key, x, e, log_scale, active, temp):
        k_move, k_acc = jax.random.split(key)
        xn = apply_move(moves, k_move, x, jnp.exp(log_scale))
        if proj is not None:
            xn = proj(xn)
        # under vmap a hop lasts as long as its slowest relaxation: L-BFGS, which needs
        # ~5x fewer iterations than FIRE, gets the hop cap (relax_steps // 5; fixed here)
        cap = params.relax_steps if local == "fire" else params.hop_cap
        max_iter = jnp.where(active, cap, 0)
        xr, er, it = minimise(xn, params.dt0, params.dt_max, params.max_step, max_iter, params.gtol)
        er = jnp.where(jnp.isfinite(er), er, jnp.inf)
        u = jax.random.uniform(k_acc, (), e.dtype)
        acc = active & (jnp.log(u) < -(er - e) / temp)
        return xr, er, it, acc

    def temperatures(c: SearchCarry):
        return chain_temperatures(c, params, kind, rungs)

    def active_of(c: SearchCarry):
        return c.n_eval < params.budget

    def cond(c: SearchCarry):
        return (c.hop < h_stop) & jnp.any(active_of(c)) & ~(stop & (c.first_hop >= 0))

    def body(c: SearchCarry):
        h = c.hop + 1
        active = active_of(c)
        temps = temperatures(c)
        k_hop = jax.random.fold_in(params.key, h)
        k_chains, k_swap = jax.random.split(k_hop)
        keys = jax.random.split(k_chains, n)
        xr, er, it, acc = jax.vmap(hop_one)(keys, c.x, c.e, c.log_scale, active, temps)
        x = _tree.select_rows(acc, xr, c.x)
        e = jnp.where(acc, er, c.e)
        # a hop back into the same minimum moved nothing: the scale grows
        same = jnp.abs(er - c.e) <= 1e-6 * (1.0 + jnp.abs(c.e))
        step = params.adapt_rate * jnp.where(same, 1.0, acc.astype(e.dtype) - params.target_acc)
        lo = jnp.log(params.scale0) - 6.0
        log_scale = jnp.clip(c.log_scale + jnp.where(active, step, 0.0), lo, lo + 9.0)
        better = e < c.best_e
        best_x = _tree.select_rows(better, x, c.best_x)
        best_e = jnp.where(better, e, c.best_e)
        n_min = c.n_min + active.astype(jnp.int32)
        n_eval = c.n_eval + jnp.where(active, it, 0).astype(jnp.int32)
        hit = best_e <= params.target + params.target_tol
        hit_hop = jnp.where((c.hit_hop < 0) & hit, h, c.hit_hop)
        first_now = (c.first_hop < 0) & jnp.any(hit)
        c = c._replace(
            hop=h,
            x=x,
            e=e,
            best_x=best_x,
            best_e=best_e,
            log_scale=log_scale,
            accepted=c.accepted + acc.astype(e.dtype),
            hops=c.hops + active.astype(jnp.int32),
            n_min=n_min,
            n_eval=n_eval,
            hit_hop=hit_hop,
            first_hop=jnp.where(first_now, h, c.first_hop),
            hit_evals=jnp.where(first_now, jnp.sum(n_eval.astype(jnp.float32)), c.hit_evals),
            hit_mins=jnp.where(first_now, jnp.sum(n_min.astype(jnp.float32)), c.hit_mins),
        )
        if kind == "parallel_tempering" and rungs > 1:
            c = _exchange(c, temps, active, k_swap, h % 2, rungs)
        if kind == "population":
            due = (h % resample) == 0
            t_now = temperatures(c)[0]
            c = jax.lax.cond(due, lambda q: _resample(q, t_now, k_swap), lambda q: q, c)
        return c

    return jax.lax.while_loop(cond, body, carry)


@eqx.filter_jit
def polish_jit(energy_fn, cs, project, x, dt0, dt_max, max_step, gtol, *, method, steps):
    """Final local relaxation of every chain's best state (energies recomputed in x's
    dtype); keeps a relaxed state only where it is lower."""
    penalised, proj = _penalised_and_projection(energy_fn, cs, project)
    fdt = jnp.result_type(*jax.tree.leaves(x))
    e = jax.vmap(penalised)(x)
    e = jnp.where(jnp.isnan(e), jnp.inf, e)
    if method == "lbfgs":
        rx, re = _relax.lbfgs_one_batch(penalised, proj, steps, gtol)(x)
    elif method == "local_lbfgs":
        # a float32 polish below the energy's rounding noise ends when it stops gaining
        lb = jax.vmap(lbfgs_until_one(penalised, proj, stall=20), in_axes=(0, None, None, None))
        rx, re, _ = lb(x, steps, gtol, max_step.astype(fdt))
    else:
        fire = jax.vmap(_relax.fire_until_one(penalised, proj), (0, None, None, None, None, None))
        rx, re, _ = fire(x, dt0.astype(fdt), dt_max.astype(fdt), max_step.astype(fdt), steps, gtol)
    better = re < e
    return _tree.select_rows(better, rx, x), jnp.where(better, re, e)


def run_search(
    energy_fn,
    cs,
    project,
    moves: tuple[Move, ...],
    key,
    x0,
    *,
    kind: str,
    local: str,
    loop: str,
    rungs: int,
    resample_every: int,
    temperature,
    consts: dict,
    relax_steps: int,
    traced: bool,
    chunk_hops: int,
    stop_at_target: bool,
    checkpoint: str | None,
    progress: bool,
) -> SearchOutput:
    """The host driver: init, the hop loop in chunks (or in one call under a trace)."""
    t_start = time.perf_counter()
    temp_in = jnp.asarray(temperature)
    ok, carry, params = _init_jit(
        energy_fn,
        cs,
        project,
        x0,
        temp_in,
        jnp.int32(relax_steps),
        consts,
        kind=kind,
        rungs=rungs,
        local=local,
        loop=loop,
    )
    static = dict(kind=kind, rungs=rungs, resample=resample_every, local=local, loop=loop)
    stop = jnp.asarray(bool(stop_at_target))
    # values closed over by a plain-function energy can be traced without showing in
    # its leaves (vmap over a closure): the init's outputs then are tracers
    if traced or is_traced(ok):
        carry = _chunk_jit(energy_fn, cs, project, moves, params, carry, _INT_MAX, stop, **static)
        return SearchOutput(ok, carry, params, float("nan"), float("nan"))
    if not bool(ok):
        return SearchOutput(ok, carry, params, time.perf_counter() - t_start, float("nan"))
    meta = None
    if checkpoint is not None:
        meta = {
            "method": kind,
            "local": local,
            "loop": loop,
            "rungs": rungs,
            "chains": int(carry.e.shape[0]),
            "num_steps": int(params.budget),
            "relax_steps": relax_steps,
            "hop_cap": [int(consts["hop_cap"]), int(consts["hop_cap_max"])],
            "restart_every": int(consts["restart_every"]),
            "shapes": [list(np.shape(l)) for l in jax.tree.leaves(x0)],
            "key": _key_fingerprint(key),
        }
        import os

        if os.path.exists(checkpoint):
            carry, _ = _load_checkpoint(checkpoint, carry, meta)
    t_hit = float("nan")
    if int(carry.first_hop) >= 0:
        t_hit = time.perf_counter() - t_start
    budget = int(params.budget)
    bar = Progress(budget, _spent(carry, budget), label=kind, status="", enabled=progress)
    with bar:
        while True:
            done = bool(np.all(np.asarray(carry.n_eval) >= budget))
            if carry.walk is not None:  # async: the last hops still in flight finish
                done = done and bool(np.all(np.asarray(carry.walk["phase"]) == PENDING))
            if done or (stop_at_target and int(carry.first_hop) >= 0):
                break
            # sync: carry.hop counts hops; async: iterations (a chunk is chunk_hops hops
            # of the longest-running chain)
            done_hops = int(carry.hop) if loop == "sync" else int(np.max(np.asarray(carry.hops)))
            h_stop = jnp.int32(done_hops + chunk_hops)
            carry = _chunk_jit(energy_fn, cs, project, moves, params, carry, h_stop, stop, **static)
            if np.isnan(t_hit) and int(carry.first_hop) >= 0:
                t_hit = time.perf_counter() - t_start
            if checkpoint is not None:
                _save_checkpoint(checkpoint, carry, {**(meta or {}), "steps_done": int(carry.hop)})
            bar.update(
                _spent(carry, budget),
                status=f"best {float(np.nanmin(np.asarray(carry.best_e))):.6g}",
            )
    return SearchOutput(ok, carry, params, time.perf_counter() - t_start, t_hit)


def _spent(carry: SearchCarry, budget: int) -> int:
    """Median evaluations spent per chain (for the progress bar)."""
    return int(min(budget, float(np.median(np.asarray(carry.n_eval)))))


def chain_temperatures(carry: SearchCarry, params: SearchParams, kind: str, rungs: int):
    """(chains,) each chain's Metropolis temperature at the state `carry` describes."""
    n = carry.e.shape[0]
    if kind == "parallel_tempering":
        return params.ladder[jnp.arange(n) % rungs]
    if kind == "population":
        used = jnp.mean(carry.n_eval.astype(params.ladder.dtype)) / params.budget
        hot, cold = params.ladder[0], params.ladder[1]
        return jnp.full((n,), hot * (cold / hot) ** jnp.clip(used, 0.0, 1.0))
    return jnp.full((n,), params.ladder[0])
