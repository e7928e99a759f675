"""Many molecules x conformers packed densely, and an L-BFGS written on that layout.

`PackedGrid`: the molecules' own (unpadded) term tables one after the other, atom
indices offset by each molecule's first atom in one packed atom list; the atoms and
every table padded once, at the end, to a size on `size_ladder` (8, 12, 16, 24, 32,
then steps of a quarter octave: 40, 48, 56, 64, 80, 96, ...), so a small molecule
occupies its own atoms and rows, not a bucket's. Conformers lie along the last axis:
positions (atoms, 3, C). One gather reads every term's atoms for all conformers, every
term is computed on (rows, C) arrays, each molecule's energy is a (molecules, rows)
0/1 matrix times the row energies, and the gradient is one scatter-add. The energy of
item (m, c) is exactly `MMFFEnergy`'s (the same term functions, `_terms`).

`packed_lbfgs`: the batched L-BFGS of `idf_jax.thermo.local_min` (one evaluation per
iteration, Armijo acceptance with the rounding clause, shrinking on rejection, step
cap, reset after 8 and give-up after 20 rejections) with every state array on the
packed layout: per-item scalars are (molecules, C), per-item dot products one
(molecules, atoms) matrix product, the memory (memory, atoms, 3, C) newest first, the
two-loop recursion vectorised across all items. One `while_loop` runs until every item
is done, or its budget is spent, or (`stop_below`) fewer items than asked still run.
The state is returned whole, so a run can continue in a smaller grid or in another
dtype with its memory (`compact`, `cast_state`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from ._energy import MMFFEnergy, exact_bucket
from ._mmff import MMFFParameters
from ._terms import _FNS, TABLE_PARAMS, TABLE_WIDTH, TABLES, TermTable, _gather_rows

__all__ = [
    "PackedGrid",
    "PackedLayout",
    "pack",
    "MoleculeTables",
    "molecule_tables",
    "packed_sizes",
    "size_ladder",
    "packed_start",
    "packed_resume",
    "normalise",
    "restore",
    "to_packed",
    "packed_lbfgs",
    "cast_state",
    "compact",
    "ROW_KEYS",
    "ITEM_KEYS",
    "SLOT_KEYS",
    "slot_atoms",
]

_C1 = 1e-4
_RESET_AFTER = 8
_GIVE_UP_AFTER = 20
_PAD_VALUE = {"r_star": 1.0, "theta0": 90.0}


def size_ladder(count: int) -> int:
    """Padded size of a packed table or atom list: the smallest of 8, 12, 16, 24, 32 and
    then quarter-octave steps (40, 48, 56, 64, 80, 96, 112, 128, 160, ...) >= count."""
    n = 8
    while n < count:
        if n < 32:
            n = n * 3 // 2 if n & (n - 1) == 0 else n * 4 // 3
        else:
            n += 1 << (n.bit_length() - 3)
    return n


class PackedGrid(eqx.Module):
    """MMFF94 energies of `molecules` packed molecules x `conformers` conformers.

    tables: the packed term tables (padded rows masked); row_mol: table -> (molecules,
    rows) 0/1 matrix of each row's molecule; pair_dd: (pair rows,) the distance-dependent
    dielectric flag of each pair row's molecule; atom_mol: (molecules, atoms) 0/1 matrix
    of each packed atom's molecule (padded atoms: none); atom_slot: (atoms,) each atom's
    molecule slot (padded atoms: `molecules`, out of range)."""

    tables: dict[str, TermTable]
    row_mol: dict[str, Float[ArrayLike, "molecules rows"]]
    pair_dd: Bool[ArrayLike, " rows"]
    atom_mol: Float[ArrayLike, "molecules atoms"]
    atom_slot: Int[ArrayLike, " atoms"]
    molecules: int = eqx.field(static=True)
    conformers: int = eqx.field(static=True)
    atoms: int = eqx.field(static=True)

    def energies(self, x: Float[Array, "atoms 3 conf"]) -> Float[Array, "molecules conf"]:
        """(molecules, C) energies (kcal/mol) at packed positions x (angstrom)."""
        dd = jnp.asarray(self.pair_dd, bool)[:, None]
        rows = _gather_rows(x, self.tables)
        total = jnp.zeros((self.molecules, x.shape[-1]), x.dtype)
        for name in TABLES:
            r = [rows[(name, slot)] for slot in range(TABLE_WIDTH[name])]
            mask = jnp.asarray(self.tables[name].mask)[:, None]
            parts = [
                jnp.where(mask, e, 0.0)
                for e in _FNS[name](r, self.tables[name], dd, x.dtype, 1).values()
            ]
            e_row = parts[0]
            for e in parts[1:]:
                e_row = e_row + e
            total = total + jnp.asarray(self.row_mol[name], x.dtype) @ e_row
        return total

    def value_and_grad(
        self, x: Float[Array, "atoms 3 conf"]
    ) -> tuple[Float[Array, "molecules conf"], Float[Array, "atoms 3 conf"]]:
        """Energies of every item and their gradients (items are independent: the
        gradient of their sum is every item's own)."""
        e, vjp = jax.vjp(self.energies, x)
        (g,) = vjp(jnp.ones_like(e))
        return e, g

    def dot(self, u: Array, v: Array) -> Array:
        """Per-item dot products of two (atoms, 3, C) arrays: (molecules, C)."""
        return jnp.asarray(self.atom_mol, u.dtype) @ jnp.sum(u * v, axis=1)

    def dots(self, *pairs: tuple[Array, Array]) -> tuple[Array, ...]:
        """Several per-item dot products in one matrix product."""
        k = len(pairs)
        sums = jnp.stack([jnp.sum(u * v, axis=1) for u, v in pairs], axis=-1)
        out = jnp.asarray(self.atom_mol, sums.dtype) @ sums.reshape(self.atoms, -1)
        out = out.reshape(self.molecules, -1, k)
        return tuple(out[..., i] for i in range(k))

    def spread(self, s: Array) -> Array:
        """(molecules, C) per-item values at every packed atom: (atoms, 1, C) (0 at
        padded atoms)."""
        return (jnp.asarray(self.atom_mol, s.dtype).T @ s)[:, None, :]

    def item_max(self, v: Array) -> Array:
        """Per-item maximum of a non-negative (atoms, 3, C) array: (molecules, C)."""
        return jax.ops.segment_max(
            jnp.max(v, axis=1),
            jnp.asarray(self.atom_slot),
            num_segments=self.molecules,
            indices_are_sorted=True,
        )


class PackedLayout(NamedTuple):
    """Host-side description of a packed grid: slot_mol: (slots,) the molecule (index
    into the caller's list) of each slot, -1 for padded slots; offset, natoms: (slots,)
    each slot's first packed atom and atom count."""

    grid: PackedGrid
    slot_mol: np.ndarray
    offset: np.ndarray
    natoms: np.ndarray


class MoleculeTables(NamedTuple):
    """One molecule's own (unpadded) term tables as host numpy, for `pack`: natoms;
    tables: name -> (index (rows, width), params name -> (rows, ...))."""

    natoms: int
    tables: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]


