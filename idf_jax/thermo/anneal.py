"""Global search for low-energy states: `sample_equilibrium`.

`method` picks the search: "anneal" (below), or basin hopping over many chains with a
single temperature, a replica ladder ("parallel_tempering") or a resampled population
("population"), all in `thermo.basin_hopping`; "auto" (the default) is parallel-tempering
basin hopping unless the call asks for annealing (a `schedule`, `record_every` or
`relax=False`). Every method reports the same `EquilibriumResult`.

Annealing: all chains run annealed Metropolis-adjusted Langevin (MALA) in one vmapped `lax.scan`:
at step i the target is exp(-E_c(x) / T_i), E_c the energy plus constraint penalties and
T_i the schedule. Each chain keeps its own step size, adapted on the fly towards a
target acceptance (annealing is an optimiser, not a sampler: per-step adaptation is
allowed here), and remembers the lowest-energy state it visited. An optional
deterministic relaxation (`idf_jax.thermo.relax`: L-BFGS via optax, or FIRE) then takes each
chain's best state to the nearest local minimum.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from .. import _tree
from .._checks import ArgumentError, as_key, is_traced, nonnegative_int
from ..samplers._base import check_positive, check_positive_int, energy_and_grad
from ..samplers.langevin import LangevinState, build_mala_kernel
from . import basin_hopping as _bh
from . import constraints as _constraints
from . import relax as _relax
from .implicit import detach, differentiable, implicit_minimiser
from .local_min import LOCAL_METHODS
from .moves import Move, check_moves
from .schedules import Schedule, as_schedule

__all__ = ["EquilibriumResult", "METHODS", "sample_equilibrium", "default_start_temperature"]

METHODS = ("auto", "anneal", *_bh.SEARCH_METHODS)
_PRECISIONS = (None, "float32", "float64")

PyTree = Any


class EquilibriumResult(NamedTuple):
    """What `sample_equilibrium` found.

    position: (chains, ...) the lowest-energy state each chain reached (after relaxation).
    energy: (chains,) E(x) (the raw energy, without penalties) at `position`.
    violation: (chains,) total constraint violation at `position` (0 = feasible).
    best_position: the overall best state (lowest E among feasible chains; lowest
        penalised energy if none is feasible).
    best_energy: () its energy.
    best_chain: () index of the chain it came from.
    reached: (chains,) bool, energy <= target + target_tol (all False without a target).
    num_reached: () how many chains reached the target.
    final_position: (chains, ...) where each chain's annealing ended (before relaxation).
    energy_trace: (chains, records) raw energy of the current state every
        `record_every` steps (empty when record_every is None).
    temperatures: (records,) the temperature at each record.
    acceptance_rate: (chains,) mean Metropolis acceptance over the run (annealing
        steps, or hops for basin hopping).
    step_size: (chains,) each chain's final Langevin step size (annealing) or move
        scale (basin hopping).
    num_minimisations: () local minimisations over all chains (basin hopping: one per
        hop and chain plus the first; annealing: the final relaxation of each chain).
    num_evaluations: () energy-and-gradient evaluations over all chains.
    hops: (chains,) basin-hopping steps each chain made (0 for annealing).
    first_hit_hop: () the hop at which a chain first came within `target_tol` of
        `target` (0: already the first minima; -1: never or no target; a search in
        batches, `active_chains`: the hop within the batch that hit). Annealing
        checks the target only at its end (hop 1 when reached).
    hit_minimisations, hit_evaluations: () local minimisations and evaluations over
        all chains until that first hit (-1 when never reached).
    time_to_target: () wall seconds from the call to the end of the chunk of hops in
        which the target was first reached (NaN when never, or under jit / vmap).
    fraction_reached: () num_reached / chains.
    wall_time: () wall seconds of the call, compilation included (NaN under a trace).
    search_temperature: (chains,) each chain's Metropolis temperature at the end of
        basin hopping (annealing: the last temperature of the schedule).
    """

    position: PyTree
    energy: Float[Array, " chains"]
    violation: Float[Array, " chains"]
    best_position: PyTree
    best_energy: Float[Array, ""]
    best_chain: Int[Array, ""]
    reached: Bool[Array, " chains"]
    num_reached: Int[Array, ""]
    final_position: PyTree
    energy_trace: Float[Array, "chains records"]
    temperatures: Float[Array, " records"]
    acceptance_rate: Float[Array, " chains"]
    step_size: Float[Array, " chains"]
    num_minimisations: Int[Array, ""] | int = -1
    num_evaluations: Float[Array, ""] | float = -1.0
    hops: Int[Array, " chains"] | None = None
    first_hit_hop: Int[Array, ""] | int = -1
    hit_minimisations: Float[Array, ""] | float = -1.0
    hit_evaluations: Float[Array, ""] | float = -1.0
    time_to_target: Float[Array, ""] | float = float("nan")
    fraction_reached: Float[Array, ""] | float = 0.0
    wall_time: Float[Array, ""] | float = float("nan")
    search_temperature: Float[Array, " chains"] | None = None


class _Carry(NamedTuple):
    x: PyTree
    e: Array  # penalised energy
    g: PyTree
    log_eta: Array
    best_x: PyTree
    best_e: Array
    acc_sum: Array


def _num_chains(x0_batch) -> int:
    leaves = jax.tree.leaves(x0_batch)
    if not leaves:
        raise ValueError("x0_batch must contain at least one array")
    shapes = {jnp.shape(l)[:1] for l in leaves}
    if any(jnp.ndim(l) == 0 for l in leaves) or len(shapes) != 1:
        raise ValueError(
            "every leaf of x0_batch needs the same leading chain axis, got shapes "
            f"{[jnp.shape(l) for l in leaves]}"
        )
    for l in leaves:
        if not jnp.issubdtype(jnp.result_type(l), jnp.floating):
            raise ValueError(f"x0_batch leaves must be floating point, got {jnp.result_type(l)}")
    return int(leaves[0].shape[0])


def _robust_sd(values: np.ndarray) -> float:
    q25, q75 = np.percentile(values, [25, 75])
    return float((q75 - q25) / 1.349)


def default_start_temperature(energies, dim: int) -> float:
    """T_0 whose thermal energy covers the spread of the initial energies.

    By equipartition a system with `dim` (locally harmonic) degrees of freedom holds
    <E> - E_min = (dim / 2) T above its minimum; setting that equal to the robust spread
    of the initial energies (interquartile range / 1.349, ignoring non-finite values)
    gives T_0 = 2 spread / dim, hot enough to move between the starting basins. When
    all energies are equal the scale |median E| / dim is used, and 1.0 when that is 0.
    """
    e = np.asarray(energies, np.float64)
    e = e[np.isfinite(e)]
    if e.size == 0:
        raise ValueError("every initial state has a non-finite energy")
    d = max(int(dim), 1)
    t0 = 2.0 * _robust_sd(e) / d if e.size > 1 else 0.0
    if not t0 > 0:
        t0 = abs(float(np.median(e))) / d
    if not t0 > 0:
        t0 = 1.0
    return float(t0)


def _step_from_curvature(lam, scale: float) -> jax.Array:
    """Per-chain MALA step eta = 0.5 / lambda_max (stable drift; acceptance near its
    optimum for a quadratic well), falling back to `scale` where lambda is 0 or non-finite."""
    lam = jnp.asarray(lam, jnp.float32)
    ok = jnp.isfinite(lam) & (lam > 0)
    return jnp.where(ok, 0.5 / jnp.where(ok, lam, 1.0), scale)


def sample_equilibrium(
    energy_fn: Callable[[PyTree], Array],
    key: PRNGKeyArray,
    x0_batch: PyTree,
    *,
    num_steps: int,
    schedule: Schedule | Callable | float | None = None,
    constraints=None,
    relax: bool | str = True,
    project: Callable[[PyTree], PyTree] | None = None,
    step_size: float | Array | None = None,
    target_acceptance: float | Array = 0.57,
    adapt_rate: float | Array | None = None,
    target: float | Array | None = None,
    target_tol: float | Array = 1e-3,
    relax_steps: int = 500,
    hop_cap: int | str = "adapt",
    restart_every: int | None = None,
    prerelax_steps: int = 100,
    record_every: int | None = None,
    t_end_ratio: float | Array = 1e-2,
    method: str = "auto",
    moves: Move | Sequence[Move] | None = None,
    precision: str | None = None,
    temperature: float | Array | None = None,
    replicas: int = 8,
    resample_every: int = 10,
    relax_gtol: float | Array = 1e-3,
    local: str = "lbfgs",
    hop_loop: str = "auto",
    exchange_every: int = 10,
    chunk_hops: int = 10,
    stop_at_target: bool = False,
    checkpoint: str | None = None,
    progress: bool = False,
    active_chains: int | None = None,
    preset: str | os.PathLike | None = None,
) -> EquilibriumResult:
    """Search every chain of `x0_batch` for the lowest energy; relax to the nearest minimum.

    `preset`: a packaged preset name (`idf.evolve.available_presets()`) or a preset file
    written by the evolution engine (`idf evolve equilibrium`): its configuration fills
    every option left at its default here; explicit arguments win.

    Methods (`method=`):
    - "basin_hopping", "parallel_tempering", "population": basin hopping over all
      chains at once (`thermo.basin_hopping`: perturb with `moves`, relax with the
      `local` minimiser (L-BFGS by default, or FIRE), Metropolis on the relaxed
      energies), with one temperature, with replicas on a temperature ladder that
      exchange minima, or as population annealing with resampling. `num_steps` is
      then each chain's budget of energy-and-gradient evaluations (a chain hops until
      it has spent it), `relax_steps` the most iterations of one local minimisation
      (it stops at |grad| < `relax_gtol`; with local="lbfgs" a hop's relaxation is
      capped by `hop_cap`, relax_steps // 5 to start with: L-BFGS needs ~5x fewer
      iterations than FIRE, and under vmap every hop lasts as long as its slowest chain).
    - "anneal": annealed MALA, described below.
    - "auto" (default): "anneal" when the call asks for it (a `schedule`,
      `record_every`, or `relax=False`), otherwise "parallel_tempering".
    Whatever the method, every chain's best state gets a final relaxation (annealing: FIRE,
    or optax L-BFGS with relax="lbfgs"; basin hopping: its `local` minimiser's L-BFGS unless
    relax="lbfgs" asks for optax's, FIRE with local="fire"); with precision="float64" that
    relaxation and the reported energies and positions are float64 (`jax.enable_x64` scoped
    to it, not available under an outer jit / vmap), so energies resolved only beyond
    float32 (about 1e-7 relative) can be compared with literature values.

    Annealing: step i (i = 0..num_steps-1) of chain c, at temperature T_i = schedule(i, num_steps):
    x' = P(x - eta_c grad E_c(x) + sqrt(2 eta_c T_i) xi), accepted with the MALA
    probability min(1, exp(-(E_c(x') - E_c(x))/T_i) q(x|x')/q(x'|x)) (the library's MALA
    kernel, `samplers.build_mala_kernel`); then log eta_c += adapt_rate (alpha -
    target_acceptance). E_c = E + constraint penalties; P composes `project` with the
    constraints' exact projections (with a projection the chain is a projected Langevin
    chain: good for optimisation, not exact sampling).

    Before annealing, `prerelax_steps` FIRE steps take the starting states out of any
    steric clash (a random start can sit at E ~ 1e10, which says nothing about the
    energy scale); annealing starts from there. The default schedule is geometric from
    T_0 = `default_start_temperature` (judged from those initial energies) down to
    T_0 * t_end_ratio (default T_0 / 100: the relaxation finishes the descent). Each
    chain's initial step size is 0.5 / lambda_max, the largest Hessian eigenvalue at its
    start (power iteration on finite-difference Hessian-vector products).

    Compile once, run many: the pipeline is compiled per (energy, constraints' structure,
    projection, sizes); keys, starts, schedules' values, step sizes, targets and the
    array leaves of an `eqx.Module` energy or of the constraints are data. The call runs
    under `jax.jit` and `jax.vmap` (over keys, schedules, energy parameters). Gradients
    with respect to the energy's parameters are exact and finite: `energy` and
    `best_energy` by the envelope theorem (dE*/dθ = ∂E/∂θ at x*), `position` and
    `best_position` by the implicit function theorem when the final relaxation runs
    without a projection (otherwise they carry no gradient); the stochastic search is
    never differentiated.

    Example (LJ13 from random starts; see tests/thermo/test_equilibrium.py):
        >>> res = idf.sample_equilibrium(lj, key, x0, num_steps=2000, target=-44.326801)
        >>> res.best_energy, res.num_reached

    Args:
        energy_fn: E(x) -> scalar for one state (a function or an `eqx.Module`).
        key: PRNG key.
        x0_batch: PyTree of float arrays with a leading chain axis.
        num_steps: annealing steps per chain (>= 1).
        schedule: an `idf.schedules` schedule, a constant temperature, or a callable
            step -> T (all T must be > 0).
        constraints: `idf_jax.thermo.constraints` objects (or a dict spec, see
            `constraints.parse`); penalties join the energy, projections are applied
            after every step and during relaxation.
        relax: True / 'auto' / 'fire' (FIRE: cheap to compile, takes projections),
            'lbfgs' (optax L-BFGS with zoom line search: tighter, but slow to compile
            on CPU), or False.
        project: exact map onto the feasible set (e.g. a capsule's `project`).
        step_size: initial Langevin step eta (x^2 / E units); default 0.5 / lambda_max
            per chain.
        target_acceptance: acceptance the per-chain step sizes are steered to.
        adapt_rate: kappa in log eta += kappa (alpha - target); default 0.05 for
            annealing (per step), 0.2 for basin hopping (per hop).
        target: known best energy; `reached` counts chains within `target_tol` of it.
        relax_steps: iterations of the relaxation.
        hop_cap: iterations of one hop's L-BFGS relaxation (local="lbfgs"): "adapt"
            (the default: the async loop starts at relax_steps // 5 and doubles the
            cap, up to relax_steps, whenever more than half of the last `chains` hop
            relaxations ended at it unconverged, `thermo.hop_async`; the sync loop keeps
            relax_steps // 5), "fixed" (relax_steps // 5, the rule before 2026-12-04), or
            an int (that fixed cap, >= 1).
        restart_every: parallel tempering with the async loop: every this many hops
            (mean per chain) the worst quarter of the tempering groups, by the lowest
            energy each has found, restart from the minima of as many of the best
            groups (`thermo.hop_async.restart_indices`). None (default): never.
        prerelax_steps: FIRE steps before annealing (0: none).
        record_every: record the energy of every chain every this many steps (anneal).
        t_end_ratio: final / initial temperature of the default schedule.
        method: "auto", "anneal", "basin_hopping", "parallel_tempering" or "population".
        moves: basin-hopping moves `(key, x, scale) -> x'` for one state (a capsule's
            `moves`), one or a sequence (one drawn uniformly per hop); default a
            Gaussian kick of every coordinate. A move returning another shape raises
            `ArgumentError`.
        precision: None / "float32" (the search's dtype) or "float64" (final
            relaxation and reported energies in float64).
        temperature: basin-hopping Metropolis temperature: a scalar
            ("basin_hopping"), `replicas` temperatures ("parallel_tempering"), or
            (hot, cold) ("population"); default from the spread of the first minima.
        replicas: replicas per tempering group (chains are grouped; the largest
            divisor of the chain count not above `replicas` is used).
        resample_every: hops between resamplings ("population").
        relax_gtol: gradient norm at which a basin-hopping relaxation stops.
        local: the basin-hopping local minimiser: "lbfgs" (`thermo.local_min`: L-BFGS
            with one energy evaluation per iteration and a backtracking Armijo search
            spread over iterations; the default, 2-5x fewer evaluations per minimum
            than FIRE on LJ clusters and AB chains) or "fire" (`relax.fire_until_one`).
        hop_loop: the basin-hopping loop: "sync" (every chain hops at once: perturb,
            relax, judge), "async" (`thermo.hop_async`: one L-BFGS iteration of every
            chain per loop iteration, a chain whose relaxation ends is judged and starts
            its next hop without waiting for the others; local="lbfgs" only) or "auto"
            (the default: "async" with local="lbfgs", "sync" with FIRE; measured on
            LJ26, LJ31 and AB-13, experiments/results/global_search.md).
        exchange_every: loop iterations between parallel-tempering exchanges
            (hop_loop="async"; the sync loop exchanges after every hop).
        chunk_hops: hops per compiled call on the host (progress, checkpoints, timing).
        stop_at_target: stop once a chain has reached `target` (basin hopping): the
            loop ends in the hop that reached it.
        checkpoint: file to save the search to after every chunk and resume from
            (a search run in batches, `active_chains`, saves batch b to
            `<checkpoint>.batch<b>`).
        progress: show a progress bar (basin hopping).
        active_chains: basin hopping: how many chains are searched at a time. When the
            chains given exceed it, the search runs on consecutive batches of that many
            chains (batch b with key fold_in(key, b), each chain with its full budget
            `num_steps`; with `stop_at_target` on the host, no batch after the one that
            reached the target runs, and the chains it never reached report their start,
            0 hops). The first-hit accounting counts every evaluation and minimisation
            of the earlier batches; `first_hit_hop` is the hop within the batch that hit.
            None (default): a fixed rule from the per-chain cost
            (`basin_hopping.active_chain_rule`: operations of one energy-and-gradient
            evaluation counted from its jaxpr; on CPU, batches of 128 chains for LJ26,
            LJ31 and AB-13, all chains on an accelerator). An int overrides it (>= 1).
        preset: a preset name or file (above).

    Returns:
        An `EquilibriumResult`.
    """
    if preset is not None:
        from .._presets import merge_preset

        return sample_equilibrium(
            energy_fn, key, x0_batch, **merge_preset(sample_equilibrium, preset, locals())
        )
    num_steps = check_positive_int("num_steps", num_steps)
    relax_steps = check_positive_int("relax_steps", relax_steps)
    if adapt_rate is not None:
        check_positive("adapt_rate", adapt_rate)
    check_positive("t_end_ratio", t_end_ratio)
    if not is_traced(target_acceptance) and not 0.0 < float(target_acceptance) < 1.0:
        raise ArgumentError(
            "target_acceptance", f"target_acceptance must be in (0, 1), got {target_acceptance!r}"
        )
    if step_size is not None:
        check_positive("step_size", step_size)
    if record_every is not None:
        record_every = check_positive_int("record_every", record_every)
        if record_every > num_steps:
            raise ArgumentError(
                "record_every", f"record_every ({record_every}) must be <= num_steps ({num_steps})"
            )
    if project is not None and not callable(project):
        raise ArgumentError(
            "project", f"project must be a callable x -> x, got {type(project).__name__}"
        )
    if not callable(energy_fn):
        raise ArgumentError("energy_fn", "energy_fn must be callable x -> scalar energy")
    _relax.resolve_method(relax, has_projection=False)
    n = _num_chains(x0_batch)
    key = as_key(key)
    prerelax_steps = nonnegative_int("prerelax_steps", prerelax_steps)

    cs = _constraints.parse(constraints)
    example = jax.tree.map(lambda l: l[0], x0_batch)
    _constraints.validate(cs, example, energy_fn)
    has_proj = project is not None or _constraints.has_projection(cs)
    relax_method = _relax.resolve_method(relax, has_projection=has_proj)
    x0 = jax.tree.map(lambda l: jnp.asarray(l, jnp.result_type(l)), x0_batch)
    kind = _resolve_method(method, schedule, record_every, relax)
    if local not in LOCAL_METHODS:
        raise ArgumentError("local", f"local must be one of {LOCAL_METHODS}, got {local!r}")
    if precision not in _PRECISIONS:
        raise ArgumentError(
            "precision", f"precision must be None, 'float32' or 'float64', got {precision!r}"
        )
    energy = differentiable(energy_fn, example)
    traced = is_traced((key, x0, energy, cs, target, temperature))
    if precision == "float64" and traced:
        raise ArgumentError(
            "precision",
            "precision='float64' switches on float64 for the final relaxation and cannot "
            "run under an outer jit / vmap; call it outside, or enable jax_enable_x64",
        )
    t_call = time.perf_counter()
    if kind != "anneal":
        return _search(
            energy,
            cs,
            project,
            key,
            x0,
            example,
            kind=kind,
            has_proj=has_proj,
            relax_method=relax_method or "fire",
            num_steps=num_steps,
            moves=moves,
            precision=precision,
            temperature=temperature,
            replicas=replicas,
            resample_every=resample_every,
            relax_gtol=relax_gtol,
            local=local,
            hop_loop=hop_loop,
            exchange_every=exchange_every,
            relax_steps=relax_steps,
            hop_cap=hop_cap,
            restart_every=restart_every,
            target=target,
            target_tol=target_tol,
            target_acceptance=target_acceptance,
            adapt_rate=0.2 if adapt_rate is None else adapt_rate,
            chunk_hops=chunk_hops,
            stop_at_target=stop_at_target,
            checkpoint=checkpoint,
            progress=progress,
            active_chains=active_chains,
            traced=traced,
            t_call=t_call,
        )
    if moves is not None:
        raise ArgumentError(
            "moves", "moves are basin-hopping proposals; method='anneal' takes none"
        )

    # Temperatures: a user schedule is evaluated here (and checked when concrete); the
    # default one is T_0 * rel[i] with T_0 judged in the pipeline from the initial energies.
    if schedule is None:
        ratio = jnp.asarray(t_end_ratio, jnp.float32)
        frac = jnp.arange(num_steps, dtype=jnp.float32) / max(num_steps - 1, 1)
        temps_in, default_t = ratio**frac, True
    else:
        sched = as_schedule(schedule)
        temps_in = jax.vmap(lambda i: sched(i, num_steps))(jnp.arange(num_steps))
        temps_in = jnp.asarray(temps_in, jnp.float32)
        if temps_in.shape != (num_steps,):
            raise ArgumentError(
                "schedule",
                f"the schedule must give one temperature per step, got {temps_in.shape}",
            )
        if not is_traced(temps_in):
            t = np.asarray(temps_in)
            if not np.all(np.isfinite(t)) or np.any(t <= 0):
                raise ArgumentError(
                    "schedule", "the schedule must give a finite temperature > 0 at every step"
                )
        default_t = False
    eta_in = jnp.broadcast_to(
        jnp.asarray(step_size if step_size is not None else -1.0, jnp.float32), (n,)
    )
    out = _pipeline_jit(
        detach(energy),
        detach(cs),
        project,
        key,
        jax.lax.stop_gradient(x0),
        jax.lax.stop_gradient(temps_in),
        eta_in,
        jnp.asarray(target_acceptance, jnp.float32),
        jnp.asarray(0.05 if adapt_rate is None else adapt_rate, jnp.float32),
        num_steps=num_steps,
        record_every=record_every,
        prerelax_steps=prerelax_steps,
        relax_method=relax_method,
        relax_steps=relax_steps,
        default_t=default_t,
    )
    ok, carry, trace_e, best_x, best_e, temps = out
    if not is_traced(ok) and not bool(ok):
        raise ArgumentError("x0_batch", "every initial state has a non-finite energy or gradient")

    target_arr = jnp.asarray(jnp.nan if target is None else target, jnp.float32)
    implicit = bool(relax_method)
    if precision == "float64":
        best_x, raw, viol, b, reached = _readout64(
            energy,
            cs,
            project,
            best_x,
            best_e,
            relax_method or "fire",
            relax_steps,
            target,
            target_tol,
            implicit=implicit,
        )
    else:
        best_x, raw, viol, b, reached = _readout_jit(
            energy,
            cs,
            project,
            best_x,
            best_e,
            target_arr,
            jnp.asarray(target_tol, jnp.float32),
            implicit=implicit,
        )
    if record_every is not None:
        n_rec = num_steps // record_every
        rec_t = temps[record_every - 1 : n_rec * record_every : record_every]
    else:
        rec_t = jnp.zeros((0,), jnp.float32)
    return EquilibriumResult(
        position=best_x,
        energy=raw,
        violation=viol,
        best_position=jax.tree.map(lambda l: l[b], best_x),
        best_energy=raw[b],
        best_chain=b,
        reached=reached,
        num_reached=jnp.sum(reached),
        final_position=carry.x,
        energy_trace=trace_e,
        temperatures=rec_t,
        acceptance_rate=carry.acc_sum / num_steps,
        step_size=jnp.exp(carry.log_eta),
        **_anneal_accounting(
            reached,
            n,
            num_steps,
            prerelax_steps,
            relax_steps if relax_method else 0,
            temps[-1],
            traced,
            t_call,
        ),
    )


@eqx.filter_jit
def _readout_jit(energy, cs, project, best_x, best_e, target, target_tol, *, implicit):
    """Differentiable read-out of the search: the envelope theorem for energies, the
    implicit function theorem for positions where a final relaxation ran (on the
    penalised energy, with the constrained stationarity condition under a projection;
    otherwise positions carry no gradient); the best feasible chain."""
    if implicit:
        penalised, proj = _constraints.penalised_and_projection(energy, cs, project)
        example = jax.tree.map(lambda l: l[0], best_x)
        minimised = differentiable(penalised, example)
        best_x = jax.vmap(
            lambda e, p, x: implicit_minimiser(e, x, project=p), in_axes=(None, None, 0)
        )(minimised, None if proj is None else differentiable(proj, example), best_x)
    else:
        best_x = jax.lax.stop_gradient(best_x)
    fixed = jax.lax.stop_gradient(best_x)
    raw = jax.vmap(energy)(fixed)
    viol = jax.vmap(lambda x, e: _constraints.total_violation(cs, x, e))(
        fixed, jax.lax.stop_gradient(raw)
    )
    feasible = viol <= 1e-6
    rank = jnp.where(feasible, raw, jnp.inf)
    rank = jnp.where(jnp.any(feasible), rank, best_e)
    rank = jax.lax.stop_gradient(jnp.where(jnp.isnan(rank), jnp.inf, rank))
    b = jnp.argmin(rank)
    # no target (NaN): nothing is reached
    reached = feasible & (raw <= target + target_tol)
    return best_x, raw, viol, b, reached


@eqx.filter_jit
def _pipeline_jit(
    energy_fn,
    cs,
    project,
    key,
    x0,
    temps_in,
    eta_in,
    target_acc,
    kappa,
    *,
    num_steps,
    record_every,
    prerelax_steps,
    relax_method,
    relax_steps,
    default_t,
):
    """One compiled function: clash removal, T_0 and step sizes, annealing, relaxation.

    Compiled once per (energy, constraint structure, projection, shapes, sizes): the
    penalised energy and the composed projection are built here, at trace time, so no
    fresh closure reaches the compile cache.
    """
    penalised = _constraints.apply_constraints(energy_fn, cs)
    proj_c = _constraints.project_all(cs) if _constraints.has_projection(cs) else None
    if project is not None and proj_c is not None:
        proj = lambda x: project(proj_c(x))  # noqa: E731
    else:
        proj = project if project is not None else proj_c
    n = eta_in.shape[0]
    eg = jax.vmap(lambda x: energy_and_grad(penalised, x))
    curv = jax.vmap(_relax.curvature_one(penalised))

    if proj is not None:
        x0 = jax.vmap(proj)(x0)
    e0, g_start = eg(x0)
    ok = jnp.any(jnp.isfinite(e0) & jax.vmap(_tree.all_finite)(g_start))
    if prerelax_steps:
        # First MD move dt^2 |F| = 1% of the RMS state scale (FIRE then adapts dt).
        dt = jnp.sqrt(0.01 * _rms(x0) / jnp.maximum(_gnorm(g_start), 1e-30))
        dt = jnp.where(jnp.isfinite(dt) & (dt > 0), dt, 1e-6)
        pre = jax.vmap(_relax.fire_one(penalised, proj, prerelax_steps, 1e-5, 1e3))
        x0, _ = pre(x0, dt)
    e0, g0 = eg(x0)
    if default_t:
        dim = sum(int(np.prod(l.shape[1:])) for l in jax.tree.leaves(x0))
        temps = _start_temperature(e0, dim) * temps_in
    else:
        temps = temps_in
    eta0 = jnp.where(eta_in > 0, eta_in, _step_from_curvature(curv(x0), 1e-2))
    run = _make_run(penalised, energy_fn, proj, n, num_steps, target_acc, kappa, record_every)
    carry, trace_e = run(key, x0, e0, g0, temps, eta0)
    best_x, best_e = carry.best_x, carry.best_e
    if relax_method:
        if relax_method == "fire":
            fire = jax.vmap(_relax.fire_one(penalised, proj, relax_steps, 1e-5, 10.0))
            rx, re = fire(best_x, jnp.sqrt(2.0 * jnp.exp(carry.log_eta)))
        else:
            rx, re = _relax.lbfgs_one_batch(penalised, proj, relax_steps)(best_x)
        better = re < best_e
        best_x = _tree.select_rows(better, rx, best_x)
        best_e = jnp.where(better, re, best_e)
    return ok, carry, trace_e, best_x, best_e, temps


def _rms(x_batch):
    leaves = jax.tree.leaves(x_batch)
    tot = sum(jnp.sum(l.reshape(l.shape[0], -1) ** 2, axis=1) for l in leaves)
    size = sum(int(np.prod(l.shape[1:])) for l in leaves)
    r = jnp.sqrt(tot / max(size, 1))
    return jnp.where(r > 0, r, 1.0)


def _gnorm(g_batch):
    leaves = jax.tree.leaves(g_batch)
    return jnp.sqrt(sum(jnp.sum(l.reshape(l.shape[0], -1) ** 2, axis=1) for l in leaves))


def _start_temperature(e, dim: int):
    """In-graph version of `default_start_temperature`."""
    fin = jnp.isfinite(e)
    med = jnp.nanmedian(jnp.where(fin, e, jnp.nan))
    q25, q75 = jnp.nanpercentile(jnp.where(fin, e, jnp.nan), jnp.array([25.0, 75.0]))
    t0 = 2.0 * (q75 - q25) / 1.349 / max(dim, 1)
    t0 = jnp.where(t0 > 0, t0, jnp.abs(med) / max(dim, 1))
    return jnp.where(t0 > 0, t0, 1.0)


def _make_run(penalised, energy_fn, proj, n, num_steps, target_acc, kappa, record_every):
    """The annealing scan over all chains: the MALA kernel with per-chain step sizes."""
    kernel = build_mala_kernel(penalised, proj)

    def chain_step(key, c: _Carry, temp):
        # One MALA step of one chain at temperature `temp` with its own step size.
        state, info = kernel(key, LangevinState(c.x, c.e, c.g), jnp.exp(c.log_eta), temp)
        alpha = info.acceptance_rate
        log_eta = jnp.clip(
            c.log_eta + kappa * (alpha - target_acc), c.log_eta - 1.0, c.log_eta + 1.0
        )
        log_eta = jnp.clip(log_eta, -60.0, 20.0)
        improved = state.energy < c.best_e
        best_x = _tree.select(improved, state.position, c.best_x)
        best_e = jnp.where(improved, state.energy, c.best_e)
        return _Carry(
            state.position, state.energy, state.grad, log_eta, best_x, best_e, c.acc_sum + alpha
        )

    vstep = jax.vmap(chain_step, in_axes=(0, 0, None))

    def run(key, x0, e0, g0, temps, eta0):
        chain_keys = jax.random.split(key, n)
        e0 = jnp.where(jnp.isnan(e0), jnp.inf, e0)
        # Scalars follow the energy's float type (float32, or float64 under jax_enable_x64).
        fdt = e0.dtype
        temps = temps.astype(fdt)
        carry = _Carry(x0, e0, g0, jnp.log(eta0.astype(fdt)), x0, e0, jnp.zeros((n,), fdt))

        def body(c, i):
            ks = jax.vmap(jax.random.fold_in, (0, None))(chain_keys, i)
            return vstep(ks, c, temps[i]), None

        if record_every is None:
            carry, _ = jax.lax.scan(body, carry, jnp.arange(num_steps))
            return carry, jnp.zeros((n, 0), jnp.float32)

        n_rec = num_steps // record_every

        def outer(c, j):
            c, _ = jax.lax.scan(body, c, j * record_every + jnp.arange(record_every))
            return c, jax.vmap(energy_fn)(c.x)

        carry, rec = jax.lax.scan(outer, carry, jnp.arange(n_rec))
        rest = num_steps - n_rec * record_every
        if rest:
            carry, _ = jax.lax.scan(body, carry, n_rec * record_every + jnp.arange(rest))
        return carry, rec.T

    return run


def _resolve_method(method, schedule, record_every, relax) -> str:
    """`method` checked; "auto" is annealing when the call asks for annealing, else
    parallel-tempering basin hopping."""
    if not isinstance(method, str) or method not in METHODS:
        raise ArgumentError("method", f"method must be one of {METHODS}, got {method!r}")
    if method == "auto":
        asks_anneal = schedule is not None or record_every is not None or relax is False
        return "anneal" if asks_anneal else "parallel_tempering"
    if method != "anneal":
        if record_every is not None:
            raise ArgumentError(
                "record_every", f"record_every records annealing traces; method={method!r} has none"
            )
        if schedule is not None:
            raise ArgumentError(
                "schedule",
                f"schedule is an annealing schedule; method={method!r} takes `temperature`",
            )
        if relax is False or relax is None:
            raise ArgumentError(
                "relax", f"method={method!r} relaxes every hop; relax cannot be False"
            )
    return method


def _hop_loop(hop_loop, local: str) -> str:
    """The basin-hopping loop: "sync" (a whole hop per loop iteration) or "async"
    (`thermo.hop_async`, one L-BFGS iteration per loop iteration, L-BFGS only); "auto"
    is "async" with L-BFGS and "sync" with FIRE. Measured (128 chains, 2-core CPU,
    experiments/results/global_search.md): the same CPU time per local minimum on LJ26
    and AB-13, LJ26 10/10 either way, AB-13 9/10 async against 5/10 sync at 60 000
    evaluations per chain, with ~half the minimisations to the first hit."""
    if hop_loop == "auto":
        return "async" if local == "lbfgs" else "sync"
    if hop_loop not in _bh.HOP_LOOPS:
        raise ArgumentError(
            "hop_loop", f"hop_loop must be 'auto', 'async' or 'sync', got {hop_loop!r}"
        )
    if hop_loop == "async" and local != "lbfgs":
        raise ArgumentError(
            "hop_loop", f"hop_loop='async' runs L-BFGS iterations; local={local!r} needs 'sync'"
        )
    return hop_loop


def _hop_caps(hop_cap, relax_steps: int) -> tuple[int, int]:
    """(first, largest) hop cap of `sample_equilibrium`'s `hop_cap` argument."""
    base = max(relax_steps // 5, 1)
    if isinstance(hop_cap, str):
        if hop_cap == "fixed":
            return base, base
        if hop_cap == "adapt":
            return base, max(relax_steps, base)
        raise ArgumentError(
            "hop_cap", f"hop_cap must be 'fixed', 'adapt' or an int >= 1, got {hop_cap!r}"
        )
    cap = check_positive_int("hop_cap", hop_cap)
    return cap, cap


def _rungs(n: int, replicas: int) -> int:
    """The largest divisor of the chain count that is <= `replicas`."""
    r = max(1, min(int(replicas), n))
    while n % r:
        r -= 1
    return r


def _anneal_accounting(reached, n, num_steps, prerelax, relax_steps, t_last, traced, t_call):
    """The search-accounting fields of an annealing result (one gradient per step)."""
    evals = float(n * (prerelax + 20 + num_steps + relax_steps))
    hit = jnp.any(reached)
    wall = float("nan") if traced else time.perf_counter() - t_call
    return dict(
        num_minimisations=jnp.int32(n if relax_steps else 0),
        num_evaluations=jnp.float32(evals),
        hops=jnp.zeros((n,), jnp.int32),
        first_hit_hop=jnp.where(hit, 1, -1).astype(jnp.int32),
        hit_minimisations=jnp.where(hit, float(n if relax_steps else 0), -1.0),
        hit_evaluations=jnp.where(hit, evals, -1.0),
        time_to_target=jnp.where(hit, wall, jnp.nan),
        fraction_reached=jnp.mean(reached.astype(jnp.float32)),
        wall_time=jnp.float32(wall),
        search_temperature=jnp.full((n,), t_last, jnp.float32),
    )


_NEAR_RTOL = 1e-5  # float32 energies this close (relative) to the best may swap order


def _near_best(e32, target, target_tol) -> np.ndarray:
    """Indices of the chains the float64 read-out polishes: those whose float32 energy
    lies within `_NEAR_RTOL` (relative, ~100 float32 ulps) of the best one (a polish can
    reorder only these), and those within that slack of `target` + `target_tol` (a polish
    decides whether they reached it); the best first. Padded with the best chain's index
    up to a power of two (so at most log2(chains) + 1 polish compilations)."""
    e = np.asarray(e32, np.float64)
    e = np.where(np.isnan(e), np.inf, e)
    order = np.argsort(e, kind="stable")
    best = e[order[0]]
    if not np.isfinite(best):  # nothing finite: polish everything
        return order
    near = e <= best + _NEAR_RTOL * (1.0 + abs(best))
    if target is not None:
        t = float(target) + float(target_tol)
        near |= e <= t + _NEAR_RTOL * (1.0 + abs(float(target)))
    idx = order[near[order]]
    size = 1 << int(np.ceil(np.log2(len(idx))))
    size = min(size, len(e))
    return np.concatenate([idx, np.full(size - len(idx), order[0])]).astype(np.int32)


@eqx.filter_jit
def _energies_jit(energy_fn, cs, project, x):
    """Penalised energies of every chain in x's dtype (NaN -> inf)."""
    penalised, _ = _constraints.penalised_and_projection(energy_fn, cs, project)
    e = jax.vmap(penalised)(x)
    return jnp.where(jnp.isnan(e), jnp.inf, e)


def _readout64(
    energy,
    cs,
    project,
    best_x,
    best_e,
    relax_method,
    relax_steps,
    target,
    target_tol,
    *,
    implicit,
):
    """Final relaxation and read-out in float64 (`jax.enable_x64` scoped to it).

    Only the chains near the best float32 energy, or near the target, are polished
    (`_near_best`): a chain further above the best cannot become the best, and it keeps
    its searched state with its energy recomputed in float64. A polish of a searched
    minimum lowers its energy by far less than that margin, so the best energy and
    state are those a polish of every chain would give."""
    idx = _near_best(best_e, target, target_tol)
    with jax.enable_x64(True):
        x64 = jax.tree.map(lambda l: jnp.asarray(l, jnp.float64), best_x)
        one = jnp.ones((), jnp.float64)
        steps = 4 * relax_steps if relax_method == "fire" else relax_steps
        length = _bh._length_scale(x64)
        sub = _tree.take(x64, jnp.asarray(idx))
        lam = jax.vmap(_relax.curvature_one(_constraints.apply_constraints(energy, cs)))(sub)
        lam = float(np.nanmedian(np.where(np.isfinite(lam) & (lam > 0), lam, np.nan)))
        lam = lam if np.isfinite(lam) and lam > 0 else 1.0
        dt0 = one * 0.1 / np.sqrt(lam)
        px, pe = _bh.polish_jit(
            detach(energy),
            detach(cs),
            project,
            sub,
            dt0,
            10.0 * dt0,
            0.1 * length,
            one * 1e-10,
            method=relax_method,
            steps=steps,
        )
        at = jnp.asarray(idx)
        rx = jax.tree.map(lambda a, p: a.at[at].set(p), x64, px)
        re = _energies_jit(detach(energy), detach(cs), project, x64).at[at].set(pe)
        t = jnp.asarray(jnp.nan if target is None else target, jnp.float64)
        bx, raw, viol, b, reached = _readout_jit(
            energy, cs, project, rx, re, t, jnp.asarray(target_tol, jnp.float64), implicit=implicit
        )
        b = jnp.asarray(b, jnp.int32)  # the index must not stay int64 outside x64
    return bx, raw, viol, b, reached


def _search(
    energy,
    cs,
    project,
    key,
    x0,
    example,
    *,
    kind,
    has_proj,
    relax_method,
    num_steps,
    moves,
    precision,
    temperature,
    replicas,
    resample_every,
    relax_gtol,
    local,
    hop_loop,
    exchange_every,
    relax_steps,
    hop_cap,
    restart_every,
    target,
    target_tol,
    target_acceptance,
    adapt_rate,
    chunk_hops,
    stop_at_target,
    checkpoint,
    progress,
    active_chains,
    traced,
    t_call,
) -> EquilibriumResult:
    """Basin hopping, tempering or population search, then the common read-out."""
    n = _num_chains(x0)
    move_set = check_moves(moves, example)
    replicas = check_positive_int("replicas", replicas)
    resample_every = check_positive_int("resample_every", resample_every)
    chunk_hops = check_positive_int("chunk_hops", chunk_hops)
    exchange_every = check_positive_int("exchange_every", exchange_every)
    check_positive("relax_gtol", relax_gtol)
    loop = _hop_loop(hop_loop, local)
    cap0, cap_max = _hop_caps(hop_cap, relax_steps)
    if restart_every is not None:
        restart_every = check_positive_int("restart_every", restart_every)
        if kind != "parallel_tempering" or loop != "async":
            raise ArgumentError(
                "restart_every",
                "restart_every restarts tempering groups: method='parallel_tempering' "
                f"(or 'auto') with the async hop loop, got method={kind!r}, loop={loop!r}",
            )
    if (
        checkpoint is not None
        and not isinstance(checkpoint, (str, bytes))
        and not hasattr(checkpoint, "__fspath__")
    ):
        raise ArgumentError("checkpoint", f"checkpoint must be a file path, got {checkpoint!r}")
    a = _active_chains(
        active_chains,
        n,
        lambda: _bh.chain_cost(detach(energy), detach(cs), project, example, traced=traced),
    )
    size = _batch_size(n, a)
    rungs = _rungs(size, replicas) if kind == "parallel_tempering" else 1
    want = {"basin_hopping": (), "parallel_tempering": (rungs,), "population": (2,)}[kind]
    if temperature is not None:
        t = jnp.asarray(temperature)
        if kind == "basin_hopping" and t.shape == ():
            t = t.reshape(1)
        elif kind == "parallel_tempering" and t.shape == ():
            t = jnp.broadcast_to(t, (rungs,))
        if t.shape != (want or (1,)):
            raise ArgumentError(
                "temperature",
                f"method={kind!r} takes a temperature of shape {want} (here {rungs} replicas), "
                f"got {jnp.shape(temperature)}",
            )
        check_positive("temperature", t)
    fdt = jnp.result_type(*jax.tree.leaves(x0))
    # NaN: read the temperature from the landscape (same shape either way: no retrace)
    temperature = jnp.full(want or (1,), jnp.nan, fdt) if temperature is None else t.astype(fdt)
    consts = {
        "target": jnp.asarray(jnp.nan if target is None else target, fdt),
        "target_tol": jnp.asarray(target_tol, fdt),
        "target_acc": jnp.asarray(target_acceptance, fdt),
        "adapt_rate": jnp.asarray(adapt_rate, fdt),
        "gtol": jnp.asarray(relax_gtol, fdt),
        "budget": jnp.int32(num_steps),
        "key": key,
        "exchange_every": jnp.int32(exchange_every),
        "hop_cap": jnp.int32(cap0),
        "hop_cap_max": jnp.int32(cap_max),
        "restart_every": jnp.int32(restart_every or 0),
    }
    batches = _batch_bounds(n, size)
    batched = len(batches) > 1
    runs = []  # (search output, seconds from the first batch's start)
    t_first = time.perf_counter()
    for b, (lo, hi) in enumerate(batches):
        # batch b: its own key, its own chains (each with the full per-chain budget)
        kb = jax.random.fold_in(key, b) if batched else key
        xb = jax.tree.map(lambda l: l[lo:hi], x0) if batched else x0
        t_b = time.perf_counter() - t_first
        out = _bh.run_search(
            detach(energy),
            detach(cs),
            project,
            move_set,
            kb,
            jax.lax.stop_gradient(xb),
            kind=kind,
            local=local,
            loop=loop,
            rungs=rungs,
            resample_every=resample_every,
            temperature=temperature,
            consts=dict(consts, key=kb),
            relax_steps=relax_steps,
            traced=traced,
            chunk_hops=chunk_hops,
            stop_at_target=stop_at_target,
            checkpoint=_batch_checkpoint(checkpoint, b, batched),
            progress=progress,
        )
        runs.append((out, t_b))
        # on the host a search stopping at the target ends with the batch that reached it
        concrete = not is_traced(out.carry.first_hop)
        if stop_at_target and concrete and int(out.carry.first_hop) >= 0:
            break
    oks = [out.ok for out, _ in runs]
    ok = oks[0] if len(oks) == 1 else jnp.any(jnp.stack(oks))
    if not is_traced(ok) and not bool(ok):
        raise ArgumentError("x0_batch", "every initial state has a non-finite energy or gradient")
    searched = batches[len(runs) - 1][1]  # chains [0, searched) were searched
    rest = jax.tree.map(lambda l: l[searched:], x0) if searched < n else None
    implicit = True
    # the final polish uses the search's own L-BFGS (far cheaper than 4 x relax_steps
    # FIRE steps) unless the call asked for optax's L-BFGS (relax="lbfgs"); FIRE needs
    # ~4x the iterations of a quasi-Newton method, L-BFGS does not
    polish = "local_lbfgs" if local == "lbfgs" and relax_method == "fire" else relax_method
    # chains a stopped search never reached keep their start (hops 0, no minimisation)
    e_rest = None if rest is None else _energies_jit(detach(energy), detach(cs), project, rest)
    best_x = _cat([out.carry.best_x for out, _ in runs], rest)
    best_e = _cat([out.carry.best_e for out, _ in runs], e_rest)
    if precision == "float64":
        best_x, raw, viol, b, reached = _readout64(
            energy,
            cs,
            project,
            best_x,
            best_e,
            polish,
            relax_steps,
            target,
            target_tol,
            implicit=implicit,
        )
    else:
        gtol = jnp.asarray(1e-10 if fdt == jnp.float64 else 1e-5, fdt)
        steps = 4 * relax_steps if polish == "fire" else relax_steps
        polished = [
            _bh.polish_jit(
                detach(energy),
                detach(cs),
                project,
                out.carry.best_x,
                out.params.dt0,
                out.params.dt_max,
                out.params.max_step,
                gtol,
                method=polish,
                steps=steps,
            )
            for out, _ in runs
        ]
        px = _cat([q[0] for q in polished], rest)
        pe = _cat([q[1] for q in polished], e_rest)
        best_x, raw, viol, b, reached = _readout_jit(
            energy, cs, project, px, pe, consts["target"], consts["target_tol"], implicit=implicit
        )
    carries = [out.carry for out, _ in runs]
    n_rest = n - searched

    def per_chain(field, fill, dtype):
        pad = None if rest is None else jnp.full((n_rest,), fill, dtype)
        return _cat([getattr(c, field).astype(dtype) for c in carries], pad)

    temps = _cat(
        [_bh.chain_temperatures(out.carry, out.params, kind, rungs) for out, _ in runs],
        None if rest is None else jnp.full((n_rest,), jnp.nan, fdt),
    )
    hops_c = per_chain("hops", 0, jnp.int32)
    n_min = per_chain("n_min", 0, jnp.int32)
    n_eval = per_chain("n_eval", 0, jnp.int32)
    acc = _first_hit(runs)
    return EquilibriumResult(
        position=best_x,
        energy=raw,
        violation=viol,
        best_position=jax.tree.map(lambda l: l[b], best_x),
        best_energy=raw[b],
        best_chain=b,
        reached=reached,
        num_reached=jnp.sum(reached),
        final_position=_cat([c.x for c in carries], rest),
        energy_trace=jnp.zeros((n, 0), jnp.float32),
        temperatures=jnp.zeros((0,), jnp.float32),
        acceptance_rate=per_chain("accepted", 0.0, fdt) / jnp.maximum(hops_c, 1),
        step_size=jnp.exp(per_chain("log_scale", jnp.nan, fdt)),
        num_minimisations=jnp.sum(n_min) + searched,
        num_evaluations=jnp.sum(n_eval.astype(jnp.float32)),
        hops=hops_c,
        first_hit_hop=acc["first_hit_hop"],
        hit_minimisations=acc["hit_minimisations"],
        hit_evaluations=acc["hit_evaluations"],
        time_to_target=jnp.float32(acc["time_to_target"]),
        fraction_reached=jnp.mean(reached.astype(jnp.float32)),
        wall_time=jnp.float32(float("nan") if traced else time.perf_counter() - t_call),
        search_temperature=temps,
    )


def _cat(parts, rest=None):
    """Chain-axis concatenation of per-batch PyTrees (and of the unsearched `rest`)."""
    parts = list(parts) + ([] if rest is None else [rest])
    if len(parts) == 1:
        return parts[0]
    return jax.tree.map(lambda *l: jnp.concatenate(l), *parts)


def _first_hit(runs) -> dict[str, Any]:
    """First-hit accounting over consecutive batches: the first batch (in order) that
    reached the target; its own hit counts plus every evaluation and minimisation of
    all earlier batches; the time from the first batch's start."""
    carries = [out.carry for out, _ in runs]
    if len(carries) == 1:
        c, out = carries[0], runs[0][0]
        return dict(
            first_hit_hop=c.first_hop,
            hit_minimisations=c.hit_mins,
            hit_evaluations=c.hit_evals,
            time_to_target=out.time_to_target,
        )
    first = jnp.stack([c.first_hop for c in carries])
    hit = first >= 0
    j = jnp.argmax(hit)
    any_hit = jnp.any(hit)
    tot_e = jnp.stack([jnp.sum(c.n_eval.astype(jnp.float32)) for c in carries])
    tot_m = jnp.stack([jnp.sum(c.n_min.astype(jnp.float32)) for c in carries])
    prior_e = jnp.cumsum(tot_e) - tot_e
    prior_m = jnp.cumsum(tot_m) - tot_m
    hit_e = jnp.stack([c.hit_evals for c in carries])
    hit_m = jnp.stack([c.hit_mins for c in carries])
    t_hit = float("nan")
    if not is_traced(any_hit) and bool(any_hit):
        out, t_b = runs[int(j)]
        t_hit = t_b + out.time_to_target
    return dict(
        first_hit_hop=jnp.where(any_hit, first[j], -1).astype(jnp.int32),
        hit_minimisations=jnp.where(any_hit, prior_m[j] + hit_m[j], -1.0),
        hit_evaluations=jnp.where(any_hit, prior_e[j] + hit_e[j], -1.0),
        time_to_target=t_hit,
    )


def _batch_bounds(n: int, size: int) -> list[tuple[int, int]]:
    """Consecutive (lo, hi) chain ranges of `size` chains (the last may be shorter)."""
    return [(lo, min(lo + size, n)) for lo in range(0, n, size)]


def _batch_size(n: int, a: int) -> int:
    """Chains per batch for at most `a` active chains: the largest divisor of n in
    [a / 2, a] (equal batches share one compiled search), else `a` (a shorter last
    batch compiles once more)."""
    if a >= n:
        return n
    for k in range(a, max(a // 2, 1) - 1, -1):
        if n % k == 0:
            return k
    return a


def _batch_checkpoint(checkpoint, b: int, batched: bool):
    """Batch b's checkpoint file: the given path, or `<path>.batch<b>` when batched."""
    if checkpoint is None:
        return None
    return f"{checkpoint}.batch{b}" if batched else str(checkpoint)


def _active_chains(active_chains, n: int, cost_fn) -> int:
    """Chains run at a time: `active_chains` (an int >= 1; at most n) or the rule
    (`basin_hopping.active_chain_rule` on the per-chain cost)."""
    if active_chains is None:
        if n <= _bh.ACTIVE_MIN:
            return n
        return _bh.active_chain_rule(cost_fn(), n)
    if isinstance(active_chains, bool) or not isinstance(active_chains, (int, np.integer)):
        raise ArgumentError(
            "active_chains", f"active_chains must be None or an int >= 1, got {active_chains!r}"
        )
    if active_chains < 1:
        raise ArgumentError(
            "active_chains", f"active_chains must be None or an int >= 1, got {active_chains!r}"
        )
    return int(min(active_chains, n))
