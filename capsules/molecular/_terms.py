"""The MMFF94 term energies in JAX, on padded term tables with masks.

Each term list of a molecule is a `TermTable`: atom indices, a mask (True for real
rows) and the parameters (`TABLES`: stretch-bends ride on the angle rows, vdW and
Coulomb on one non-bonded pair list). A padded row is inert by construction: its atoms are
replaced by a fixed, non-degenerate reference geometry before any arithmetic (so no
0/0 or arctan2(0, 0) can appear) and its energy is masked out, so it adds exactly 0 to
the energy and exactly 0 to every gradient. The formulas (Halgren, J. Comput. Chem. 17,
490 (1996)) are listed in `_mmff`.

Geometry works on coordinate rows: a vector batch is a tuple (vx, vy, vz) of (k,)
arrays, which keeps the compiled program small (no size-3 minor axes, no generic cross
product).
"""

from __future__ import annotations

import functools
from typing import cast

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

__all__ = ["TermTable", "TERMS", "TABLES", "TABLE_WIDTH", "TABLE_PARAMS", "term_energies"]

MDYNE_A_TO_KCAL_MOL = 143.9325
DEG2RAD = np.pi / 180.0
RAD2DEG = 180.0 / np.pi

TERMS = ("bond", "angle", "stretch_bend", "oop", "torsion", "vdw", "electrostatic")
"""The MMFF94 energy terms, in the order energies are summed."""

TABLES = ("bond", "angle", "oop", "torsion", "pair")
"""The term tables: an angle row carries its stretch-bend, a non-bonded pair row its
vdW and Coulomb parameters, so each geometry is computed once."""

TABLE_WIDTH = {"bond": 2, "angle": 3, "oop": 4, "torsion": 4, "pair": 2}
"""Atoms per row: (i, j), (i, centre, k), (i, centre, k, l out of plane), (i, j, k, l)."""

TABLE_PARAMS = {
    "bond": ("kb", "r0"),
    "angle": ("ka", "theta0", "linear", "kba_ijk", "kba_kji", "r0_ij", "r0_kj"),
    "oop": ("koop",),
    "torsion": ("v",),
    "pair": ("r_star", "eps", "qq"),
}
"""Parameter names of each table (see `MMFFParameters` for units); a row without a
stretch-bend has kba = 0, a pair without vdW eps = 0, one without Coulomb qq = 0."""

# Where the atoms of a padded row sit: i at x, centre at the origin, k at y, l at z.
_REFERENCE = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


class TermTable(eqx.Module):
    """One term list padded to a bucketed length.

    index: (k, width) atom indices (0 in padded rows); mask: (k,) True for real terms;
    params: name -> (k,) or (k, 3) values (benign values in padded rows). Leaves may be
    numpy or JAX arrays, with or without leading batch axes.
    """

    index: Int[ArrayLike, "k width"]
    mask: Bool[ArrayLike, " k"]
    params: dict[str, ArrayLike]


def _sub(a, b):
    return a[0] - b[0], a[1] - b[1], a[2] - b[2]


def _dot(a, b):
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _cross(a, b):
    return (
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    )


def _norm(v):
    """|v| with a finite gradient at v = 0 (where it is 0)."""
    s = _dot(v, v)
    pos = s > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, s, 1.0)), 0.0)


def _angle_deg(a, b):
    """Angle between vectors a and b in degrees, atan2(|a x b|, a . b): stable near 0/180."""
    return RAD2DEG * jnp.arctan2(_norm(_cross(a, b)), _dot(a, b))


def _safe_div(num, den):
    ok = den > 0
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


def _p(t: TermTable, name: str, dtype, nb: int = 0):
    """Parameter `name` of table t as (k, 1, ...) with nb trailing axes (for x batched
    along trailing axes; (k,) for one state)."""
    v = jnp.asarray(t.params[name], dtype)
    return v.reshape(v.shape + (1,) * nb)