def molecule_tables(p: MMFFParameters) -> MoleculeTables:
    """The term tables `pack` concatenates, of one molecule (its exact bucket)."""
    e = MMFFEnergy.from_parameters(p, exact_bucket(p))
    tables = {}
    for name in TABLES:
        t = e.tables[name]
        index = np.asarray(t.index).reshape(-1, TABLE_WIDTH[name])
        tables[name] = (index, {k: np.asarray(t.params[k]) for k in TABLE_PARAMS[name]})
    return MoleculeTables(int(p.num_atoms), tables)


def packed_sizes(tables: Sequence[MoleculeTables], conformers: int) -> tuple[int, int, dict]:
    """(atoms, conformers, name -> rows) of the packed grid of these molecules' tables
    (the padded sizes `pack` gives, without building it)."""
    atoms = size_ladder(sum(t.natoms for t in tables))
    rows = {n: size_ladder(sum(len(t.tables[n][0]) for t in tables)) for n in TABLES}
    return atoms, int(conformers), rows


def pack(
    params: Sequence[MMFFParameters],
    molecules: Sequence[int],
    slots: int,
    conformers: int,
    cache: dict[int, MoleculeTables] | None = None,
) -> PackedLayout:
    """The packed grid of molecules `params[i] for i in molecules` in `slots` molecule
    slots (>= len(molecules); the rest empty) x `conformers` conformers. cache: index ->
    `molecule_tables(params[index])`, filled as needed (reuse it across calls on the
    same `params`)."""
    if not molecules or slots < len(molecules):
        raise ValueError("a packed grid needs at least one molecule and enough slots")
    cache = {} if cache is None else cache
    for i in molecules:
        if i not in cache:
            cache[i] = molecule_tables(params[i])
    mols = [cache[i] for i in molecules]
    natoms = np.array([t.natoms for t in mols] + [0] * (slots - len(molecules)))
    offset = np.concatenate([[0], np.cumsum(natoms)[:-1]]).astype(np.int64)
    atoms = size_ladder(int(natoms.sum()))
    tables, row_mol = {}, {}
    for name in TABLES:
        parts = [t.tables[name] for t in mols]
        counts = [len(ix) for ix, _ in parts]
        size = size_ladder(sum(counts))
        missing = size - sum(counts)
        width = TABLE_WIDTH[name]
        index = np.concatenate(
            [ix + offset[m] for m, (ix, _) in enumerate(parts)]
            + [np.zeros((missing, width), np.int64)]
        ).astype(np.int32)
        params_: dict[str, ArrayLike] = {}
        for key in TABLE_PARAMS[name]:
            vals = [pr[key] for _, pr in parts]
            tail = vals[0].shape[1:]
            fill = np.full((missing, *tail), _PAD_VALUE.get(key, 0), vals[0].dtype)
            params_[key] = np.concatenate([*vals, fill])
        mask = np.arange(size) < sum(counts)
        tables[name] = TermTable(index=index, mask=mask, params=params_)
        owner = np.repeat(np.arange(len(counts) + 1), [*counts, missing])
        owner[sum(counts) :] = -1
        row_mol[name] = (owner[None, :] == np.arange(slots)[:, None]).astype(np.float64)
    dd_mol = np.array(
        [bool(params[i].distance_dielectric) for i in molecules]
        + [False] * (slots - len(molecules))
    )
    pair_owner = np.argmax(row_mol["pair"], axis=0)
    pair_dd = dd_mol[pair_owner] & tables["pair"].mask
    slot = np.full(atoms, slots, np.int32)
    slot[: int(natoms.sum())] = np.repeat(np.arange(slots), natoms)
    atom_mol = (slot[None, :] == np.arange(slots)[:, None]).astype(np.float64)
    grid = PackedGrid(tables, row_mol, pair_dd, atom_mol, slot, slots, int(conformers), atoms)
    slot_mol = np.array(list(molecules) + [-1] * (slots - len(molecules)))
    return PackedLayout(grid, slot_mol, offset, natoms)


