"""The library tuning itself: `sample_equilibrium`'s configuration, samplers' settings.

`tune_equilibrium` evolves the keyword arguments of `idf.sample_equilibrium` on tasks
with known minima (`EquilibriumTask`: an energy, a start generator and the record
energy, e.g. LJ_13 at -44.326801). The fitness of a configuration is its measured cost
to reach the record, over several seeds of every task:

    fitness = log10(evaluations / max(successes, 0.5)) + (successes == 0) * min(gap, 1)

`evaluations` counts energy-and-gradient evaluations (chains x (prerelax_steps +
num_steps + relax_steps) per run, an upper bound that does not depend on the machine),
`successes` the chains that ended within `target_tol` of the record, and `gap` the mean
relative distance of the runs' best energies from the record (so a configuration that
never succeeds still has a direction to improve in). `metric="energy"` scores the mean
relative gap at the configuration's budget instead. `metric="ert"` scores the expected
running time to the record, the standard measure of benchmarking studies (COCO / BBOB):

    fitness = log10(ERT),  ERT = (sum over runs of the evaluations each spent until it
              first reached the record, or all it spent when it did not)
              / max(runs that reached it, 0.5)

plus the same gap term when no run reached it. `metric="ert_mean"` scores several tasks
of different sizes evenly: the mean over tasks of each task's own log10(ERT) (its gap
term added where none of its runs reached the record), i.e. the log of the geometric
mean ERT, so the largest instance does not outweigh the others. A run is one seed of
one task (all its chains); the evaluations are the function's exact counts (`hit_evaluations`,
`num_evaluations` of its result), and the runs stop at the record (`stop_at_target=True`
where the function takes it), so a configuration that finds the record early is cheap.

The configuration space is built from what the installed `sample_equilibrium` accepts
(`inspect.signature`): every option of `EQUILIBRIUM_OPTIONS` that is one of its keyword
parameters joins the space, so a version with `method=` (basin hopping, parallel
tempering, population annealing) gets the method choice and its options, and an older
one does not. `tune_sampler` tunes a sampler's settings for effective samples per
gradient evaluation on a target.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import ArgumentError, as_key, positive_int
from .search import EvolveResult, minimize
from .space import Choice, Dimension, Int, Real

__all__ = [
    "EQUILIBRIUM_OPTIONS",
    "EQUILIBRIUM_METHODS",
    "METRICS",
    "EquilibriumTask",
    "equilibrium_fitness",
    "equilibrium_space",
    "ess_per_chain_jax",
    "sampler_space",
    "tune_equilibrium",
    "tune_sampler",
]

METRICS = ("evaluations", "energy", "ert", "ert_mean")
"""The fitness measures of `equilibrium_fitness` (module docstring)."""

EQUILIBRIUM_METHODS = ("anneal", "basin_hopping", "parallel_tempering", "population")
"""The `method=` values `sample_equilibrium` documents where it takes `method` ("auto"
is left out: it picks one of these)."""

EQUILIBRIUM_OPTIONS: dict[str, Dimension] = {
    "num_steps": Choice([250, 500, 1000, 2000]),
    "target_acceptance": Real(0.2, 0.9),
    "adapt_rate": Real(0.005, 0.5, log=True),
    "t_end_ratio": Real(1e-4, 0.5, log=True),
    "method": Choice(list(EQUILIBRIUM_METHODS)),
    "replicas": Choice([2, 4, 8]),
    "resample_every": Choice([5, 10, 20]),
    "relax_gtol": Real(1e-4, 1e-1, log=True),
}
"""What `tune_equilibrium` may tune, where the installed `sample_equilibrium` takes it.
Integer options that set the length of a compiled loop (`num_steps`, `replicas`, ...)
are choices over a few values, so a search compiles a bounded number of pipelines."""


def _accepted(fn: Callable) -> set[str]:
    return set(inspect.signature(fn).parameters)


def equilibrium_space(
    fn: Callable | None = None,
    *,
    include: Sequence[str] | None = None,
    overrides: Mapping[str, Dimension] | None = None,
) -> dict[str, Dimension]:
    """The configuration space for `fn` (default `idf.sample_equilibrium`).

    The options of `EQUILIBRIUM_OPTIONS` that `fn` accepts (all of them, or those named
    in `include`), with `overrides` replacing or adding dimensions.
    """
    if fn is None:
        from ..thermo.anneal import sample_equilibrium as fn
    accepted = _accepted(fn)
    names = list(EQUILIBRIUM_OPTIONS) if include is None else list(include)
    out: dict[str, Dimension] = {}
    for n in names:
        if n not in EQUILIBRIUM_OPTIONS and n not in (overrides or {}):
            raise ArgumentError(
                "include", f"{n!r} is not a tunable option ({list(EQUILIBRIUM_OPTIONS)})"
            )
        if n in accepted and n in EQUILIBRIUM_OPTIONS:
            out[n] = EQUILIBRIUM_OPTIONS[n]
    for n, d in (overrides or {}).items():
        if n not in accepted:
            raise ArgumentError("overrides", f"{getattr(fn, '__name__', 'fn')} has no option {n!r}")
        out[n] = d
    return out


class EquilibriumTask(NamedTuple):
    """A public instance with a known record: what a configuration is measured on.

    energy_fn, init(key, chains) -> x0_batch, target (the record energy), and the
    capsule's constraints / project; name for reports; chains per run; num_steps: this
    task's budget (evaluations per chain for basin hopping), overriding the
    configuration's `num_steps` (None: the configuration's), so tasks of different sizes
    can share one search. moves: the capsule's basin-hopping moves (`Capsule.moves`),
    passed to every basin-hopping run as the CLI passes them (`idf equilibrium`), and
    left out where the configuration anneals (annealing takes no moves).
    """

    name: str
    energy_fn: Callable
    init: Callable
    target: float
    constraints: Any = ()
    project: Callable | None = None
    chains: int = 16
    target_tol: float = 1e-3
    num_steps: int | None = None
    moves: Any = None


def equilibrium_fitness(
    config: Mapping[str, Any],
    tasks: Sequence[EquilibriumTask],
    seeds: Sequence[int],
    *,
    fn: Callable | None = None,
    metric: str = "evaluations",
    fixed: Mapping[str, Any] | None = None,
) -> tuple[float, dict[str, Any]]:
    """(fitness, details) of one configuration over every task and seed (host code).

    details: successes, runs (chains x seeds x tasks), evaluations, gap, seconds; with
    metric="ert" or "ert_mean" also `runs_reached` (seeds x tasks that reached the
    record), `seed_runs`, `ert` (pooled over tasks) and `tasks` (per task name: its
    runs_reached, seed_runs, ert, gap and fitness term).
    """
    if fn is None:
        from ..thermo.anneal import sample_equilibrium as fn
    if metric not in METRICS:
        raise ArgumentError("metric", f"metric must be one of {list(METRICS)}, got {metric!r}")
    kw = {**dict(fixed or {}), **dict(config)}
    ert_like = metric in ("ert", "ert_mean")
    accepted = _accepted(fn)
    if ert_like and "stop_at_target" in accepted:
        kw.setdefault("stop_at_target", True)
    hopping = _hopping(kw)
    pre = int(kw.get("prerelax_steps", 100))
    rel = int(kw.get("relax_steps", 500))
    successes, evals, runs, gaps = 0, 0, 0, []
    ert_spent, runs_reached, seed_runs = 0, 0, 0
    per_task: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    for task in tasks:
        steps = int(task.num_steps if task.num_steps is not None else kw.get("num_steps", 1000))
        kw["num_steps"] = steps
        t_spent, t_reached, t_gaps = 0, 0, []
        extra = {}
        if task.moves is not None and hopping:
            if "moves" not in accepted:
                raise ArgumentError(
                    "tasks", f"task {task.name!r} has moves; {getattr(fn, '__name__', 'fn')} "
                    "takes none",
                )  # fmt: skip
            extra["moves"] = task.moves
        for seed in seeds:
            k_init, k_run = jax.random.split(jax.random.key(int(seed)))
            x0 = task.init(k_init, task.chains)
            res = fn(
                task.energy_fn,
                k_run,
                x0,
                constraints=task.constraints or None,
                project=task.project,
                target=task.target,
                target_tol=task.target_tol,
                **{**extra, **kw},  # moves in `fixed` / the config win
            )
            successes += int(res.num_reached)
            bound = task.chains * (pre + steps + rel)
            evals += bound
            runs += task.chains
            seed_runs += 1
            if ert_like:
                spent = _count(getattr(res, "num_evaluations", None), bound)
                if int(res.num_reached) > 0:
                    t_reached += 1
                    spent = _count(getattr(res, "hit_evaluations", None), spent)
                t_spent += spent
            best = float(res.best_energy)
            gap = (best - task.target) / max(abs(task.target), 1.0)
            t_gaps.append(gap if math.isfinite(gap) else 1.0)
        gaps += t_gaps
        ert_spent += t_spent
        runs_reached += t_reached
        t_ert = t_spent / max(t_reached, 0.5)
        t_gap = float(np.mean(t_gaps))
        per_task[task.name] = {
            "runs_reached": t_reached,
            "seed_runs": len(seeds),
            "ert": t_ert,
            "gap": t_gap,
            "fitness": _log_ert(t_ert, t_gap, t_reached),
        }
    gap = float(np.mean(gaps))
    ert = ert_spent / max(runs_reached, 0.5)
    if metric == "energy":
        fitness = gap
    elif metric == "ert":
        fitness = _log_ert(ert, gap, runs_reached)
    elif metric == "ert_mean":
        fitness = float(np.mean([t["fitness"] for t in per_task.values()]))
    else:
        fitness = math.log10(evals / max(successes, 0.5)) + (
            min(max(gap, 0.0), 1.0) if successes == 0 else 0.0
        )
    details = {
        "successes": successes,
        "runs": runs,
        "evaluations": evals,
        "gap": gap,
        "seconds": time.perf_counter() - t0,
    }
    if ert_like:
        details.update(
            {
                "runs_reached": runs_reached,
                "seed_runs": seed_runs,
                "ert": ert,
                "spent": ert_spent,
                "tasks": per_task,
            }
        )
    return fitness, details


def _hopping(kw: Mapping[str, Any]) -> bool:
    """Whether `sample_equilibrium` called with `kw` runs basin hopping (takes moves):
    the method it resolves to (`thermo.anneal._resolve_method`) is not "anneal"."""
    from ..thermo.anneal import _resolve_method

    method = _resolve_method(
        kw.get("method", "auto"), kw.get("schedule"), kw.get("record_every"), kw.get("relax", True)
    )
    return method != "anneal"


def _log_ert(ert: float, gap: float, reached: int) -> float:
    """log10(ERT), plus the gap term (clipped to [0, 1]) when no run reached the record."""
    return math.log10(max(ert, 1.0)) + (min(max(gap, 0.0), 1.0) if reached == 0 else 0.0)


def _count(value: Any, fallback: int) -> int:
    """An exact evaluation count from a result field, or `fallback` where there is none
    (a function without the field, or -1: never reached)."""
    if value is None:
        return int(fallback)
    v = int(np.asarray(value))
    return v if v >= 0 else int(fallback)


def tune_equilibrium(
    tasks: Sequence[EquilibriumTask],
    key: PRNGKeyArray,
    *,
    seeds: Sequence[int] = (0, 1),
    space: Mapping[str, Dimension] | None = None,
    fixed: Mapping[str, Any] | None = None,
    metric: str = "evaluations",
    strategy: str = "CMA_ES",
    population_size: int = 8,
    num_generations: int = 10,
    time_budget_s: float | None = None,
    fn: Callable | None = None,
    progress: bool = False,
    checkpoint: str | None = None,
    on_evaluation: Callable[[float, dict[str, Any], dict[str, Any]], None] | None = None,
) -> tuple[EvolveResult, dict[str, Any]]:
    """Evolve `sample_equilibrium`'s configuration on `tasks` (see the module docstring).

    The search starts from the function's own defaults (where they lie in the space)
    and is evaluated on the host (each configuration is a compiled `sample_equilibrium`
    call; its compile cache is reused across configurations with the same static sizes).
    `on_evaluation(fitness, config, details)` is called after every configuration
    (the baseline first), e.g. to log a long search.

    Returns:
        (the `EvolveResult`, a report: the baseline's fitness and details under the
        defaults, the best configuration's details, every evaluated configuration
        (`evaluated`: fitness, config, details, in order), seeds, tasks, seconds).
    """
    if fn is None:
        from ..thermo.anneal import sample_equilibrium as fn
    if not tasks:
        raise ArgumentError("tasks", "give at least one EquilibriumTask")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ArgumentError("seeds", "give at least one seed")
    sp = dict(space) if space is not None else equilibrium_space(fn)
    defaults = {
        n: p.default
        for n, p in inspect.signature(fn).parameters.items()
        if n in sp and p.default is not inspect.Parameter.empty
    }
    if "num_steps" in sp and "num_steps" not in defaults:
        d = sp["num_steps"]
        if isinstance(d, Choice):
            defaults["num_steps"] = d.options[len(d.options) // 2]
    start = {}
    for n, v in defaults.items():
        d = sp[n]
        if isinstance(d, Choice) and v in list(d.options):
            start[n] = v
        elif isinstance(d, (Real, Int)) and isinstance(v, (int, float)) and not isinstance(v, bool):
            if d.lo <= v <= d.hi:
                start[n] = v
    t0 = time.perf_counter()
    base_fit, base_details = equilibrium_fitness(
        start, tasks, seeds, fn=fn, metric=metric, fixed=fixed
    )
    if on_evaluation is not None:
        on_evaluation(base_fit, dict(start), base_details)
    evaluated: list[tuple[float, dict[str, Any], dict[str, Any]]] = []

    def fitness(params, _key):
        f, det = equilibrium_fitness(params, tasks, seeds, fn=fn, metric=metric, fixed=fixed)
        evaluated.append((f, dict(params), det))
        if on_evaluation is not None:
            on_evaluation(f, dict(params), det)
        return f

    remaining = (
        None if time_budget_s is None else max(time_budget_s - (time.perf_counter() - t0), 1e-3)
    )
    res = minimize(
        fitness,
        sp,
        key,
        strategy=strategy,
        population_size=population_size,
        num_generations=num_generations,
        start=start,
        traceable=False,
        progress=progress,
        checkpoint=checkpoint,
        chunk_generations=1,
        time_budget_s=remaining,
    )
    # the best configuration as evaluated (its measured details), or the defaults when
    # nothing evolved beat them
    best_fit, best, best_det = (
        min(evaluated, key=lambda e: e[0]) if evaluated else (math.inf, {}, {})
    )
    if best_fit > base_fit:
        best, best_fit, best_det = start, base_fit, base_details
    report = {
        "baseline_config": start,
        "baseline_fitness": base_fit,
        "baseline": base_details,
        "best_config": best,
        "best_fitness": best_fit,
        "best": best_det,
        "evaluated": [{"fitness": f, "config": c, "details": d} for f, c, d in evaluated],
        "seeds": seeds,
        "tasks": [t.name for t in tasks],
        "metric": metric,
        "generations": res.num_generations,
        "evaluations": res.num_evaluations,
        "seconds": time.perf_counter() - t0,
    }
    return res, report


# --- samplers: effective samples per gradient evaluation ----------------------------------


def ess_per_chain_jax(draws: Float[Array, "chains draws dim"]) -> Float[Array, " dim"]:
    """Effective sample size of every component over all chains (traceable).

    Stan's multi-chain estimator: per-chain autocovariances by FFT, combined with the
    between-chain variance (rho_t = 1 - (W - mean acov_t) / var+, so chains stuck at
    different places count as few samples), summed with Geyer's initial positive
    sequence (pairs of lags until a pair sum is <= 0, made non-increasing). The estimator family of
    `idf.ess`, without rank normalisation.
    """
    x = jnp.asarray(draws, jnp.float32)
    c, n, _ = x.shape
    means = jnp.mean(x, axis=1, keepdims=True)
    xc = x - means
    f = jnp.fft.rfft(xc, n=2 * n, axis=1)
    acov = jnp.fft.irfft(f * jnp.conj(f), n=2 * n, axis=1)[:, :n] / n  # (c, n, dim)
    w = jnp.mean(acov[:, 0] * n / max(n - 1, 1), axis=0)  # within-chain variance
    b = jnp.var(means[:, 0], axis=0, ddof=1) if c > 1 else jnp.zeros_like(w)
    var_plus = (n - 1) / n * w + b
    rho = 1.0 - (w - jnp.mean(acov, axis=0)) / jnp.maximum(var_plus, 1e-30)
    m = n // 2
    pairs = rho[0 : 2 * m : 2] + rho[1 : 2 * m : 2]

    # Geyer's initial positive and monotone sequence in one pass over the lags: a lax.scan
    # (cumprod / cummin lower to an associative scan on CPU, ~25% more compile time for
    # this estimator, which is compiled inside every sampler-tuning fitness)
    def initial_monotone(carry, p):
        alive, low = carry
        alive = alive & (p > 0)
        low = jnp.where(alive, jnp.minimum(low, p), 0.0)
        return (alive, low), (alive, low)

    start = (jnp.ones(pairs.shape[1:], bool), jnp.full(pairs.shape[1:], jnp.inf, pairs.dtype))
    _, (keep, pairs) = jax.lax.scan(initial_monotone, start, pairs)
    tau = -1.0 + 2.0 * jnp.sum(jnp.where(keep, pairs, 0.0), axis=0)
    tau = jnp.maximum(tau, 1.0 / jnp.log10(jnp.maximum(c * n, 10.0)))
    return c * n / tau


def sampler_space(sampler: str) -> dict[str, Dimension]:
    """The default settings space of `sampler` ("mala" or "hmc")."""
    if sampler == "mala":
        return {"step_size": Real(1e-4, 10.0, log=True)}
    if sampler == "hmc":
        return {
            "step_size": Real(1e-4, 10.0, log=True),
            "num_integration_steps": Int(1, 32, log=True),
        }
    raise ArgumentError("sampler", f"sampler must be 'mala' or 'hmc', got {sampler!r}")


def tune_sampler(
    energy_fn: Callable,
    x0_batch: Any,
    key: PRNGKeyArray,
    *,
    sampler: str = "mala",
    num_steps: int = 500,
    burn_in: int = 100,
    space: Mapping[str, Dimension] | None = None,
    strategy: str = "CMA_ES",
    population_size: int = 8,
    num_generations: int = 10,
    progress: bool = False,
    time_budget_s: float | None = None,
) -> EvolveResult:
    """Tune `sampler`'s settings for effective samples per gradient evaluation.

    fitness = -log10(min over components of ESS / gradient evaluations), ESS from
    `ess_per_chain_jax` over `num_steps - burn_in` draws of every chain of `x0_batch`.
    MALA (step size: array data) runs as JAX code, the whole population in one
    jit(vmap); HMC's `num_integration_steps` sets a loop length, so HMC is evaluated on
    the host, one compiled sampler per distinct value.
    """
    from ..run import sample
    from ..samplers import hmc, mala

    key = as_key(key)
    num_steps = positive_int("num_steps", num_steps)
    if not 0 <= burn_in < num_steps:
        raise ArgumentError("burn_in", f"burn_in must be in [0, num_steps), got {burn_in!r}")
    sp = dict(space) if space is not None else sampler_space(sampler)
    chains = int(jax.tree.leaves(x0_batch)[0].shape[0])

    def draws_flat(trace):
        leaves = jax.tree.leaves(trace.positions)
        return jnp.concatenate([l.reshape(l.shape[0], l.shape[1], -1) for l in leaves], axis=-1)

    fitness: Callable[[Any, Any], Any]
    if sampler == "mala":

        def mala_fitness(p, k):
            tr = sample(mala(energy_fn, p["step_size"]), k, x0_batch, num_steps, burn_in=burn_in)
            ess = jnp.min(ess_per_chain_jax(draws_flat(tr)))
            return -jnp.log10(jnp.maximum(ess, 1e-6) / (chains * num_steps))

        fitness, traceable = mala_fitness, True
    elif sampler == "hmc":

        def hmc_fitness(p, k):
            L = int(p["num_integration_steps"])
            tr = sample(hmc(energy_fn, p["step_size"], L), k, x0_batch, num_steps, burn_in=burn_in)
            ess = float(jnp.min(ess_per_chain_jax(draws_flat(tr))))
            return -math.log10(max(ess, 1e-6) / (chains * num_steps * L))

        fitness, traceable = hmc_fitness, False
    else:
        raise ArgumentError("sampler", f"sampler must be 'mala' or 'hmc', got {sampler!r}")
    return minimize(
        fitness,
        sp,
        key,
        strategy=strategy,
        population_size=population_size,
        num_generations=num_generations,
        traceable=traceable,
        progress=progress,
        time_budget_s=time_budget_s,
    )
