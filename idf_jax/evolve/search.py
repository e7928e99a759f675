"""`minimize`: an evolution strategy over a named search space, one compiled search.

A JAX-traceable fitness is evaluated for the whole population in one `vmap` (or, with
`batch_size=b`, b candidates at a time in a `lax.map`: XLA then compiles the fitness for
b candidates, not the population, which costs less compile time where the fitness is a
whole sampler run; b = 1 is a plain `lax.map`, no vmap), and the generations run in one
`jax.lax.scan` inside one `jax.jit`: one compilation per search (a progress bar,
checkpoints, a time budget or a callback cut the scan into chunks of equal length, the
last one masked when they do not divide the generations, so the compiled chunk is
reused). With `loop="python"` the generations are
a Python loop over one compiled ask, the compiled population evaluation and one compiled
tell, and the ask / tell are compiled once per process for a (strategy, population,
dimension) and shared by every search: a search then compiles its fitness and nothing
else, for ~1 ms of dispatch per generation. A fitness that JAX cannot trace (it calls
NumPy on its inputs, runs a simulator, reads files) is evaluated on the host, one
generation at a time, with Python values; the strategy's ask / tell stay compiled.
`fitness_fn` is traced once per search: the trace that decides whether it is JAX code is
the one the jitted population evaluation keeps and the loop or the scan lowers.

Randomness: generation g uses `fold_in(key, g)`, so a chunked, checkpointed or resumed
search gives the numbers of an uninterrupted one with the same chunking.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray

from .._checks import ArgumentError, as_key, positive, positive_int
from .._progress import Progress
from ..run._checkpoint import _key_fingerprint, _load_checkpoint, _save_checkpoint
from .archive import Archive, MapElites, archive_insert, elites
from .space import Dimension, Space, as_space
from .strategies import is_population_based, make_strategy

__all__ = ["EvolveResult", "minimize", "default_population_size", "default_restart_patience"]

_log = logging.getLogger("idf_jax.evolve")


class EvolveResult(NamedTuple):
    """What `minimize` found.

    best_params: the best configuration, as Python values (float, int, the option).
    best_fitness: its fitness (lowest seen).
    history: per generation run, NumPy arrays: `best_fitness` (best so far),
        `generation_best`, `generation_mean` (over finite fitness values).
    archive: the MAP-Elites elites (list of dicts: cell, fitness, descriptor, params),
        None without `archive=`.
    num_evaluations: fitness evaluations made.
    num_generations: generations run (fewer than asked when stopped early).
    traceable: True when the fitness ran as JAX code (one jit(vmap)), False on the host.
    strategy: the evosax algorithm's name.
    mean_params: the search distribution's mean at the end, decoded like `best_params`
        (distribution-based strategies: CMA-ES, SNES, Open_ES, ...; None for population-
        based ones: PSO, DE, GA). On a noisy fitness this is the recommendation to use:
        `best_params` is the luckiest of many noisy evaluations (its `best_fitness` is
        biased low), while the mean is fitted to all of them. After restarts: the mean
        of the run that found the best point.
    num_restarts: restarts made (`restarts=`).
    """

    best_params: dict[str, Any]
    best_fitness: float
    history: dict[str, np.ndarray]
    archive: list[dict[str, Any]] | None
    num_evaluations: int
    num_generations: int
    traceable: bool
    strategy: str
    mean_params: dict[str, Any] | None = None
    num_restarts: int = 0


class _Restart(NamedTuple):
    """The restart bookkeeping carried through the generations (present, unused, when
    restarts are off)."""

    run_best: jax.Array  # the current run's best fitness
    stall: jax.Array  # generations since it last improved
    count: jax.Array  # restarts so far
    ans_mean: jax.Array  # the closed run with the best run_best: its final mean
    ans_f: jax.Array  # and that run_best

    @staticmethod
    def fresh(start_z) -> _Restart:
        inf = jnp.full((), jnp.inf, jnp.float32)
        zero = jnp.zeros((), jnp.int32)
        return _Restart(inf, zero, zero, jnp.asarray(start_z, jnp.float32), inf)


class _Params(NamedTuple):
    """What a search passes to its compiled functions: the evosax params and the restart
    settings (data, so searches that differ in them share the compiled search)."""

    es: Any
    restart_mode: jax.Array  # int32: 0 off, 1 "best", 2 "random"
    patience: jax.Array  # int32: generations without improvement before a restart
    tol: jax.Array  # float32: relative improvement that resets the patience


_RESTART_MODES = {"off": 0, "best": 1, "random": 2}


class _Carry(NamedTuple):
    state: Any
    best_z: jax.Array
    best_f: jax.Array
    archive: Archive | None
    hist_best: jax.Array
    hist_gen_best: jax.Array
    hist_gen_mean: jax.Array
    restart: _Restart


def default_population_size(dim: int) -> int:
    """CMA-ES's default 4 + floor(3 ln d), at least 8, rounded up to even (Open_ES)."""
    n = max(8, 4 + int(3 * math.log(max(dim, 1))))
    return n + (n % 2)