def to_packed(layout: PackedLayout, x: np.ndarray) -> np.ndarray:
    """(slots, C, n_max, 3) per-slot positions (first natoms atoms used) -> (atoms, 3, C)."""
    out = np.zeros((layout.grid.atoms, 3, layout.grid.conformers), x.dtype)
    for m, (o, n) in enumerate(zip(layout.offset, layout.natoms)):
        out[o : o + n] = np.transpose(x[m, :, :n], (1, 2, 0))
    return out


# ---------------------------------------------------------------------------------------
# L-BFGS on the packed layout

ROW_KEYS = ("z", "g", "d")
"""State arrays shaped (atoms, 3, C)."""
MEM_ROW_KEYS = ("S", "Y")
"""(memory, atoms, 3, C): a ring buffer, slot `head` written next."""
ITEM_KEYS = ("e", "alpha", "gamma", "fails", "it", "done", "budget")
"""(molecules, C)."""
MEM_ITEM_KEYS = ("rho",)
"""(memory, molecules, C): 1 / s.y of each stored pair, 0 for a slot the item has no
pair in (a rejected or curvature-failing step, or a cleared memory)."""
SLOT_KEYS = ("H",)
"""(molecules, C, K, K): the dense BFGS state's per-item inverse Hessians
(`_dense_bfgs`), K = 3 `slot_atoms(layout)`, each molecule's 3 n first."""


def slot_atoms(layout: PackedLayout) -> int:
    """Atoms per slot of the dense BFGS matrices of a layout (`_dense_bfgs`): its
    largest molecule's atom count rounded up to an even number up to 16, then on the
    size ladder (24, 32, 40, ...): the matrices' cost grows with its square, so the
    steps are finer than the table ladder's."""
    n = int(np.max(layout.natoms))
    return max(2, n + n % 2) if n <= 16 else size_ladder(n)