def _bond(r, t: TermTable, dd, dtype, nb):
    dr = _norm(_sub(r[0], r[1])) - _p(t, "r0", dtype, nb)
    cs = -2.0
    kb = _p(t, "kb", dtype, nb)
    e = 0.5 * MDYNE_A_TO_KCAL_MOL * kb * dr**2 * (1.0 + cs * dr + (7.0 / 12.0) * cs**2 * dr**2)
    return {"bond": e}


def _angle(r, t: TermTable, dd, dtype, nb):
    xj = r[1]
    u, w = _sub(r[0], xj), _sub(r[2], xj)
    nu, nw = _norm(u), _norm(w)
    dt = _angle_deg(u, w) - _p(t, "theta0", dtype, nb)
    cos_t = _safe_div(_dot(u, w), nu * nw)
    ka = _p(t, "ka", dtype, nb)
    c2 = MDYNE_A_TO_KCAL_MOL * DEG2RAD * DEG2RAD
    bend = 0.5 * c2 * ka * dt**2 * (1.0 + (-0.006981317) * dt)
    lin = MDYNE_A_TO_KCAL_MOL * ka * (1.0 + cos_t)
    dr_ij = nu - _p(t, "r0_ij", dtype, nb)
    dr_kj = nw - _p(t, "r0_kj", dtype, nb)
    c5 = MDYNE_A_TO_KCAL_MOL * DEG2RAD
    stbn = c5 * dt * (_p(t, "kba_ijk", dtype, nb) * dr_ij + _p(t, "kba_kji", dtype, nb) * dr_kj)
    return {
        "angle": jnp.where(_p(t, "linear", bool, nb), lin, bend),
        "stretch_bend": stbn,
    }


def _oop(r, t: TermTable, dd, dtype, nb):
    xj = r[1]
    rji, rjk, rjl = (_sub(r[s], xj) for s in (0, 2, 3))
    normal = _cross(rji, rjk)
    sin_chi = _safe_div(_dot(normal, rjl), _norm(normal) * _norm(rjl))
    chi = RAD2DEG * jnp.arcsin(jnp.clip(sin_chi, -1.0, 1.0))
    c2 = MDYNE_A_TO_KCAL_MOL * DEG2RAD * DEG2RAD
    return {"oop": 0.5 * c2 * _p(t, "koop", dtype, nb) * chi**2}


def _torsion(r, t: TermTable, dd, dtype, nb):
    xj, xk = r[1], r[2]
    t1 = _cross(_sub(r[0], xj), _sub(xk, xj))
    t2 = _cross(_sub(xj, xk), _sub(r[3], xk))
    denom = _norm(t1) * _norm(t2)
    cos_p = jnp.where(denom > 0, _safe_div(_dot(t1, t2), denom), 1.0)
    cos_p = jnp.clip(cos_p, -1.0, 1.0)
    cos2 = 2.0 * cos_p**2 - 1.0
    cos3 = cos_p * (2.0 * cos2 - 1.0)
    v = _p(t, "v", dtype, nb)
    e = 0.5 * (v[:, 0] * (1.0 + cos_p) + v[:, 1] * (1.0 - cos2) + v[:, 2] * (1.0 + cos3))
    return {"torsion": e}


def _pair(r, t: TermTable, dd, dtype, nb):
    d = _norm(_sub(r[0], r[1]))
    rs = _p(t, "r_star", dtype, nb)
    b = 1.07 * rs / (d + 0.07 * rs)
    rs7 = rs**7
    vdw = _p(t, "eps", dtype, nb) * b**7 * (1.12 * rs7 / (d**7 + 0.12 * rs7) - 2.0)
    de = d + 0.05
    de = jnp.where(dd, de * de, de)
    return {"vdw": vdw, "electrostatic": _p(t, "qq", dtype, nb) / de}


