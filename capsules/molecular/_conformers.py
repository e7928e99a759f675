"""Many molecules x conformers, annealed and relaxed together in compiled calls that
every call with the same shapes reuses.

All molecules of one call are padded to one `Bucket` (the elementwise maximum of their
own) and laid out as a `ConformerGrid`: molecules padded to a count on the ladder 1, 2,
3, 4, 6, 8, 12, ... (copies of the first, never relaxed), every molecule's conformers to
one count on the ladder 8, 12, 16, 24, 32, 48, ... (copies of its first), conformers along
the last axis so one vectorised MMFF94 evaluation serves every item. The compiled
annealing and L-BFGS loop depend only on (bucket, molecules, conformers): a second call
of the same shape does not compile again. A large grid is relaxed in passes: after
`COMPACT_AFTER` iterations the conformers still running move to a smaller grid (shapes
from the same ladders), so the slowest conformers do not keep the whole batch running.
"""

from __future__ import annotations

import time
from typing import NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

import idf_jax as idf

from ._energy import MMFFEnergy, bucket_for, dummy_positions, merge_buckets
from ._grid import ConformerGrid, GridItem
from ._mmff import MMFFParameters
from ._relax import FULL_OPTIMIZATION_ITEMS, TRACES, compiled, relax_grid

__all__ = ["ConformerSet", "relax_conformers", "item_bucket", "molecule_bucket"]

COMPACT_AFTER = 100
"""L-BFGS iterations of a large grid before its still-running conformers are gathered
into a smaller one (`_relax_in_passes`)."""

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


def _relax_in_passes(energies, grid, x, active, relax_steps, gtol, passes=None):
    """L-BFGS on the grid's items: a large grid (>= FULL_OPTIMIZATION_ITEMS items)
    runs `COMPACT_AFTER` iterations, then the conformers still running are gathered
    into a smaller grid (molecules and conformers on the ladders, so only a few shapes
    ever compile) that continues from where they are with a fresh L-BFGS memory, and so
    on: the slow tail does not pay for the whole batch. Returns numpy (positions,
    energies, grad norms, iterations) of every item."""
    pos = np.asarray(x).copy()
    e = np.full(grid.items, np.inf)
    gn = np.full(grid.items, np.inf)
    steps = np.zeros(grid.items, np.int64)
    where = np.arange(grid.items)  # the item of the full grid each current item is
    left, size = relax_steps, grid.items
    while True:
        chunk = left
        if grid.items >= FULL_OPTIMIZATION_ITEMS and left > COMPACT_AFTER:
            chunk = COMPACT_AFTER
        t0, c0 = time.perf_counter(), time.process_time()
        res = relax_grid(grid, x, max_steps=chunk, gtol=gtol, active=active, batch_size=size)
        p, ei, gi, si = (np.asarray(v) for v in res)
        if passes is not None:
            passes.append(
                {
                    "molecules": grid.molecules,
                    "conformers": grid.conformers,
                    "running": int(active.sum()),
                    "iterations": int(si.max()),
                    "seconds": time.perf_counter() - t0,
                    "cpu_seconds": time.process_time() - c0,
                }
            )
        real = where[active]
        pos[real], e[real], gn[real] = p[active], ei[active], gi[active]
        steps[real] += si[active]
        left -= chunk
        running = active & (si >= chunk) & ~(gi < gtol)
        if left <= 0 or not running.any():
            return pos, e, gn, steps
        # the running items, grouped by molecule, in a smaller grid
        mol = np.arange(grid.items) // grid.conformers
        groups = [np.flatnonzero(running & (mol == m)) for m in range(grid.molecules)]
        groups = [(m, g) for m, g in enumerate(groups) if len(g)]
        per_mol = item_bucket(max(len(g) for _, g in groups))
        num_real = len(groups)
        groups += [groups[0]] * (molecule_bucket(num_real) - num_real)  # never relaxed
        sel, act = [], []
        for k, (_, g) in enumerate(groups):
            sel.append(np.concatenate([g, np.full(per_mol - len(g), g[0])]))
            act.append((np.arange(per_mol) < len(g)) & (k < num_real))
        sel, act = np.concatenate(sel), np.concatenate(act)
        energies = [energies[m] for m, _ in groups]
        grid = ConformerGrid.from_energies(energies, per_mol)
        x = jnp.asarray(p[sel])
        where, active = where[sel], act


def relax_conformers(
    params: list[MMFFParameters],
    conformers: list[np.ndarray],
    *,
    key: PRNGKeyArray,
    temperatures: np.ndarray | None = None,
    step_size: float = 2e-4,
    relax_steps: int = 2000,
    gtol: float = 1e-5,
    timings: dict | None = None,
) -> list[ConformerSet]:
    """Anneal (when `temperatures`, one kT in kcal/mol per MALA step, is given) and then
    relax with L-BFGS every conformer of every molecule, in float64.

    params[i] is molecule i's MMFF94 parameters, conformers[i] its (C_i, n_i, 3)
    starting coordinates in angstrom. `timings`, when given, receives the seconds spent
    annealing and relaxing (wall clock, and CPU time of this process as `*_cpu`).
    """
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
        pos, e, gn, steps = _relax_in_passes(energies, grid, x, active, relax_steps, gtol, passes)
    if timings is not None:
        timings["anneal"] = t1 - t0
        timings["relax"] = time.perf_counter() - t1
        timings["anneal_cpu"] = c1 - c0
        timings["relax_cpu"] = time.process_time() - c1
        timings["relax_iterations_mean"] = float(np.mean(steps[active]))
        timings["relax_iterations_max"] = int(np.max(steps[active]))
        timings["relax_items"] = int(len(rows))
        timings["relax_passes"] = passes
    out = []
    for m, (p, c) in enumerate(zip(params, arrays)):
        sl = slice(m * per_mol, m * per_mol + len(c))
        out.append(ConformerSet(pos[sl, : p.num_atoms], e[sl], gn[sl], annealed[sl], acc[sl]))
    return out