def _two_loop(grid: PackedGrid, g, S, Y, rho, gamma, head):
    """-H g by the two-loop recursion over each item's stored pairs (newest first from
    slot head - 1); gamma: the initial Hessian scale s.y / y.y of the newest pair."""
    memory = S.shape[0]
    take = [(head - 1 - j) % memory for j in range(memory)]
    q = g
    a = []
    for j in range(memory):
        sj = jax.lax.dynamic_index_in_dim(S, take[j], 0, keepdims=False)
        yj = jax.lax.dynamic_index_in_dim(Y, take[j], 0, keepdims=False)
        rj = jax.lax.dynamic_index_in_dim(rho, take[j], 0, keepdims=False)
        aj = rj * grid.dot(sj, q)
        q = q - grid.spread(aj) * yj
        a.append((aj, sj, yj, rj))
    r = grid.spread(gamma) * q
    for aj, sj, yj, rj in reversed(a):
        b = rj * grid.dot(yj, r)
        r = r + grid.spread(aj - b) * sj
    return -r


def _direction(grid: PackedGrid, g, S, Y, rho, gamma, head):
    """The L-BFGS direction, or -grad (memory cleared) for items where it is not a
    descent direction: (d, rho, gamma)."""
    d = _two_loop(grid, g, S, Y, rho, gamma, head)
    dg, dd = grid.dots((d, g), (d, d))
    descent = (dg < 0) & jnp.isfinite(dd)
    d = jnp.where(grid.spread(descent) > 0, d, -g)
    return d, jnp.where(descent[None], rho, 0.0), jnp.where(descent, gamma, 1.0)


def line_start(grid: PackedGrid, z0, budget, gtol) -> dict:
    """The line-search part of a fresh state from z0 (atoms, 3, C), shared by the L-BFGS
    (`packed_start`) and the dense BFGS (`_dense_bfgs.bfgs_start`): energy, gradient,
    direction -grad, step 1. budget: (molecules, C) iterations each item may run (0:
    never); items already below gtol start done."""
    e0, g0 = grid.value_and_grad(z0)
    shape = (grid.molecules, grid.conformers)
    gn = jnp.sqrt(grid.dot(g0, g0))
    return dict(
        z=z0,
        e=e0,
        g=g0,
        d=-g0,
        alpha=jnp.ones(shape, z0.dtype),
        fails=jnp.zeros(shape, jnp.int32),
        it=jnp.zeros(shape, jnp.int32),
        done=(gn < gtol) | ~jnp.isfinite(e0),
        budget=jnp.asarray(budget, jnp.int32),
    )


def packed_start(grid: PackedGrid, z0, budget, gtol, memory: int) -> dict:
    """The state of a relaxation of every item from z0 (atoms, 3, C): empty memory,
    direction -grad. budget: (molecules, C) iterations each item may run (0: never)."""
    m, dt = int(memory), z0.dtype
    shape = (grid.molecules, grid.conformers)
    c = line_start(grid, z0, budget, gtol)
    c.update(
        gamma=jnp.ones(shape, dt),
        S=jnp.zeros((m, *z0.shape), dt),
        Y=jnp.zeros((m, *z0.shape), dt),
        rho=jnp.zeros((m, *shape), dt),
        head=jnp.int32(0),
    )
    return c


def packed_resume(grid: PackedGrid, c: dict, gtol) -> dict:
    """Continue state c (possibly cast to another dtype or compacted) at tolerance gtol:
    energy and gradient recomputed at z, the direction from the kept memory, full step,
    rejection counter cleared."""
    e, g = grid.value_and_grad(c["z"])
    d, rho, gamma = _direction(grid, g, c["S"], c["Y"], c["rho"], c["gamma"], c["head"])
    gn = jnp.sqrt(grid.dot(g, g))
    return dict(
        c,
        e=e,
        g=g,
        d=d,
        rho=rho,
        gamma=gamma,
        alpha=jnp.ones_like(c["alpha"]),
        fails=jnp.zeros_like(c["fails"]),
        done=(gn < gtol) | ~jnp.isfinite(e),
    )


