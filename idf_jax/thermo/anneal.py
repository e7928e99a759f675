"""Annealing to low-energy states: `sample_equilibrium`.

All chains run annealed Metropolis-adjusted Langevin (MALA) in one vmapped `lax.scan`:
at step i the target is exp(-E_c(x) / T_i), E_c the energy plus constraint penalties and
T_i the schedule. Each chain keeps its own step size, adapted on the fly towards a
target acceptance (annealing is an optimiser, not a sampler: per-step adaptation is
allowed here), and remembers the lowest-energy state it visited. An optional
deterministic relaxation (`idf_jax.thermo.relax`: L-BFGS via optax, or FIRE) then takes each
chain's best state to the nearest local minimum.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from .. import _tree
from ..samplers._base import check_positive, check_positive_int, energy_and_grad
from . import constraints as _constraints
from . import relax as _relax
from .schedules import Schedule, as_schedule

__all__ = ["EquilibriumResult", "sample_equilibrium", "default_start_temperature"]

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
    acceptance_rate: (chains,) mean Metropolis acceptance over the run.
    step_size: (chains,) each chain's final Langevin step size.
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
    step_size: float | None = None,
    target_acceptance: float = 0.57,
    adapt_rate: float = 0.05,
    target: float | None = None,
    target_tol: float = 1e-3,
    relax_steps: int = 500,
    prerelax_steps: int = 100,
    record_every: int | None = None,
    t_end_ratio: float = 1e-2,
) -> EquilibriumResult:
    """Anneal every chain of `x0_batch` towards low energy, then relax to the nearest minimum.

    Step i (i = 0..num_steps-1) of chain c, at temperature T_i = schedule(i, num_steps):
    x' = P(x - eta_c grad E_c(x) + sqrt(2 eta_c T_i) xi), accepted with the MALA
    probability min(1, exp(-(E_c(x') - E_c(x))/T_i) q(x|x')/q(x'|x)); then
    log eta_c += adapt_rate (alpha - target_acceptance). E_c = E + constraint penalties;
    P composes `project` with the constraints' exact projections (with a projection
    the chain is a projected Langevin chain: good for optimisation, not exact sampling).

    Before annealing, `prerelax_steps` FIRE steps take the starting states out of any
    steric clash (a random start can sit at E ~ 1e10, which says nothing about the
    energy scale); annealing starts from there. The default schedule is geometric from
    T_0 = `default_start_temperature` (judged from those initial energies) down to
    T_0 * t_end_ratio (default T_0 / 100: the relaxation finishes the descent). Each
    chain's initial step size is 0.5 / lambda_max, the largest Hessian eigenvalue at its
    start (power iteration on finite-difference Hessian-vector products).

    The compiled pipeline is cached per (energy_fn, constraints, project, sizes), so a
    repeated call with the same objects does not recompile.

    Example (LJ13 from random starts; see tests/test_anneal_equilibrium.py):
        >>> res = idf.sample_equilibrium(lj, key, x0, num_steps=2000, target=-44.326801)
        >>> res.best_energy, res.num_reached

    Args:
        energy_fn: E(x) -> scalar for one state.
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
        adapt_rate: kappa in log eta += kappa (alpha - target).
        target: known best energy; `reached` counts chains within `target_tol` of it.
        relax_steps: iterations of the relaxation.
        prerelax_steps: FIRE steps before annealing (0: none).
        record_every: record the energy of every chain every this many steps.
        t_end_ratio: final / initial temperature of the default schedule.

    Returns:
        An `EquilibriumResult`.
    """
    num_steps = check_positive_int("num_steps", num_steps)
    relax_steps = check_positive_int("relax_steps", relax_steps)
    check_positive("adapt_rate", adapt_rate)
    check_positive("t_end_ratio", t_end_ratio)
    if not 0.0 < float(target_acceptance) < 1.0:
        raise ValueError(f"target_acceptance must be in (0, 1), got {target_acceptance!r}")
    if step_size is not None:
        check_positive("step_size", step_size)
    if record_every is not None:
        record_every = check_positive_int("record_every", record_every)
        if record_every > num_steps:
            raise ValueError(f"record_every ({record_every}) must be <= num_steps ({num_steps})")
    if project is not None and not callable(project):
        raise ValueError(f"project must be a callable x -> x, got {type(project).__name__}")
    _relax.resolve_method(relax, has_projection=False)
    n = _num_chains(x0_batch)
    key = jax.random.key(key) if isinstance(key, int) else key

    cs = _constraints.parse(constraints)
    example = jax.tree.map(lambda l: l[0], x0_batch)
    _constraints.validate(cs, example, energy_fn)
    has_proj = project is not None or _constraints.has_projection(cs)
    relax_method = _relax.resolve_method(relax, has_projection=has_proj)

    prerelax_steps = int(prerelax_steps)
    if prerelax_steps < 0:
        raise ValueError(f"prerelax_steps must be >= 0, got {prerelax_steps}")
    x0 = jax.tree.map(lambda l: jnp.asarray(l, jnp.result_type(l)), x0_batch)

    # Temperatures: a user schedule is evaluated here (and checked); the default one is
    # T_0 * rel[i] with T_0 judged inside the compiled pipeline from the initial energies.
    if schedule is None:
        rel = np.geomspace(1.0, float(t_end_ratio), num_steps) if num_steps > 1 else np.ones(1)
        temps_in, default_t = rel, True
    else:
        sched = as_schedule(schedule)
        temps_in = np.asarray(jax.vmap(lambda i: sched(i, num_steps))(jnp.arange(num_steps)))
        if temps_in.shape != (num_steps,):
            raise ValueError(
                f"the schedule must give one temperature per step, got {temps_in.shape}"
            )
        if not np.all(np.isfinite(temps_in)) or np.any(temps_in <= 0):
            raise ValueError("the schedule must give a finite temperature > 0 at every step")
        default_t = False
    eta_in = jnp.full((n,), float(step_size) if step_size is not None else -1.0, jnp.float32)

    config = (
        n,
        num_steps,
        float(target_acceptance),
        float(adapt_rate),
        record_every,
        prerelax_steps,
        relax_method,
        relax_steps,
        default_t,
    )
    pipeline = _cached_pipeline(energy_fn, cs, project, config)
    ok, carry, trace_e, best_x, best_e, temps, raw, viol = pipeline(
        key, x0, jnp.asarray(temps_in, jnp.float32), eta_in
    )
    if not bool(ok):
        raise ValueError("every initial state has a non-finite energy or gradient")
    temps = np.asarray(temps)

    feasible = viol <= 1e-6
    rank = jnp.where(feasible, raw, jnp.inf)
    rank = jnp.where(jnp.any(feasible), rank, best_e)
    rank = jnp.where(jnp.isnan(rank), jnp.inf, rank)
    b = jnp.argmin(rank)
    if target is not None:
        reached = feasible & (raw <= float(target) + float(target_tol))
    else:
        reached = jnp.zeros((n,), bool)
    if record_every is not None:
        n_rec = num_steps // record_every
        rec_t = jnp.asarray(
            temps[record_every - 1 : n_rec * record_every : record_every], jnp.float32
        )
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
    )


def _bc(mask, leaf):
    return mask.reshape(mask.shape + (1,) * (leaf.ndim - mask.ndim))


_CACHE: dict = {}
_CACHE_SIZE = 8


def _cached_pipeline(energy_fn, cs, project, config):
    """The compiled pipeline for (energy_fn, constraints, project, config), reused across
    calls with the same objects (so repeated runs skip compilation); uncached when a
    constraint is not hashable."""
    try:
        key = (energy_fn, cs, project, config)
        hash(key)
    except TypeError:
        key = None
    if key is not None and key in _CACHE:
        return _CACHE[key]
    penalised = _constraints.apply_constraints(energy_fn, cs)
    proj_c = _constraints.project_all(cs) if _constraints.has_projection(cs) else None
    if project is not None and proj_c is not None:
        proj = lambda x: project(proj_c(x))  # noqa: E731
    else:
        proj = project if project is not None else proj_c
    pipeline = _make_pipeline(
        penalised,
        energy_fn,
        proj,
        *config,
        lambda x, e: _constraints.total_violation(cs, x, e),
    )
    if key is not None:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = pipeline
    return pipeline


def _make_pipeline(
    penalised,
    energy_fn,
    proj,
    n,
    num_steps,
    target_acc,
    kappa,
    record_every,
    prerelax_steps,
    relax_method,
    relax_steps,
    default_t,
    violation_fn,
):
    """One jitted function: clash removal, T_0 and step sizes, annealing scan, relaxation."""
    run = _make_run(penalised, energy_fn, proj, n, num_steps, target_acc, kappa, record_every)
    eg = jax.vmap(lambda x: energy_and_grad(penalised, x))
    curv = jax.vmap(_relax.curvature_one(penalised))
    pre = jax.vmap(_relax.fire_one(penalised, proj, max(prerelax_steps, 1), 1e-5, 1e3))
    fire = jax.vmap(_relax.fire_one(penalised, proj, relax_steps, 1e-5, 10.0))

    @jax.jit
    def pipeline(key, x0, temps_in, eta_in):
        if proj is not None:
            x0 = jax.vmap(proj)(x0)
        e0, g_start = eg(x0)
        ok = jnp.any(jnp.isfinite(e0) & jax.vmap(_tree.all_finite)(g_start))
        if prerelax_steps:
            # First MD move dt^2 |F| = 1% of the RMS state scale (FIRE then adapts dt).
            dt = jnp.sqrt(0.01 * _rms(x0) / jnp.maximum(_gnorm(g_start), 1e-30))
            dt = jnp.where(jnp.isfinite(dt) & (dt > 0), dt, 1e-6)
            x0, _ = pre(x0, dt)
        e0, g0 = eg(x0)
        if default_t:
            dim = sum(int(np.prod(l.shape[1:])) for l in jax.tree.leaves(x0))
            temps = _start_temperature(e0, dim) * temps_in
        else:
            temps = temps_in
        eta0 = jnp.where(eta_in > 0, eta_in, _step_from_curvature(curv(x0), 1e-2))
        carry, trace_e = run(key, x0, e0, g0, temps, eta0)
        best_x, best_e = carry.best_x, carry.best_e
        if relax_method == "fire":
            rx, re = fire(best_x, jnp.sqrt(2.0 * jnp.exp(carry.log_eta)))
        elif relax_method == "lbfgs":
            rx, re = _relax.lbfgs_one_batch(penalised, proj, relax_steps)(best_x)
        if relax_method:
            better = re < best_e
            best_x = jax.tree.map(lambda a, b: jnp.where(_bc(better, a), a, b), rx, best_x)
            best_e = jnp.where(better, re, best_e)
        raw = jax.vmap(energy_fn)(best_x)
        viol = jax.vmap(violation_fn)(best_x, raw)
        return ok, carry, trace_e, best_x, best_e, temps, raw, viol

    return pipeline


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
    """The jitted annealing scan over all chains."""

    def chain_step(key, c: _Carry, temp):
        # One MALA step of one chain at temperature `temp` with its own step size.
        eta = jnp.exp(c.log_eta)
        k_noise, k_acc = jax.random.split(key)
        noise = _tree.normal_like(k_noise, c.x)
        prop = _tree.add_scaled(_tree.add_scaled(c.x, c.g, -eta), noise, jnp.sqrt(2.0 * eta * temp))
        if proj is not None:
            prop = proj(prop)
        e_new, g_new = energy_and_grad(penalised, prop)

        def log_q(x_to, x_from, g_from):
            diff = _tree.add_scaled(_tree.add_scaled(x_to, x_from, -1.0), g_from, eta)
            return -_tree.sq_norm(diff) / (4.0 * eta * temp)

        ok = jnp.isfinite(e_new) & _tree.all_finite(g_new)
        log_r = -(e_new - c.e) / temp + log_q(c.x, prop, g_new) - log_q(prop, c.x, c.g)
        log_r = jnp.where(ok & ~jnp.isnan(log_r), log_r, -jnp.inf)
        alpha = jnp.exp(jnp.minimum(log_r, 0.0))
        u = jax.random.uniform(k_acc)
        accept = jnp.log(u) < log_r
        x = _tree.select(accept, prop, c.x)
        e = jnp.where(accept, e_new, c.e)
        g = _tree.select(accept, g_new, c.g)
        log_eta = jnp.clip(
            c.log_eta + kappa * (alpha - target_acc), c.log_eta - 1.0, c.log_eta + 1.0
        )
        log_eta = jnp.clip(log_eta, -60.0, 20.0)
        improved = e < c.best_e
        best_x = _tree.select(improved, x, c.best_x)
        best_e = jnp.where(improved, e, c.best_e)
        return _Carry(x, e, g, log_eta, best_x, best_e, c.acc_sum + alpha)

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