def default_restart_patience(dim: int, pop: int) -> int:
    """Generations without improvement before a restart: 10 + ceil(10 d / population)
    (CMA-ES's stagnation window 10 + ceil(30 d / population) [Hansen 2009], a third of
    it: the budgets here are tens of generations, not thousands)."""
    return 10 + math.ceil(10 * max(dim, 1) / pop)


def _strong(tree):
    """Leaves as strongly typed arrays (traceable), so a fresh carry, a carry after a
    chunk and a carry read back from a checkpoint all have the same types."""

    def one(l):
        l = jnp.asarray(l)
        if l.dtype == jnp.bool_:
            return jnp.logical_or(l, jnp.zeros((), jnp.bool_))
        return l + jnp.zeros((), l.dtype)

    return jax.tree.map(one, tree)


_strong_jit = jax.jit(_strong)


def _as_descriptor(out) -> jax.Array:
    if isinstance(out, (tuple, list)):
        return jnp.stack([jnp.asarray(v, jnp.float32).reshape(()) for v in out])
    return jnp.asarray(out, jnp.float32).reshape(-1)


def _split_out(out, has_aux: bool):
    if not has_aux:
        return out, out
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise ArgumentError("fitness_fn", "with has_aux=True fitness_fn must return (fitness, aux)")
    return out[0], out[1]