def line_trial(grid: PackedGrid, c: dict, max_step) -> dict:
    """The trial point of one line-search iteration of state c, shared by the L-BFGS
    (`_step`) and the dense BFGS (`_dense_bfgs._step`): z_t = z + alpha d with alpha cut
    so that no coordinate of an item moves more than max_step; accepted (`ok`) on the
    Armijo condition E(z_t) <= E(z) + c1 alpha g.d (or a rounding-level rise with a
    smaller gradient); the pair s = z_t - z, y = g_t - g is stored (`store`) when
    s.y > 1e-10 |s||y|. Returns the trial, its dot products and those flags."""
    z, e, g, d, alpha = c["z"], c["e"], c["g"], c["d"], c["alpha"]
    active = ~c["done"] & (c["it"] < c["budget"])
    # trial: no coordinate of an item moves more than max_step
    big = grid.item_max(jnp.abs(grid.spread(alpha) * d))
    alpha = alpha * jnp.minimum(1.0, max_step / jnp.maximum(big, 1e-30))
    zt = z + grid.spread(alpha) * d
    et, gt = grid.value_and_grad(zt)
    ulp = jnp.finfo(z.dtype).eps
    s = zt - z
    y = gt - g
    gd, ss, gtgt, gg, sy, yy, dd = grid.dots(
        (g, s), (s, s), (gt, gt), (g, g), (s, y), (y, y), (d, d)
    )
    finite = jnp.isfinite(et) & jnp.isfinite(gtgt)
    armijo = (gd < 0) & (et <= e + _C1 * gd)
    rounding = (et <= e + 8.0 * ulp * (1.0 + jnp.abs(e))) & (gtgt < gg)
    ok = finite & (ss > 0) & (armijo | rounding)
    store = ok & (sy > 1e-10 * jnp.sqrt(ss * yy))
    okr = grid.spread(ok) > 0
    fails = jnp.where(ok, 0, c["fails"] + 1)
    return dict(
        active=active,
        alpha=alpha,
        zt=zt,
        et=et,
        gt=gt,
        s=s,
        y=y,
        gd=gd,
        sy=sy,
        yy=yy,
        dd=dd,
        finite=finite,
        ok=ok,
        store=store,
        z_new=jnp.where(okr, zt, z),
        e_new=jnp.where(ok, et, e),
        g_new=jnp.where(okr, gt, g),
        gg_new=jnp.where(ok, gtgt, gg),
        fails=fails,
        reset=active & (fails == _RESET_AFTER),
    )


def line_advance(grid: PackedGrid, c: dict, t: dict, d_new, gtol) -> dict:
    """The rest of one line-search iteration after trial t (`line_trial`), given the new
    quasi-Newton direction d_new: a rejected trial keeps the direction and shrinks the
    step (the quadratic fit's minimum, clipped to [0.1, 0.5]), a reset restarts along
    d_new, an accepted trial starts the next line search at alpha = 1; items stop at
    |g| < gtol or after `_GIVE_UP_AFTER` rejections in a row. Returns the shared part of
    the state (the caller adds its memory)."""
    e, d = c["e"], c["d"]
    alpha, ok, reset, finite, gd = t["alpha"], t["ok"], t["reset"], t["finite"], t["gd"]
    active, fails, gg_new = t["active"], t["fails"], t["gg_new"]
    curv = t["et"] - e - gd
    shrink = jnp.where(finite & (curv > 0), -gd / (2.0 * jnp.where(curv > 0, curv, 1.0)), 0.25)
    shrink = jnp.clip(shrink, 0.1, 0.5)
    keep_dir = ~ok & ~reset
    d_next = jnp.where(grid.spread(keep_dir) > 0, d, d_new)
    restart = alpha * shrink * jnp.sqrt(t["dd"] / jnp.maximum(gg_new, 1e-30))
    alpha_next = jnp.where(keep_dir, alpha * shrink, jnp.where(reset, restart, 1.0))
    done = (jnp.sqrt(gg_new) < gtol) | (fails >= _GIVE_UP_AFTER)
    ar = grid.spread(active) > 0
    return dict(
        z=jnp.where(ar, t["z_new"], c["z"]),
        e=jnp.where(active, t["e_new"], e),
        g=jnp.where(ar, t["g_new"], c["g"]),
        d=jnp.where(ar, d_next, d),
        alpha=jnp.where(active, alpha_next, c["alpha"]),
        fails=jnp.where(active, fails, c["fails"]),
        it=jnp.where(active, c["it"] + 1, c["it"]),
        done=jnp.where(active, done, c["done"]),
        budget=c["budget"],
    )


