"""Many molecules x conformers, annealed and relaxed together in compiled calls that
every call with the same shapes reuses.

All molecules of one call are padded to one `Bucket` (the elementwise maximum of their
own) and laid out as a `ConformerGrid`: molecules padded to a count on the ladder 1, 2,
3, 4, 6, 8, 12, ... (copies of the first, never relaxed), every molecule's conformers to
one count on the ladder 8, 12, 16, 24, 32, 48, ... (copies of its first), conformers along
the last axis so one vectorised MMFF94 evaluation serves every item. The compiled
annealing and L-BFGS loop depend only on (bucket, molecules, conformers): a second call
of the same shape does not compile again. The L-BFGS runs on a `PackedGrid`
(`_packed`: the molecules' own term tables packed densely, padded once to a size
ladder), first in float32 to |grad| < `FLOAT32_GTOL` (at most `FLOAT32_MAX_ITER`
iterations per conformer), then in float64 to the tolerance, the L-BFGS memory carried
over; a large grid is relaxed in passes: when fewer than
`COMPACT_BELOW` of its items still run they move, with their memory, to a smaller
packed grid (shapes from the same ladders), so the slowest conformers do not keep the
whole batch running. `method="bfgs"` runs the same stages with a dense inverse Hessian
per conformer instead of the L-BFGS memory (`_dense_bfgs`), `"lbfgs_bfgs"` L-BFGS in
float32 and the dense BFGS in float64 (see benchmarks/README.md, "Dense per-conformer
BFGS": the same minima, not faster; L-BFGS stays the default).
"""

from __future__ import annotations

import time
from typing import NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

import idf_jax as idf
from idf_jax._checks import ArgumentError

from ._dense_bfgs import bfgs_from_lbfgs, bfgs_resume, bfgs_start, packed_bfgs, slot_map
from ._energy import MMFFEnergy, bucket_for, dummy_positions, merge_buckets
from ._grid import ConformerGrid, GridItem
from ._mmff import MMFFParameters
from ._packed import (
    MoleculeTables,
    PackedLayout,
    _cost,
    cast_state,
    compact,
    molecule_tables,
    normalise,
    pack,
    packed_lbfgs,
    packed_resume,
    packed_sizes,
    packed_start,
    restore,
    sizes_cost,
    to_packed,
)
from ._relax import FULL_OPTIMIZATION_ITEMS, MAX_STEP, TRACES, compiled

__all__ = ["ConformerSet", "relax_conformers", "item_bucket", "molecule_bucket"]

TARGET_ACCEPTANCE = 0.57
ADAPT_RATE = 0.05


class ConformerSet(NamedTuple):
    """One molecule's conformers after annealing and relaxation (float64, unpadded).

    positions: (C, n, 3) angstrom; energies: (C,) kcal/mol; grad_norms: (C,) |grad E|
    in kcal/mol/A; annealed_energies: (C,) lowest energy each chain visited while
    annealing (the relaxation starts there; NaN without annealing); acceptance_rate:
    (C,) mean MALA acceptance (NaN without annealing).
    """

    positions: np.ndarray
    energies: np.ndarray
    grad_norms: np.ndarray
    annealed_energies: np.ndarray
    acceptance_rate: np.ndarray