def minimize(
    fitness_fn: Callable[..., Any],
    space: Space | Mapping[str, Dimension],
    key: PRNGKeyArray,
    *,
    strategy: str = "CMA_ES",
    population_size: int | None = None,
    num_generations: int = 50,
    init_std: float = 0.25,
    start: Mapping[str, Any] | None = None,
    traceable: bool | None = None,
    has_aux: bool = False,
    archive: MapElites | None = None,
    descriptor_fn: Callable[..., Any] | None = None,
    progress: bool = False,
    checkpoint: str | os.PathLike | None = None,
    chunk_generations: int | None = None,
    time_budget_s: float | None = None,
    callback: Callable[[int, float], bool | None] | None = None,
    strategy_kwargs: Mapping[str, Any] | None = None,
    strategy_params: Mapping[str, Any] | None = None,
    batch_size: int | None = None,
    loop: str = "scan",
    restarts: str = "off",
    restart_patience: int | None = None,
    restart_tol: float = 1e-3,
) -> EvolveResult:
    """Minimise `fitness_fn(params, key) -> scalar` over `space` with an evosax strategy.

    The strategy searches the encoded box of `space` (see `idf_jax.evolve.space`: reals
    by (log-)affine maps, ints by rounding, choices by binning an index or by argmax over
    one-hot logits);
    every candidate is decoded to `params`, a dict name -> value, and evaluated with its
    own key (split from the generation's key). Lower fitness is better; NaN counts as
    +inf. Distribution-based strategies start at `start` (default: the middle of every
    range) with spread `init_std` (box units, where the algorithm has `std_init`);
    population-based ones first evaluate a uniform random population.

    With `restarts="best"` or `"random"` a distribution-based strategy is re-initialised
    when its run stagnates (no relative improvement of `restart_tol` in the run's best
    fitness for `restart_patience` generations, or a collapsed population): at the best
    point so far or at a uniform point of the box, with the spread `init_std` again.
    The population size stays the same (IPOP's doubling would change the compiled
    shapes), a restart spends no evaluation, and it happens inside the one compiled
    search (a `jnp.where` over the strategy state), so the budget is population x
    generations as without restarts and nothing recompiles (the restart test is
    compiled in only when restarts are on: a search without them costs what it did).
    The best point is kept across runs. Off by default: on the budgets measured (32
    and 64 generations of 16) restarts fired on runs that were still improving and
    lost more than they found (benchmarks/README.md, evolve, 2026-12-04); they pay on
    longer searches stuck in one basin.

    Example:
        >>> space = {"x": idf.evolve.Real(-5, 5), "n": idf.evolve.Int(1, 8)}
        >>> res = idf.evolve.minimize(lambda p, k: (p["x"] - 1) ** 2 + p["n"], space, key)
        >>> res.best_params  # {'x': 1.0..., 'n': 1}

    Args:
        fitness_fn: (params, key) -> scalar; JAX code gets a dict of arrays, host code a
            dict of Python values. With `has_aux=True` it returns (fitness, aux), and aux
            reaches `descriptor_fn`.
        space: name -> `Real` / `Int` / `Choice` (or a `Space`).
        key: PRNG key; the search is a function of it.
        strategy: an evosax algorithm name (`available_strategies()`).
        population_size: candidates per generation (default `default_population_size`).
        num_generations: generations to run.
        init_std: initial spread in box units (the box is [0, 1] per coordinate).
        start: initial configuration (some or all names) for the strategy's mean.
        traceable: True: JAX path (an error if it cannot trace); False: host path;
            None: try to trace (`jax.eval_shape`: the function runs once on tracers) and
            fall back to the host when that fails (logged on "idf_jax.evolve").
        has_aux: fitness_fn returns (fitness, aux).
        archive: a `MapElites(bins, ranges)` grid; needs `descriptor_fn`.
        descriptor_fn: (params, aux or fitness) -> a tuple of descriptors, one per grid
            axis.
        progress: a progress bar over generations.
        checkpoint: a file; the search state is written there atomically after every
            chunk, and a search started with an existing checkpoint resumes from it.
        chunk_generations: generations per chunk when chunked (default: 1/20 of them).
        time_budget_s: stop after the first chunk that ends past this wall time.
        callback: callback(generations_done, best_fitness) after every chunk; return
            True to stop (the checkpoint is kept, so the search can be resumed).
        strategy_kwargs: extra arguments of the evosax algorithm's constructor.
        strategy_params: fields of its params to override (e.g. {"std_min": 1e-3}).
        batch_size: JAX fitness only: evaluate the population `batch_size` candidates at
            a time (a `lax.map` over groups, each group one vmap; it must divide the
            population size). None: the whole population in one vmap, the fastest to
            run; 1: one candidate at a time in a plain `lax.map` (no vmap), the cheapest
            to compile: about what the fitness alone costs (see benchmarks/README.md).
        loop: JAX fitness only: "scan" (the generations in one compiled `lax.scan`, the
            fastest per generation) or "python" (a Python loop over the compiled
            generation's parts; the strategy's ask / tell compiled once per process and
            shared by every search of that strategy, population and dimension, so a
            search compiles only its fitness: the cheapest to start).
        restarts: "off", "best" (restart at the best point so far: a local restart that
            keeps what was learnt about the other coordinates) or "random" (at a uniform
            point of the box). Distribution-based strategies only.
        restart_patience: generations without improvement before a restart (default
            `default_restart_patience(dim, population)`).
        restart_tol: the relative improvement of the run's best fitness that counts.

    Returns:
        An `EvolveResult`.
    """
    sp = as_space(space)
    key = as_key(key)
    num_generations = positive_int("num_generations", num_generations)
    positive("init_std", init_std)
    pop = (
        default_population_size(sp.dim)
        if population_size is None
        else positive_int("population_size", population_size)
    )
    if pop < 2:
        raise ArgumentError("population_size", f"population_size must be >= 2, got {pop}")
    if not callable(fitness_fn):
        raise ArgumentError("fitness_fn", "fitness_fn must be callable (params, key) -> scalar")
    if (archive is None) != (descriptor_fn is None):
        raise ArgumentError(
            "descriptor_fn" if archive is not None else "archive",
            "archive= and descriptor_fn= go together (a MAP-Elites grid and its descriptors)",
        )
    if archive is not None and not isinstance(archive, MapElites):
        raise ArgumentError("archive", "archive must be MapElites.make(bins, ranges)")
    if time_budget_s is not None:
        positive("time_budget_s", time_budget_s)
    if loop not in ("scan", "python"):
        raise ArgumentError("loop", f"loop must be 'scan' or 'python', got {loop!r}")
    if restarts not in _RESTART_MODES:
        raise ArgumentError(
            "restarts", f"restarts must be one of {sorted(_RESTART_MODES)}, got {restarts!r}"
        )
    patience = (
        default_restart_patience(sp.dim, pop)
        if restart_patience is None
        else positive_int("restart_patience", restart_patience)
    )
    if not (isinstance(restart_tol, (int, float)) and 0.0 <= restart_tol < 1.0):
        raise ArgumentError("restart_tol", f"restart_tol must be in [0, 1), got {restart_tol!r}")
    if batch_size is not None:
        batch_size = positive_int("batch_size", batch_size)
        if pop % batch_size:
            raise ArgumentError(
                "batch_size",
                f"batch_size ({batch_size}) must divide the population size ({pop})",
            )
        if batch_size == pop:
            batch_size = None
    sig = (
        fitness_fn,
        descriptor_fn,
        repr(sp.describe()),
        strategy,
        pop,
        num_generations,
        has_aux,
        archive,
        traceable,
        repr(sorted((strategy_kwargs or {}).items())),
        batch_size,
        loop,
        restarts != "off",
    )
    engine = _ENGINES.get(sig)
    if engine is None:
        engine = _Engine(
            fitness_fn,
            sp,
            strategy,
            pop,
            num_generations,
            has_aux,
            archive,
            descriptor_fn,
            traceable,
            strategy_kwargs,
            batch_size,
            loop,
            key,
            restarts != "off",
        )
        _ENGINES[sig] = engine
        while len(_ENGINES) > _MAX_ENGINES:
            _ENGINES.pop(next(iter(_ENGINES)))
    else:
        _ENGINES[sig] = _ENGINES.pop(sig)  # most recently used last
    if restarts != "off" and engine.pop_based:
        raise ArgumentError(
            "restarts",
            f"restarts re-initialise a search distribution; {engine.name} is population-based",
        )
    params = engine.params(float(init_std), strategy_params, restarts, patience, restart_tol)
    strategy_name, use_jax, G = engine.name, engine.use_jax, num_generations
    k_init, k_run = jax.random.split(key)
    start_z = sp.encode(start) if start is not None else engine.centre

    meta = {
        "kind": "idf_jax.evolve.minimize",
        "strategy": strategy_name,
        "population_size": pop,
        "num_generations": G,
        "space": sp.describe(),
        "traceable": use_jax,
        "archive": None
        if archive is None
        else [list(archive.bins), [list(r) for r in archive.ranges]],
        "key": _key_fingerprint(key) if checkpoint is not None else None,
    }
    done = 0
    ckpt = os.fspath(checkpoint) if checkpoint is not None else None
    if ckpt is not None and os.path.exists(ckpt):
        carry, done = _load_checkpoint(ckpt, engine.fresh(k_init, start_z, params), meta)
    else:
        carry = engine.fresh(k_init, start_z, params)

    chunked = progress or ckpt is not None or time_budget_s is not None or callback is not None
    if chunk_generations is not None:
        chunk = positive_int("chunk_generations", chunk_generations)
    else:
        chunk = _default_chunk(G) if chunked else G
    chunk = min(chunk, G)

    bar = Progress(G, done, label="evolving", status="", enabled=progress)
    t0 = time.perf_counter()
    try:
        while done < G:
            carry = engine.run(carry, done, chunk, k_run, params)
            done = min(done + chunk, G)
            if ckpt is not None:
                _save_checkpoint(ckpt, carry, {**meta, "steps_done": done})
            best = float(carry.best_f)
            bar.update(done, f"best {best:.6g}")
            if callback is not None and callback(done, best):
                break
            if time_budget_s is not None and time.perf_counter() - t0 > time_budget_s:
                break
    finally:
        bar.close()

    best_params = sp.to_python(jax.tree.map(np.asarray, engine.readout(carry.best_z)))
    mean_z = None if engine.pop_based else getattr(carry.state, "mean", None)
    rs = carry.restart
    if mean_z is not None and float(rs.run_best) > float(rs.ans_f):
        mean_z = rs.ans_mean  # an earlier run found the best point: its mean
    mean_params = (
        None
        if mean_z is None
        else sp.to_python(jax.tree.map(np.asarray, engine.readout(jnp.asarray(mean_z))))
    )
    arch_out = None
    if archive is not None and carry.archive is not None:
        arch_out = elites(
            carry.archive, archive, lambda z: sp.to_python(jax.tree.map(np.asarray, sp.decode(z)))
        )
    return EvolveResult(
        best_params=best_params,
        best_fitness=float(carry.best_f),
        history={
            "best_fitness": np.asarray(carry.hist_best)[:done],
            "generation_best": np.asarray(carry.hist_gen_best)[:done],
            "generation_mean": np.asarray(carry.hist_gen_mean)[:done],
        },
        archive=arch_out,
        num_evaluations=done * pop + (pop if engine.pop_based else 0),
        num_generations=done,
        traceable=use_jax,
        strategy=strategy_name,
        mean_params=mean_params,
        num_restarts=int(rs.count),
    )