def _step(grid: PackedGrid, c: dict, gtol, max_step) -> dict:
    """One L-BFGS iteration of every item (see `line_trial`, `line_advance`)."""
    S, Y, rho, gamma, head = c["S"], c["Y"], c["rho"], c["gamma"], c["head"]
    m = S.shape[0]
    t = line_trial(grid, c, max_step)
    active, store, s, y, sy, yy = t["active"], t["store"], t["s"], t["y"], t["sy"], t["yy"]
    # the pair enters slot head (for items that store it; the rest keep their slot,
    # an active item that does not store loses that slot's pair)
    write = grid.spread(active & store) > 0
    s_old = jax.lax.dynamic_index_in_dim(S, head, 0, keepdims=False)
    y_old = jax.lax.dynamic_index_in_dim(Y, head, 0, keepdims=False)
    r_old = jax.lax.dynamic_index_in_dim(rho, head, 0, keepdims=False)
    S = jax.lax.dynamic_update_index_in_dim(S, jnp.where(write, s, s_old), head, 0)
    Y = jax.lax.dynamic_update_index_in_dim(Y, jnp.where(write, y, y_old), head, 0)
    r_new = jnp.where(store, 1.0 / jnp.where(store, sy, 1.0), 0.0)
    rho = jax.lax.dynamic_update_index_in_dim(rho, jnp.where(active, r_new, r_old), head, 0)
    gamma = jnp.where(active & store, sy / jnp.where(yy > 0, yy, 1.0), gamma)
    head = (head + 1) % m
    reset = t["reset"]
    rho = jnp.where(reset[None], 0.0, rho)
    gamma = jnp.where(reset, 1.0, gamma)
    d_new, rho_d, gamma_d = _direction(grid, t["g_new"], S, Y, rho, gamma, head)
    rho = jnp.where(active[None], rho_d, rho)
    gamma = jnp.where(active, gamma_d, gamma)
    out = line_advance(grid, c, t, d_new, gtol)
    out.update(gamma=gamma, S=S, Y=Y, rho=rho, head=head)
    return out


def normalise(c: dict) -> dict:
    """Host copy (numpy) of state c with its ring buffer rolled so that head = 0 (the
    pairs keep their order), so states of different runs can be mixed."""
    out: dict[str, np.ndarray] = {k: np.array(v) for k, v in c.items()}
    if "head" not in out:  # no ring buffer (the dense BFGS state)
        return out
    h = int(out["head"])
    for k in (*MEM_ROW_KEYS, *MEM_ITEM_KEYS):
        out[k] = np.roll(out[k], -h, axis=0)
    out["head"] = np.zeros((), np.int32)
    return out


def run_steps(step, c: dict, gtol, max_step, stop_below) -> tuple[dict, Array]:
    """Apply `step(c, gtol, max_step)` to state c in a `while_loop` until no item runs
    (done, or its budget spent) or fewer than `stop_below` items still run. Returns
    (state, iterations run). Shared by the L-BFGS and the dense BFGS."""
    gtol = jnp.asarray(gtol, c["z"].dtype)
    max_step = jnp.asarray(max_step, c["z"].dtype)

    def cond(carry):
        c, _ = carry
        n = jnp.sum(~c["done"] & (c["it"] < c["budget"]))
        return (n > 0) & (n >= stop_below)

    def body(carry):
        c, k = carry
        return step(c, gtol, max_step), k + 1

    return jax.lax.while_loop(cond, body, (c, jnp.int32(0)))


def packed_lbfgs(grid: PackedGrid, c: dict, gtol, max_step, stop_below) -> tuple[dict, Array]:
    """Run L-BFGS iterations on state c until no item runs (done, or its budget spent)
    or fewer than `stop_below` items still run. Returns (state, iterations run)."""
    return run_steps(lambda c, gt, ms: _step(grid, c, gt, ms), c, gtol, max_step, stop_below)


def cast_state(c: dict, dtype) -> dict:
    """State c with its floating arrays in `dtype` (on device). A host (numpy) state is
    cast on the host and moved in one `device_put`."""
    if all(isinstance(v, np.ndarray | np.generic) for v in c.values()):
        dt = np.dtype(dtype)
        host = {
            k: (v.astype(dt) if np.issubdtype(v.dtype, np.floating) else v) for k, v in c.items()
        }
        return jax.device_put(host)
    return {
        k: (jnp.asarray(v, dtype) if jnp.issubdtype(jnp.asarray(v).dtype, jnp.floating) else v)
        for k, v in c.items()
    }


