"""A dense BFGS per (molecule, conformer) on the packed layout (`_packed`).

Every item (slot m, conformer c) of a `PackedGrid` carries its own inverse Hessian
approximation H of size K x K, K = 3 `slot_atoms(layout)` (the largest molecule of the
layout, rounded up to an even atom count up to 16, then on the size ladder): the
matrices of all items form one (molecules, C, K, K) array, block-diagonal over the
molecules of the packed grid. A
slot's local coordinates are its atoms in packed order, x y z each (`SlotMap`); the
coordinates past a molecule's own 3 n_m are padding, where H, the gradient and every
step are 0, so padded atoms never move.

The iteration is `packed_lbfgs`'s (one energy and gradient evaluation per iteration,
Armijo acceptance with the rounding clause, shrinking on rejection, the step cap,
reset after 8 and give-up after 20 rejections); only the direction differs: d = -H g
with, after an accepted step whose pair satisfies s.y > 1e-10 |s| |y|, the standard
BFGS inverse update

    H+ = (I - rho s y^T) H (I - rho y s^T) + rho s s^T,   rho = 1 / s.y

(before the first update H = I is scaled to (s.y / y.y) I). H is reset to I where the
step was rejected 8 times in a row or -H g is not a descent direction. All items are
updated at once: two batched products with H per iteration (H [g, y], then the
rank-two update written in one pass), no loop over pairs or conformers. As RDKit's
`BFGSOpt` does for a molecule, here for every conformer of every molecule together.

The state is `packed_start`'s without the L-BFGS memory (S, Y, rho, gamma, head) and
with H (molecules, C, K, K) and fresh (molecules, C: H is still I, unscaled); `compact`
/ `restore` / `cast_state` / `normalise` of `_packed` move it between layouts and dtypes.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from ._packed import (
    PackedGrid,
    PackedLayout,
    line_advance,
    line_start,
    line_trial,
    run_steps,
    slot_atoms,
)

__all__ = [
    "SlotMap",
    "slot_atoms",
    "slot_map",
    "bfgs_start",
    "bfgs_resume",
    "bfgs_from_lbfgs",
    "packed_bfgs",
]


class SlotMap(eqx.Module):
    """Packed atoms <-> each slot's local atoms. index: (molecules, slot_atoms) the
    packed atom of local atom j of slot m (`atoms`, out of range, past the molecule's
    own); local: (atoms,) each packed atom's local index in its slot (0 for padded
    atoms, whose slot is `molecules`, out of range); mask: (molecules, K) 1.0 on each
    slot's real coordinates."""

    index: Int[ArrayLike, "molecules slot_atoms"]
    local: Int[ArrayLike, " atoms"]
    slot: Int[ArrayLike, " atoms"]
    mask: Float[ArrayLike, "molecules K"]
    slot_atoms: int = eqx.field(static=True)

    def to_slots(self, v: Array) -> Array:
        """(atoms, 3, C) packed -> (molecules, C, K) per slot (0 at padding)."""
        u = jnp.take(jnp.asarray(v), jnp.asarray(self.index), axis=0, mode="fill", fill_value=0)
        m, n, _, c = u.shape
        return jnp.transpose(u, (0, 3, 1, 2)).reshape(m, c, 3 * n)

    def from_slots(self, u: Array) -> Array:
        """(molecules, C, K) per slot -> (atoms, 3, C) packed (0 at padded atoms)."""
        m, c, k = u.shape
        u4 = jnp.transpose(u.reshape(m, c, k // 3, 3), (0, 2, 3, 1))
        return u4.at[jnp.asarray(self.slot), jnp.asarray(self.local)].get(mode="fill", fill_value=0)

    def identity(self, conformers: int, dtype) -> Array:
        """(molecules, C, K, K): the identity on each slot's real coordinates."""
        k = 3 * self.slot_atoms
        mask = jnp.asarray(self.mask, dtype)
        eye = jnp.eye(k, dtype=dtype)[None, :, :] * mask[:, None, :]
        return jnp.broadcast_to(eye[:, None], (mask.shape[0], conformers, k, k))


def slot_map(layout: PackedLayout) -> SlotMap:
    """The `SlotMap` of a packed layout (host numpy leaves)."""
    g = layout.grid
    n = slot_atoms(layout)
    index = np.full((g.molecules, n), g.atoms, np.int32)
    local = np.zeros(g.atoms, np.int32)
    mask = np.zeros((g.molecules, 3 * n))
    for m, (o, k) in enumerate(zip(layout.offset, layout.natoms)):
        index[m, :k] = o + np.arange(k)
        local[o : o + k] = np.arange(k)
        mask[m, : 3 * k] = 1.0
    return SlotMap(index, local, np.asarray(g.atom_slot, np.int32), mask, n)


def bfgs_start(grid: PackedGrid, smap: SlotMap, z0, budget, gtol) -> dict:
    """The state of a relaxation of every item from z0 (atoms, 3, C): H = I, direction
    -grad. budget: (molecules, C) iterations each item may run (0: never)."""
    c = line_start(grid, z0, budget, gtol)
    c.update(
        H=smap.identity(grid.conformers, z0.dtype),
        fresh=jnp.ones((grid.molecules, grid.conformers), bool),
    )
    return c


def _hv(H, v):
    """Per-item H v: (molecules, C, K, K) x (molecules, C, K[, k]) -> the same as v."""
    if v.ndim == H.ndim - 1:
        return jnp.einsum("mcij,mcj->mci", H, v)
    return jnp.einsum("mcij,mcjk->mcik", H, v)


def bfgs_resume(grid: PackedGrid, smap: SlotMap, c: dict, gtol) -> dict:
    """Continue state c (possibly cast to another dtype or compacted) at tolerance gtol:
    energy and gradient recomputed at z, d = -H g (H reset to I where that is not a
    descent direction), full step, rejection counter cleared."""
    e, g = grid.value_and_grad(c["z"])
    gs = smap.to_slots(g)
    ds = -_hv(c["H"], gs)
    descent = (jnp.sum(ds * gs, -1) < 0) & jnp.isfinite(jnp.sum(ds * ds, -1))
    ds = jnp.where(descent[..., None], ds, -gs)
    eye = smap.identity(grid.conformers, g.dtype)
    gn = jnp.sqrt(grid.dot(g, g))
    return dict(
        c,
        e=e,
        g=g,
        d=smap.from_slots(ds),
        H=jnp.where(descent[..., None, None], c["H"], eye),
        fresh=c["fresh"] | ~descent,
        alpha=jnp.ones_like(c["alpha"]),
        fails=jnp.zeros_like(c["fails"]),
        done=(gn < gtol) | ~jnp.isfinite(e),
    )


def bfgs_from_lbfgs(grid: PackedGrid, smap: SlotMap, c: dict, gtol) -> dict:
    """The dense BFGS state continuing the L-BFGS state c (`packed_start` /
    `packed_lbfgs`'s, ring buffer at head 0: `normalise`d): H is the inverse Hessian
    L-BFGS applies implicitly, (gamma I) updated by the stored pairs oldest first (a
    pair with rho 0 is absent), written out; then `bfgs_resume`."""
    dt = c["z"].dtype
    eye = smap.identity(grid.conformers, dt)
    h0 = jnp.asarray(c["gamma"], dt)[..., None, None] * eye

    def add(h, pair):
        s_p, y_p, r_p = pair
        ss_, ys = smap.to_slots(s_p), smap.to_slots(y_p)
        hy = _hv(h, ys)
        r = r_p[..., None]
        coef = (r * r * jnp.sum(ys * hy, -1, keepdims=True) + r)[..., None]
        h_up = (
            h
            - r[..., None]
            * (ss_[..., :, None] * hy[..., None, :] + hy[..., :, None] * ss_[..., None, :])
            + coef * ss_[..., :, None] * ss_[..., None, :]
        )
        return jnp.where((r_p > 0)[..., None, None], h_up, h), None

    h, _ = jax.lax.scan(add, h0, (c["S"], c["Y"], c["rho"]))
    fresh = jnp.all(jnp.asarray(c["rho"]) <= 0, axis=0)
    keep = ("z", "e", "g", "d", "alpha", "fails", "it", "done", "budget")
    state = {k: c[k] for k in keep}
    state.update(H=jnp.where(fresh[..., None, None], eye, h), fresh=fresh)
    return bfgs_resume(grid, smap, state, gtol)


def _step(grid: PackedGrid, smap: SlotMap, c: dict, gtol, max_step) -> dict:
    """One dense-BFGS iteration of every item (the line search: `_packed.line_trial`,
    `_packed.line_advance`)."""
    H, fresh = c["H"], c["fresh"]
    dt = c["z"].dtype
    t = line_trial(grid, c, max_step)
    active, store, s, y, sy, yy = t["active"], t["store"], t["s"], t["y"], t["sy"], t["yy"]
    g_new, reset = t["g_new"], t["reset"]
    # the direction -H+ g_new from one product of the old H with [g_new, y]
    upd = active & store
    gs, ss_, ys = smap.to_slots(g_new), smap.to_slots(s), smap.to_slots(y)
    hv = _hv(H, jnp.stack([gs, ys], axis=-1))
    sigma = jnp.where(fresh, sy / jnp.where(yy > 0, yy, 1.0), 1.0)[..., None]
    hg, hy = sigma * hv[..., 0], sigma * hv[..., 1]
    rho = jnp.where(upd, 1.0 / jnp.where(upd, sy, 1.0), 0.0)[..., None]
    yhy = jnp.sum(ys * hy, -1, keepdims=True)
    sg = jnp.sum(ss_ * gs, -1, keepdims=True)
    hyg = jnp.sum(hy * gs, -1, keepdims=True)
    coef = rho * rho * yhy + rho
    hg_up = hg - rho * hyg * ss_ - rho * sg * hy + coef * sg * ss_
    ds = -jnp.where(upd[..., None], hg_up, hv[..., 0])
    ds = jnp.where(reset[..., None], -gs, ds)
    descent = (jnp.sum(ds * gs, -1) < 0) & jnp.isfinite(jnp.sum(ds * ds, -1))
    ds = jnp.where(descent[..., None], ds, -gs)
    clear = active & (reset | ~descent)
    # H+ = sigma H - rho (s (H y)^T + (H y) s^T) + (rho^2 y.Hy + rho) s s^T, in one pass
    r4, c4 = rho[..., None], coef[..., None]
    h_up = (
        sigma[..., None] * H
        - r4 * (ss_[..., :, None] * hy[..., None, :] + hy[..., :, None] * ss_[..., None, :])
        + c4 * ss_[..., :, None] * ss_[..., None, :]
    )
    eye = smap.identity(grid.conformers, dt)
    H = jnp.where(clear[..., None, None], eye, jnp.where(upd[..., None, None], h_up, H))
    fresh = jnp.where(clear, True, jnp.where(upd, False, fresh))
    d_new = smap.from_slots(ds)
    out = line_advance(grid, c, t, d_new, gtol)
    out.update(H=H, fresh=fresh)
    return out


def packed_bfgs(
    grid: PackedGrid, smap: SlotMap, c: dict, gtol, max_step, stop_below
) -> tuple[dict, Array]:
    """Run dense BFGS iterations on state c until no item runs (done, or its budget
    spent) or fewer than `stop_below` items still run. Returns (state, iterations)."""
    step = lambda c, gt, ms: _step(grid, smap, c, gt, ms)  # noqa: E731
    return run_steps(step, c, gtol, max_step, stop_below)