class _Steps:
    """A strategy's ask and tell (with the best-so-far and archive bookkeeping), plain for
    the scan and jitted for the Python loop; shared by every search with the same
    (strategy, population, dimension, constructor arguments, archive grid)."""

    def __init__(self, strategy, pop, dim, strategy_kwargs, archive, restarts=False):
        self.es, _, self.name = make_strategy(
            strategy, pop, dim, init_std=1.0, strategy_kwargs=strategy_kwargs
        )
        self.archive = archive
        self.pop_based = is_population_based(self.es)
        # the restart test is compiled in only where restarts are on (its mode, patience
        # and tolerance are data): a search without restarts compiles what it did before
        self.restarts = restarts and not self.pop_based
        self.ask = jax.jit(self.ask_fn)
        self.tell = jax.jit(self.tell_fn)
        self.init = jax.jit(self.init_fn)

    def init_fn(self, k_init, start_z, params: _Params):
        """A distribution-based strategy's state at `start_z` (strongly typed leaves)."""
        return _strong(self.es.init(k_init, start_z, params.es))

    def ask_fn(self, state, g, k_run, params: _Params):
        k_ask, k_eval, _ = jax.random.split(jax.random.fold_in(k_run, g), 3)
        z, state = self.es.ask(k_ask, state, params.es)
        return z, state, k_eval

    def tell_fn(self, best_z, best_f, arch, rs, state, g, z, f, d, k_run, params: _Params):
        """(state, best_z, best_f, archive, restart state, this generation's best and
        mean fitness)."""
        _, _, k_tell = jax.random.split(jax.random.fold_in(k_run, g), 3)
        new_state, _ = self.es.tell(k_tell, z, f, state, params.es)
        # A distribution whose spread has collapsed to 0 (a flat fitness: every candidate
        # equal) gets a NaN mean from CMA-ES's update; keep the last state with a finite
        # mean instead, so `mean_params` stays a point of the space (the search then
        # samples that point until a restart or the end of its budget).
        mean_new = getattr(new_state, "mean", None)
        if mean_new is not None:
            ok = jnp.all(jnp.isfinite(mean_new))
            new_state = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new_state, state)
        state = new_state
        i = jnp.argmin(f)
        better = f[i] < best_f
        if self.archive is not None and arch is not None and d is not None:
            arch = archive_insert(self.archive, arch, z, f, d)
        fin = jnp.isfinite(f)
        mean = jnp.sum(jnp.where(fin, f, 0.0)) / jnp.maximum(jnp.sum(fin), 1)
        mean = jnp.where(jnp.any(fin), mean, jnp.inf)
        best_f = jnp.where(better, f[i], best_f)
        best_z = jnp.where(better, z[i], best_z)
        if self.restarts:
            state, rs = self._restart(state, rs, z, f[i], best_z, k_tell, params)
        return state, best_z, best_f, arch, rs, f[i], mean

    def _restart(self, state, rs: _Restart, z, gen_best, best_z, key, params: _Params):
        """Restart the strategy when its run has stagnated.

        The run has stagnated when its best fitness has not improved by more than
        `tol` (relative) for `patience` generations, or when the population has
        collapsed (every coordinate's spread below 1e-6 box units: left alone, CMA-ES's
        spread reaches 0 and its mean turns NaN).
        A restart re-initialises the strategy (`es.init`, the spread `init_std` again)
        at the best point found so far ("best") or at a uniform point of the box
        ("random"); the population size is unchanged, so nothing recompiles, and no
        evaluation is spent on it: the next generation is the new run's first.
        """
        rb = rs.run_best
        improved = jnp.logical_or(~jnp.isfinite(rb), gen_best < rb - params.tol * jnp.abs(rb))
        run_best = jnp.minimum(rb, gen_best)
        stall = jnp.where(improved, 0, rs.stall + 1)
        collapsed = jnp.max(jnp.std(z, axis=0)) < 1e-6
        go = (params.restart_mode > 0) & ((stall >= params.patience) | collapsed)
        k_mean, k_init = jax.random.split(jax.random.fold_in(key, 1))
        centre = jnp.where(
            params.restart_mode == 2,
            jax.random.uniform(k_mean, best_z.shape, jnp.float32),
            best_z,
        )
        # the closed run's mean is the answer kept if its best stays the best of all runs
        mean = getattr(state, "mean", None)
        new = self.es.init(k_init, centre, params.es)
        state = jax.tree.map(
            lambda a, b: jnp.where(go, jnp.asarray(a, jnp.asarray(b).dtype), b), new, state
        )
        keep = go & (run_best <= rs.ans_f)
        ans_mean = rs.ans_mean if mean is None else jnp.where(keep, mean, rs.ans_mean)
        rs = _Restart(
            jnp.where(go, jnp.inf, run_best).astype(jnp.float32),
            jnp.where(go, 0, stall).astype(jnp.int32),
            (rs.count + go).astype(jnp.int32),
            ans_mean.astype(jnp.float32),
            jnp.where(keep, run_best, rs.ans_f).astype(jnp.float32),
        )
        return state, rs