def compact(
    old: PackedLayout,
    new: PackedLayout,
    c: dict,
    src: np.ndarray,
    select: np.ndarray,
    valid: np.ndarray,
) -> dict:
    """State c of layout `old` moved to layout `new` (host numpy): new slot k holds
    items of old slot src[k] (-1: an empty slot; a molecule may fill several slots);
    select: (new slots, new C) the old column of each new item; valid: (new slots,
    new C) False for padding items (set done, budget 0)."""
    ng = new.grid
    out: dict[str, np.ndarray] = {}
    for k, v in c.items():
        v = np.asarray(v)
        if k == "head":
            if int(v) != 0:
                raise ValueError("compact a normalised state (head 0)")
            out[k] = np.zeros((), np.int32)
            continue
        if k in SLOT_KEYS:
            kk = 3 * slot_atoms(new)
            w = np.zeros((ng.molecules, ng.conformers, kk, kk), v.dtype)
            for m, s in enumerate(src):
                if s >= 0:
                    n3 = 3 * int(new.natoms[m])
                    w[m, :, :n3, :n3] = v[s][select[m]][:, :n3, :n3]
        elif k in ROW_KEYS or k in MEM_ROW_KEYS:
            lead = v.shape[:-3]
            w = np.zeros((*lead, ng.atoms, 3, ng.conformers), v.dtype)
            for m, s in enumerate(src):
                if s < 0:
                    continue
                o, n, oo = new.offset[m], new.natoms[m], old.offset[s]
                w[..., o : o + n, :, :] = v[..., oo : oo + n, :, :][..., select[m]]
        else:
            lead = v.shape[:-2]
            w = np.zeros((*lead, ng.molecules, ng.conformers), v.dtype)
            for m, s in enumerate(src):
                if s >= 0:
                    w[..., m, :] = v[..., s, select[m]]
        out[k] = w
    out["done"] = out["done"] | ~valid
    out["budget"] = np.where(valid, out["budget"], 0).astype(np.int32)
    return out


# ---------------------------------------------------------------------------------------
# The driver: float32 passes, then a float64 polish, compacting the slow tail


def restore(
    big: PackedLayout, small: PackedLayout, master: dict, c: dict, src, select, valid
) -> None:
    """Write the valid items of state c (layout `small`, its slot k holding columns
    select[k] of slot src[k] of `big`) back into `master` (layout `big`, host numpy,
    in place)."""
    if int(master.get("head", 0)) != 0 or int(c.get("head", 0)) != 0:
        raise ValueError("restore normalised states (head 0)")
    for k, v in c.items():
        if k == "head":
            continue
        v = np.asarray(v)
        w = master[k]
        for m, s in enumerate(src):
            if s < 0:
                continue
            cols = select[m][valid[m]]
            keep = np.flatnonzero(valid[m])
            if k in SLOT_KEYS:
                n3 = 3 * int(small.natoms[m])
                w[s, cols, :n3, :n3] = v[m, keep, :n3, :n3]
            elif k in ROW_KEYS or k in MEM_ROW_KEYS:
                o, n, oo = small.offset[m], small.natoms[m], big.offset[s]
                w[..., oo : oo + n, :, cols] = v[..., o : o + n, :, keep]
            else:
                w[..., s, cols] = v[..., m, keep]


def _cost(layout: PackedLayout) -> float:
    """Relative cost of one iteration on a layout (`sizes_cost` of its grid's sizes)."""
    g = layout.grid
    rows = {n: int(np.shape(t.mask)[0]) for n, t in g.tables.items()}
    return sizes_cost(g.molecules, g.atoms, g.conformers, rows)


def sizes_cost(molecules: int, atoms: int, conformers: int, rows: dict) -> float:
    """Relative cost of one iteration on a packed grid of these sizes: the terms (~100
    flops per packed row and conformer) and the L-BFGS's ~35 per-item dot products,
    each a (molecules, atoms) x (atoms, C) product."""
    total = atoms + sum(rows.values())
    return float(conformers * (100 * total + 35 * molecules * atoms))