def molecule_bucket(count: int) -> int:
    """Padded molecule count: the smallest of 1, 2, 3, 4, 6, 8, 12, 16, ... >= count."""
    n = 1
    while n < count:
        n = n + 1 if n < 2 else (n * 3 // 2 if n & (n - 1) == 0 else n * 4 // 3)
    return n


def item_bucket(count: int) -> int:
    """Padded item count: the smallest of 8, 12, 16, 24, 32, 48, 64, ... >= count."""
    n = 8
    while n < count:
        n = n * 3 // 2 if n & (n - 1) == 0 else n * 4 // 3
    return n


def _anneal_each(grid: ConformerGrid, key, x, temps, eta0):
    """Annealed MALA (`idf.mala` at T_i, each chain's step size steered to 0.57
    acceptance) for every item of the grid; returns each chain's lowest-energy state,
    its energy and the mean acceptance. Padded atoms are put back where they started."""
    TRACES["anneal_each"] += 1
    atom_mask = jnp.asarray(grid.atom_mask)

    def one(item, k, x0, eta):
        energy = GridItem(grid, item)
        state = idf.mala(energy, cast(float, eta), cast(float, temps[0])).init(x0)

        def body(carry, inp):
            state, log_eta, best_x, best_e, acc = carry
            k_i, t_i = inp
            # mala annotates step_size / temperature as float; traced values are valid
            eta_i, temp_i = cast(float, jnp.exp(log_eta)), cast(float, t_i)
            state, info = idf.mala(energy, eta_i, temp_i).step(k_i, state)
            rate = info.acceptance_rate
            log_eta = log_eta + ADAPT_RATE * (rate - TARGET_ACCEPTANCE)
            better = state.energy < best_e
            best_x = jnp.where(better, state.position, best_x)
            best_e = jnp.where(better, state.energy, best_e)
            return (state, log_eta, best_x, best_e, acc + rate), None

        init = (state, jnp.log(eta), x0, state.energy, jnp.zeros((), x0.dtype))
        keys = jax.random.split(k, temps.shape[0])
        (_, _, best_x, best_e, acc), _ = jax.lax.scan(body, init, (keys, temps))
        real = atom_mask[item // grid.conformers]
        best_x = jnp.where(real[:, None], best_x, x0)
        return best_x, best_e, acc / temps.shape[0]

    keys = jax.random.split(key, x.shape[0])
    return jax.vmap(one)(jnp.arange(x.shape[0]), keys, x, eta0)


def _anneal(
    grid: ConformerGrid,
    key: PRNGKeyArray,
    x: Float[Array, "items atoms 3"],
    temperatures: np.ndarray,
    step_size: float,
) -> tuple[Array, Array, Array]:
    temps = jnp.asarray(temperatures, x.dtype)
    eta = jnp.full((x.shape[0],), step_size, x.dtype)
    return compiled(_anneal_each, x.shape[0])(grid, key, x, temps, eta)


def relax_conformers(
    params: list[MMFFParameters],
    conformers: list[np.ndarray],
    *,
    key: PRNGKeyArray,
    temperatures: np.ndarray | None = None,
    step_size: float = 2e-4,
    relax_steps: int = 2000,
    gtol: float = 1e-5,
    float32_max_iter: int | None = None,
    float32_gtol: float | None = None,
    memory: int | None = None,
    method: str = "lbfgs",
    timings: dict | None = None,
) -> list[ConformerSet]:
    """Anneal (when `temperatures`, one kT in kcal/mol per MALA step, is given) and then
    relax with L-BFGS every conformer of every molecule, in float64.

    params[i] is molecule i's MMFF94 parameters, conformers[i] its (C_i, n_i, 3)
    starting coordinates in angstrom. `timings`, when given, receives the seconds spent
    annealing and relaxing (wall clock, and CPU time of this process as `*_cpu`).
    `float32_max_iter`: L-BFGS iterations a conformer may spend in the float32 passes
    before it moves on to the float64 stage with its memory (default `FLOAT32_MAX_ITER`;
    at most `relax_steps`, which bounds both stages together). `float32_gtol`: the
    |grad| (kcal/mol/A) the float32 stage relaxes to (default `FLOAT32_GTOL`; never
    below gtol). `memory`: L-BFGS pairs kept per conformer (default `MEMORY`; a shape:
    each value compiles once). `method`: "lbfgs" (the default), "bfgs", a dense
    inverse Hessian per conformer (`_dense_bfgs`: (3 n)^2 entries, n the largest
    molecule's atoms rounded up to even; `memory` unused), with the same line search,
    tolerances and float32 -> float64 stages, or "lbfgs_bfgs": L-BFGS in the float32
    stage, the dense BFGS in the float64 polish (its matrix built from the L-BFGS
    memory).
    """
    if method not in METHODS:
        raise ArgumentError("method", f"must be one of {METHODS}, got {method!r}")
    f32_cap = FLOAT32_MAX_ITER if float32_max_iter is None else float32_max_iter
    if isinstance(f32_cap, bool) or not isinstance(f32_cap, int | np.integer) or f32_cap < 0:
        raise ArgumentError(
            "float32_max_iter", f"must be a non-negative integer, got {float32_max_iter!r}"
        )
    mem = MEMORY if memory is None else memory
    if isinstance(mem, bool) or not isinstance(mem, int | np.integer) or mem < 1:
        raise ArgumentError("memory", f"must be a positive integer, got {memory!r}")
    f32_gtol = FLOAT32_GTOL if float32_gtol is None else float32_gtol
    if not (isinstance(f32_gtol, float | int) and np.isfinite(f32_gtol) and f32_gtol > 0):
        raise ArgumentError("float32_gtol", f"must be a positive number, got {float32_gtol!r}")
    if len(params) != len(conformers) or not params:
        raise ValueError("need one conformer array per molecule (and at least one molecule)")
    bucket = merge_buckets([bucket_for(p) for p in params])
    arrays = []
    for p, c in zip(params, conformers):
        c = np.asarray(c, np.float64)
        if c.ndim != 3 or c.shape[1:] != (p.num_atoms, 3) or c.shape[0] < 1:
            raise ValueError(f"conformers of {p.smiles!r} must be shaped (C, {p.num_atoms}, 3)")
        arrays.append(c)
    # the grid: molecules padded to a count on the ladder (copies of the first, never
    # relaxed), every molecule's conformers to one count (copies of its first)
    counts = [len(c) for c in arrays]
    per_mol = item_bucket(max(counts))
    num_mols = molecule_bucket(len(params))
    energies = [MMFFEnergy.from_parameters(p, bucket) for p in params]
    energies += [energies[0]] * (num_mols - len(params))
    grid = ConformerGrid.from_energies(energies, per_mol)
    rows, active = [], []
    for m in range(num_mols):
        c = arrays[m] if m < len(params) else arrays[0]
        p = params[m] if m < len(params) else params[0]
        n = counts[m] if m < len(params) else 0
        pad = dummy_positions(bucket.atoms - p.num_atoms)
        take = np.concatenate([np.arange(len(c)), np.zeros(per_mol - len(c), np.int64)])
        rows += [np.concatenate([c[i], pad]) for i in take]
        active += [j < n for j in range(per_mol)]
    x0 = np.stack(rows)
    active = np.asarray(active)
    nan = np.full(len(rows), np.nan)
    t0, c0 = time.perf_counter(), time.process_time()
    with jax.enable_x64(True):
        x = jnp.asarray(x0, jnp.float64)
        annealed, acc = nan, nan
        if temperatures is not None and len(temperatures) > 0:
            x, e_ann, rate = _anneal(grid, key, x, np.asarray(temperatures), step_size)
            annealed, acc = np.asarray(e_ann), np.asarray(rate)
        t1, c1 = time.perf_counter(), time.process_time()
        passes: list[dict] = []
        stages: dict = {}
        cache: dict[int, MoleculeTables] = {}
        full = pack(params, list(range(len(params))), num_mols, per_mol, cache)
        valid = active.reshape(num_mols, per_mol)
        xs = np.asarray(x).reshape(num_mols, per_mol, bucket.atoms, 3)
        st = _relax_packed(
            params,
            full,
            xs,
            valid,
            relax_steps,
            gtol,
            passes,
            cache,
            int(f32_cap),
            stages,
            float(f32_gtol),
            int(mem),
            method,
        )
    pos = np.zeros((num_mols, per_mol, bucket.atoms, 3))
    g2 = np.zeros((num_mols, per_mol))
    for m, (o, n) in enumerate(zip(full.offset, full.natoms)):
        pos[m, :, :n] = np.transpose(st["z"][o : o + n], (2, 0, 1))
        g2[m] = np.sum(st["g"][o : o + n] ** 2, axis=(0, 1))
    pos = pos.reshape(num_mols * per_mol, bucket.atoms, 3)
    e = np.where(valid, st["e"], np.inf).reshape(-1)
    gn = np.where(valid, np.sqrt(g2), np.inf).reshape(-1)
    steps = st["it"].reshape(-1)
    if timings is not None:
        timings["anneal"] = t1 - t0
        timings["relax"] = time.perf_counter() - t1
        timings["anneal_cpu"] = c1 - c0
        timings["relax_cpu"] = time.process_time() - c1
        timings["relax_iterations_mean"] = float(np.mean(steps[active]))
        timings["relax_iterations_max"] = int(np.max(steps[active]))
        timings["relax_items"] = int(len(rows))
        timings["relax_passes"] = passes
        it32 = stages["float32_iterations"].reshape(-1)[active]
        timings["relax_float32_iterations_mean"] = float(np.mean(it32))
        timings["relax_float32_iterations_max"] = int(np.max(it32))
        timings["relax_float32_capped"] = int(np.sum(stages["float32_capped"].reshape(-1)[active]))
        it64 = steps[active] - it32
        timings["relax_float64_iterations_mean"] = float(np.mean(it64))
        timings["relax_float64_iterations_quantiles"] = [
            int(v) for v in np.quantile(it64, [0.5, 0.9, 0.99, 1.0], method="higher")
        ]
    out = []
    for m, (p, c) in enumerate(zip(params, arrays)):
        sl = slice(m * per_mol, m * per_mol + len(c))
        out.append(ConformerSet(pos[sl, : p.num_atoms], e[sl], gn[sl], annealed[sl], acc[sl]))
    return out


FLOAT32_GTOL = 1e-3
"""|grad E| (kcal/mol/A) the float32 passes relax to before the float64 polish."""

FLOAT32_MAX_ITER = 80
"""Default cap on a conformer's float32 L-BFGS iterations: one that has not reached
`FLOAT32_GTOL` by then continues in the float64 stage (with its memory) instead of
keeping a float32 tail pass running (see benchmarks/README.md, "Conformers")."""

MEMORY = 16
"""Default L-BFGS memory (pairs kept per conformer) of `relax_conformers`: 16 takes
~30 % fewer iterations than 8 on small molecules (3n <= 36 coordinates), the float64
stage ~2.5x fewer (see benchmarks/README.md, "L-BFGS memory 16")."""

METHODS = ("lbfgs", "bfgs", "lbfgs_bfgs")
"""The relaxations `relax_conformers` offers: L-BFGS, a dense BFGS per conformer, or
L-BFGS in the float32 stage and a dense BFGS (its matrix built from the L-BFGS memory)
in the float64 polish."""

COMPACT_BELOW = 0.4
"""A pass on a large grid stops when fewer than this fraction of its items still run;
they continue in a smaller packed grid when that is cheaper (`_relax_packed`)."""


def _packed_start(grid, z0, budget, gtol, memory):
    TRACES["packed_start"] += 1
    return packed_start(grid, z0, budget, gtol, memory)


def _packed_resume(grid, c, gtol):
    TRACES["packed_resume"] += 1
    return packed_resume(grid, c, gtol)


def _packed_run(grid, c, gtol, max_step, stop_below):
    TRACES["packed_run"] += 1
    return packed_lbfgs(grid, c, gtol, max_step, stop_below)


def _bfgs_start(grid, smap, z0, budget, gtol):
    TRACES["bfgs_start"] += 1
    return bfgs_start(grid, smap, z0, budget, gtol)


def _bfgs_resume(grid, smap, c, gtol):
    TRACES["bfgs_resume"] += 1
    return bfgs_resume(grid, smap, c, gtol)


def _bfgs_handover(grid, smap, c, gtol):
    TRACES["bfgs_handover"] += 1
    return bfgs_from_lbfgs(grid, smap, c, gtol)


def _bfgs_run(grid, smap, c, gtol, max_step, stop_below):
    TRACES["bfgs_run"] += 1
    return packed_bfgs(grid, smap, c, gtol, max_step, stop_below)


def _sub_layout(params, full: PackedLayout, running: np.ndarray, cache: dict | None = None):
    """The cheapest packed layout (`_cost`) of the running items of `full`: C' columns
    from the conformer ladder, each molecule in as many slots as its running items
    need (slots on the molecule ladder). Returns (layout, src, select, valid): new slot
    k holds columns select[k] of slot src[k] of `full`, valid[k] False for padding.
    cache: `pack`'s molecule tables (index -> `MoleculeTables`), filled as needed."""
    cache = {} if cache is None else cache
    best = None
    cols_of = {m: np.flatnonzero(running[m]) for m in range(full.grid.molecules)}
    cols_of = {m: c for m, c in cols_of.items() if len(c)}
    for m in cols_of:
        i = int(full.slot_mol[m])
        if i not in cache:
            cache[i] = molecule_tables(params[i])
    width = 8
    while True:
        src, chunks = [], []
        for m, c in cols_of.items():
            for start in range(0, len(c), width):
                src.append(m)
                chunks.append(c[start : start + width])
        slots = molecule_bucket(len(src))
        tables: list[MoleculeTables] = [cache[int(full.slot_mol[m])] for m in src]
        atoms, _, rows = packed_sizes(tables, width)
        cost = sizes_cost(slots, atoms, width, rows)
        if best is None or cost < best[0]:
            best = (cost, src, chunks, slots, width)
        if width >= full.grid.conformers:
            break
        width = item_bucket(width + 1)
    _, src, chunks, slots, width = best
    layout = pack(params, [int(full.slot_mol[m]) for m in src], slots, width, cache)
    select = np.zeros((slots, width), np.int64)
    valid = np.zeros((slots, width), bool)
    for k, c in enumerate(chunks):
        select[k] = np.concatenate([c, np.full(width - len(c), c[0])])
        valid[k, : len(c)] = True
    src_a = np.array(src + [-1] * (slots - len(src)))
    return layout, src_a, select, valid


def _relax_packed(
    params,
    full: PackedLayout,
    x,
    valid,
    relax_steps,
    gtol,
    passes=None,
    cache=None,
    float32_max_iter=None,
    stages=None,
    float32_gtol=None,
    memory=None,
    method="lbfgs",
):
    """L-BFGS of every valid item of the packed layout `full` from x (slots, C, n, 3):
    float32 to |grad| < float32_gtol (default FLOAT32_GTOL; at most `float32_max_iter`
    iterations per item, default `FLOAT32_MAX_ITER`), then float64 to gtol (relax_steps
    iterations per item in all), the memory kept throughout. `stages`, when given,
    receives the per-item float32 iterations ("float32_iterations") and which items
    the cap stopped ("float32_capped"). method: "lbfgs" (`memory` pairs), "bfgs" (a
    dense inverse Hessian per item, `_dense_bfgs`) or "lbfgs_bfgs" (L-BFGS in float32,
    then the dense BFGS from the L-BFGS memory in float64).
    A pass on a large grid (>= FULL_OPTIMIZATION_ITEMS items) stops when fewer than
    COMPACT_BELOW of its items run; those continue in a smaller packed grid (written
    back into the full state after each pass) when its cost is below 0.7x. Returns the
    full state (host numpy)."""
    grid = full.grid
    items = grid.molecules * grid.conformers
    cap = FLOAT32_MAX_ITER if float32_max_iter is None else int(float32_max_iter)
    budget = np.where(valid, relax_steps, 0).astype(np.int32)
    budget32 = np.minimum(budget, cap).astype(np.int32)
    master: dict | None = None
    cache = {} if cache is None else cache
    tol32 = max(gtol, FLOAT32_GTOL if float32_gtol is None else float(float32_gtol))
    for dtype, tol in ((jnp.float32, tol32), (jnp.float64, gtol)):
        tol_a = jnp.asarray(tol, dtype)
        handover = method == "lbfgs_bfgs" and dtype == jnp.float64
        dense = method == "bfgs" or handover
        if master is None:
            z0 = jnp.asarray(to_packed(full, np.asarray(x)), dtype)
            mem = MEMORY if memory is None else int(memory)
            b32 = jnp.asarray(budget32)
            if dense:
                c = compiled(_bfgs_start, items)(grid, slot_map(full), z0, b32, tol_a)
            else:
                c = compiled(_packed_start, items)(grid, z0, b32, tol_a, mem)
        else:
            # the float32 budget spent: every item continues to the whole budget
            capped = valid & ~master["done"] & (master["it"] >= budget32)
            if stages is not None:
                stages["float32_iterations"] = master["it"].copy()
                stages["float32_capped"] = capped
            master["budget"] = budget
            cm = cast_state(master, dtype)
            if handover:
                c = compiled(_bfgs_handover, items)(grid, slot_map(full), cm, tol_a)
            elif dense:
                c = compiled(_bfgs_resume, items)(grid, slot_map(full), cm, tol_a)
            else:
                c = compiled(_packed_resume, items)(grid, cm, tol_a)
        master = normalise(c)
        layout, keep = full, valid
        src = select = np.zeros((0, 0), np.int64)  # set when the layout is not `full`
        large = items >= FULL_OPTIMIZATION_ITEMS
        final = not large
        first = True
        while True:
            running = ~master["done"] & (master["it"] < master["budget"]) & valid
            if not running.any():
                break
            if not first:
                cand = _sub_layout(params, full, running, cache)
                final = not _cost(cand[0]) < 0.7 * _cost(layout)
                if not final:
                    layout, src, select, keep = cand
            first = False
            c = master if layout is full else compact(full, layout, master, src, select, keep)
            g = layout.grid
            stop = 0 if final else int(COMPACT_BELOW * running.sum())
            t0, c0 = time.perf_counter(), time.process_time()
            args = (cast_state(c, dtype), tol_a, jnp.asarray(MAX_STEP, dtype), jnp.int32(stop))
            if dense:
                c, k = compiled(_bfgs_run, items)(g, slot_map(layout), *args)
            else:
                c, k = compiled(_packed_run, items)(g, *args)
            c = normalise(c)
            if layout is full:
                master = c
            else:
                restore(full, layout, master, c, src, select, keep)
            if passes is not None:
                passes.append(
                    {
                        "dtype": jnp.dtype(dtype).name,
                        "molecules": g.molecules,
                        "conformers": g.conformers,
                        "atoms": g.atoms,
                        "running": int(running.sum()),
                        "iterations": int(k),
                        "seconds": time.perf_counter() - t0,
                        "cpu_seconds": time.process_time() - c0,
                    }
                )
            if final:
                break
    assert master is not None
    return master