_STEPS: dict[tuple, _Steps] = {}
_MAX_STEPS = 16


def _shared_steps(strategy, pop, dim, strategy_kwargs, archive, restarts=False) -> _Steps:
    sig = (
        strategy,
        pop,
        dim,
        repr(sorted((strategy_kwargs or {}).items())),
        archive,
        bool(restarts),
    )
    steps = _STEPS.pop(sig, None)
    if steps is None:
        steps = _Steps(strategy, pop, dim, strategy_kwargs, archive, restarts)
    _STEPS[sig] = steps  # most recently used last
    while len(_STEPS) > _MAX_STEPS:
        _STEPS.pop(next(iter(_STEPS)))
    return steps


_DECODERS: dict[str, Callable] = {}


def _shared_decode(sp: Space) -> Callable:
    """`jax.jit(sp.decode)`, one per space description: the read-out of the best point
    is compiled once per process, not once per search."""
    sig = repr(sp.describe())
    fn = _DECODERS.pop(sig, None)
    if fn is None:
        fn = jax.jit(sp.decode)
    _DECODERS[sig] = fn  # most recently used last
    while len(_DECODERS) > _MAX_STEPS:
        _DECODERS.pop(next(iter(_DECODERS)))
    return fn


def _default_chunk(G: int) -> int:
    """About a twentieth of the generations; a divisor of G when one is near (<= 1.5x),
    so the chunks need no mask for the generations past G."""
    c = max(1, math.ceil(G / 20))
    for d in range(c, int(1.5 * c) + 1):
        if G % d == 0:
            return d
    return c