_FNS = {"bond": _bond, "angle": _angle, "oop": _oop, "torsion": _torsion, "pair": _pair}


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _take_rows(x, idx, mask, ref, sizes: tuple[int, ...]) -> tuple[Array, ...]:
    """x[idx] with masked rows replaced by ref, split into blocks of `sizes` rows and
    coordinates: (b0x, b0y, b0z, b1x, ...), each (k, *batch). Its gradient is one
    concatenation and one scatter-add (autodiff would pad every block's cotangent to the
    full gathered size and add them up: ~10x the energy's cost)."""
    tail = (1,) * (x.ndim - 2)
    rows = jnp.where(mask.reshape(mask.shape + (1,) + tail), x[idx], ref.reshape(ref.shape + tail))
    out, start = [], 0
    for k in sizes:
        block = rows[start : start + k]
        out += [block[:, 0], block[:, 1], block[:, 2]]
        start += k
    return tuple(out)


def _take_rows_fwd(x, idx, mask, ref, sizes):
    return _take_rows(x, idx, mask, ref, sizes), (x, idx, mask)


def _take_rows_bwd(sizes, res, cotangents):
    x, idx, mask = res
    blocks = [jnp.stack(cotangents[3 * b : 3 * b + 3], axis=1) for b in range(len(sizes))]
    g = jnp.concatenate(blocks)
    g = jnp.where(mask.reshape(mask.shape + (1,) * (g.ndim - 1)), g, 0.0)
    return jnp.zeros_like(x).at[idx].add(g), None, None, None


_take_rows.defvjp(_take_rows_fwd, _take_rows_bwd)


def _gather_rows(x, tables: dict[str, TermTable]):
    """Every term's atom coordinates in one gather: {(term, slot): (vx, vy, vz)}, padded
    rows replaced by the reference geometry (one gather and, in the gradient, one
    scatter-add for the whole energy: small to compile). x is (atoms, 3, *batch); each
    coordinate row is (k, *batch)."""
    parts = [(name, slot) for name in TABLES for slot in range(TABLE_WIDTH[name])]
    sizes = tuple(int(np.shape(tables[name].mask)[-1]) for name, _ in parts)
    idx = jnp.concatenate([jnp.asarray(tables[n].index)[:, s] for n, s in parts])
    mask = jnp.concatenate([jnp.asarray(tables[n].mask) for n, _ in parts])
    ref = np.concatenate(
        [np.broadcast_to(_REFERENCE[s], (k, 3)) for (_, s), k in zip(parts, sizes)]
    )
    # jax.custom_vjp's stubs do not carry the wrapped function's return type
    flat = cast(tuple[Array, ...], _take_rows(x, idx, mask, jnp.asarray(ref, x.dtype), sizes))
    return {part: flat[3 * b : 3 * b + 3] for b, part in enumerate(parts)}


def term_energies(
    x: Float[Array, "atoms 3 *batch"],
    tables: dict[str, TermTable],
    distance_dielectric: Bool[ArrayLike, "*rows"],
    groups: int = 1,
) -> dict[str, Float[Array, "*out"]]:
    """Every term's energy (kcal/mol) at x (angstrom); padded rows add exactly 0.

    x is one state (atoms, 3) or states along trailing axes (atoms, 3, *batch) sharing
    the tables. groups > 1: the rows of every table are `groups` equal blocks (one
    molecule each, `_grid`) summed separately, energies shaped (groups, *batch);
    distance_dielectric is then one flag per pair row, shaped (pair rows,).
    """
    nb = x.ndim - 2
    dd = jnp.asarray(distance_dielectric, bool)
    dd = dd.reshape(dd.shape + (1,) * nb) if dd.ndim else dd
    rows = _gather_rows(x, tables)
    out = {}
    for name in TABLES:
        r = [rows[(name, slot)] for slot in range(TABLE_WIDTH[name])]
        mask = jnp.asarray(tables[name].mask)
        mask = mask.reshape(mask.shape + (1,) * nb)
        for term, e in _FNS[name](r, tables[name], dd, x.dtype, nb).items():
            e = jnp.where(mask, e, 0.0)
            if groups > 1:
                e = e.reshape((groups, -1) + e.shape[1:])
                out[term] = jnp.sum(e, axis=1)
            else:
                out[term] = jnp.sum(e, axis=0)
    return {term: out[term] for term in TERMS}