_ENGINES: dict[tuple, _Engine] = {}
_MAX_ENGINES = 8
"""Compiled searches by (fitness, space, strategy, sizes): a search with a new key, new
strategy parameters or a new start reuses the compiled one (least recently used go)."""


class _Engine:
    """One compiled search: the strategy object and the jitted ask / evaluate / tell.

    Everything that varies between searches of one signature (key, strategy params,
    start, carry) is an argument of the jitted functions, never a closure constant.
    """

    def __init__(
        self,
        fitness_fn,
        sp: Space,
        strategy,
        pop,
        G,
        has_aux,
        archive,
        descriptor_fn,
        traceable,
        strategy_kwargs,
        batch_size=None,
        loop="scan",
        key=None,
        restarts=False,
    ):
        self.batch_size, self.loop = batch_size, loop
        key = jax.random.key(0) if key is None else key
        self.steps = _shared_steps(strategy, pop, sp.dim, strategy_kwargs, archive, restarts)
        self.es, self.name = self.steps.es, self.steps.name
        self.sp, self.fitness_fn, self.pop, self.G = sp, fitness_fn, pop, G
        self.has_aux, self.archive, self.descriptor_fn = has_aux, archive, descriptor_fn
        self.pop_based = is_population_based(self.es)
        self._eval = jax.jit(self._eval_traced)
        err = self._trace_eval(key) if traceable is not False else None
        if traceable is True and err is not None:
            raise ArgumentError(
                "fitness_fn",
                f"fitness_fn could not be traced by JAX ({type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''}); pass traceable=False to "
                "evaluate it on the host",
            )
        if traceable is None and err is not None:
            _log.info(
                "fitness_fn is not JAX-traceable (%s); evaluating it on the host",
                type(err).__name__,
            )
        self.use_jax = traceable is not False and err is None
        self._decode = jax.jit(sp.decode_batch)
        self._ask = jax.jit(self._ask_fn)
        self._tell = jax.jit(self._tell_fn)
        self._chunks: dict[int, Callable] = {}
        self._params: dict[tuple, Any] = {}
        self.readout = _shared_decode(sp)
        self.centre = sp.centre()

    def _trace_eval(self, key) -> Exception | None:
        """Trace the population evaluation once, at the shapes the search will call it
        with: None when the fitness (and descriptors) trace as JAX code, else the error.

        This trace is the only one of the fitness: `jax.jit` keeps it, so the compiled
        evaluation (Python loop) and the scan (which calls the same jitted evaluation)
        lower it without tracing `fitness_fn` again.
        """
        z = jax.ShapeDtypeStruct((self.pop, self.sp.dim), jnp.float32)
        k = jax.eval_shape(lambda kk: jax.random.split(jax.random.fold_in(kk, 0), 3)[1], key)
        try:
            self._eval.trace(z, k)
        except ArgumentError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure to trace means "host"
            return e
        return None

    def params(self, init_std: float, overrides, restarts="off", patience=1, tol=0.0):
        ck = (init_std, repr(sorted((overrides or {}).items())))
        if ck not in self._params:
            self._params[ck] = self._make_params(init_std, overrides)
            while len(self._params) > 16:
                self._params.pop(next(iter(self._params)))
        return _Params(
            self._params[ck],
            jnp.asarray(_RESTART_MODES[restarts], jnp.int32),
            jnp.asarray(patience, jnp.int32),
            jnp.asarray(tol, jnp.float32),
        )

    def _make_params(self, init_std: float, overrides):
        p = self.es.default_params
        fields = set(getattr(p, "__dataclass_fields__", {}))
        if "std_init" in fields:
            p = p.replace(std_init=jnp.asarray(init_std, jnp.float32))
        extra = dict(overrides or {})
        unknown = sorted(set(extra) - fields)
        if unknown:
            raise ArgumentError(
                "strategy_params",
                f"{self.name} has no parameter(s) {unknown}; it has {sorted(fields)}",
            )
        return p.replace(**extra) if extra else p

    # --- evaluation of one generation: traced, or on the host ---------------------------
    def _eval_traced(self, z, k):
        values = self.sp.decode_batch(z)
        keys = jax.random.split(k, z.shape[0])

        def one(v, kk):
            f, aux = _split_out(self.fitness_fn(v, kk), self.has_aux)
            if jnp.shape(f) != ():
                raise ArgumentError(
                    "fitness_fn", f"fitness_fn must return a scalar, got shape {jnp.shape(f)}"
                )
            f = jnp.asarray(f, jnp.float32)
            d = (
                _as_descriptor(self.descriptor_fn(v, aux))
                if self.descriptor_fn is not None
                else None
            )
            return f, d

        if self.batch_size is None:
            f, d = jax.vmap(one)(values, keys)
        elif self.batch_size == 1:
            # a plain lax.map (a scan over candidates), not a vmap of one candidate per
            # step: the fitness compiles as it does alone (a vmap of size 1 still
            # batches every op, ~15% more compile for a sampler run)
            f, d = jax.lax.map(lambda a: one(*a), (values, keys))
        else:
            f, d = jax.lax.map(lambda a: one(*a), (values, keys), batch_size=self.batch_size)
        return jnp.where(jnp.isnan(f), jnp.inf, f), d

    def _eval_host(self, z, k):
        values = self.sp.to_python_batch(self._decode(z))
        keys = jax.random.split(k, len(values))
        fs, ds = [], []
        for v, kk in zip(values, keys):
            f, aux = _split_out(self.fitness_fn(v, kk), self.has_aux)
            f = np.asarray(f, np.float64)
            if f.shape != ():
                raise ArgumentError(
                    "fitness_fn", f"fitness_fn must return a scalar, got shape {f.shape}"
                )
            fs.append(float(f))
            if self.descriptor_fn is not None:
                ds.append(np.asarray(_as_descriptor(self.descriptor_fn(v, aux))))
        f = np.asarray(fs, np.float32)
        f = np.where(np.isnan(f), np.inf, f)
        return jnp.asarray(f), (jnp.asarray(np.stack(ds)) if ds else None)

    def evaluate(self, z, k):
        return self._eval(z, k) if self.use_jax else self._eval_host(z, k)

    # --- ask / tell with our own best and archive bookkeeping ------------------------------
    def _ask_fn(self, state, g, k_run, params):
        return self.steps.ask_fn(state, g, k_run, params)

    def _tell_fn(self, c: _Carry, state, g, z, f, d, k_run, params) -> _Carry:
        state, best_z, best_f, arch, rs, gen_best, mean = self.steps.tell_fn(
            c.best_z, c.best_f, c.archive, c.restart, state, g, z, f, d, k_run, params
        )
        return _Carry(
            state,
            best_z,
            best_f,
            arch,
            c.hist_best.at[g].set(best_f),
            c.hist_gen_best.at[g].set(gen_best),
            c.hist_gen_mean.at[g].set(mean),
            rs,
        )

    def _fresh_dist(self, k_init, start_z, params) -> _Carry:
        """The strategy's state from the shared compiled init (nothing compiled per
        search); the rest of the carry is built as strongly typed arrays."""
        sp, G = self.sp, self.G
        arch0 = Archive.empty(self.archive, sp.dim) if self.archive is not None else None
        inf = jnp.full((G,), jnp.inf, jnp.float32)
        start_z = jnp.asarray(start_z, jnp.float32)
        state = self.steps.init(k_init, start_z, params)
        inf0 = jnp.full((), jnp.inf, jnp.float32)
        return _Carry(state, start_z, inf0, arch0, inf, inf, inf, _Restart.fresh(start_z))

    def fresh(self, k_init, start_z, params) -> _Carry:
        """The carry before generation 0 (population-based: an evaluated random start)."""
        if not self.pop_based:
            return self._fresh_dist(k_init, start_z, params)
        sp, G = self.sp, self.G
        inf = jnp.full((G,), jnp.inf, jnp.float32)
        z0 = jax.random.uniform(k_init, (self.pop, sp.dim), jnp.float32)
        z0 = z0.at[0].set(start_z)
        f0, d0 = self.evaluate(z0, jax.random.fold_in(k_init, 1))
        state = self.es.init(k_init, z0, f0, params.es)
        i = jnp.argmin(f0)
        arch = Archive.empty(self.archive, sp.dim) if self.archive is not None else None
        if self.archive is not None and arch is not None and d0 is not None:
            arch = archive_insert(self.archive, arch, z0, f0, d0)
        rs = _Restart.fresh(z0[i])
        return _strong_jit(_Carry(state, z0[i], f0[i], arch, inf, inf, inf, rs))

    def _chunk_fn(self, chunk: int):
        if chunk not in self._chunks:
            G = self.G

            # chunks that divide the generations never run past G: no mask (a cond around
            # the whole generation costs compile time)
            masked = G % chunk != 0

            def run_chunk(c: _Carry, first, k_run, params):
                def body(cc, i):
                    g = first + i

                    def step(c2):
                        z, state, k_eval = self._ask_fn(c2.state, g, k_run, params)
                        f, d = self._eval(z, k_eval)  # the detection's trace, reused
                        return self._tell_fn(c2, state, g, z, f, d, k_run, params)

                    if not masked:
                        return step(cc), None
                    return jax.lax.cond(g < G, step, lambda c2: c2, cc), None

                c, _ = jax.lax.scan(body, c, jnp.arange(chunk))
                return c

            self._chunks[chunk] = jax.jit(run_chunk)
        return self._chunks[chunk]

    def _run_python(self, carry: _Carry, done: int, chunk: int, k_run, params) -> _Carry:
        """The JAX path with `loop="python"`: shared compiled ask / tell, compiled evaluation;
        the history written on the host once per chunk."""
        steps = self.steps
        state, best_z, best_f, arch = carry.state, carry.best_z, carry.best_f, carry.archive
        rs = carry.restart
        gens, rows = range(done, min(done + chunk, self.G)), []
        for g in gens:
            gg = jnp.asarray(g, jnp.int32)
            z, state, k_eval = steps.ask(state, gg, k_run, params)
            f, d = self._eval(z, k_eval)
            state, best_z, best_f, arch, rs, gen_best, mean = steps.tell(
                best_z, best_f, arch, rs, state, gg, z, f, d, k_run, params
            )
            rows.append((best_f, gen_best, mean))
        hist = [
            np.array(h, np.float32)
            for h in (carry.hist_best, carry.hist_gen_best, carry.hist_gen_mean)
        ]
        if rows:
            vals = np.asarray(jax.device_get(rows), np.float32)  # (generations, 3)
            for j in range(3):
                hist[j][gens.start : gens.stop] = vals[:, j]
        h_best, h_gen, h_mean = (jnp.asarray(h) for h in hist)
        return _Carry(state, best_z, best_f, arch, h_best, h_gen, h_mean, rs)

    def run(self, carry: _Carry, done: int, chunk: int, k_run, params) -> _Carry:
        """Generations done .. done + chunk - 1 (those < G)."""
        if self.use_jax and self.loop == "python":
            return self._run_python(carry, done, chunk, k_run, params)
        if self.use_jax:
            return self._chunk_fn(chunk)(carry, jnp.asarray(done, jnp.int32), k_run, params)
        for g in range(done, min(done + chunk, self.G)):
            gg = jnp.asarray(g, jnp.int32)
            z, state, k_eval = self._ask(carry.state, gg, k_run, params)
            f, d = self._eval_host(z, k_eval)
            carry = self._tell(carry, state, gg, z, f, d, k_run, params)
        return carry
