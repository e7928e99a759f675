"""Biomedical capsules: the AB off-lattice protein model (hydrophobic A, hydrophilic B).

Two forms are in use and papers mix them; this module names which is which:

- 2-D: Stillinger, Head-Gordon & Hirshfeld, Phys. Rev. E 48, 1469 (1993):
      E = sum_{i=2}^{N-1} (1/4)(1 - cos theta_i)
          + 4 sum_{i<j-1} (r_ij^-12 - C(s_i, s_j) r_ij^-6),
  theta_i the bend angle at monomer i (0 = straight), C(A,A) = 1, C(B,B) = 1/2,
  C(A,B) = C(B,A) = -1/2. Known minimum for the length-13 Fibonacci sequence
  ABBABBABABBAB: E = -3.2941 (Hsu, Mehra & Grassberger 2003).
- 3-D: Irbäck, Peterson, Potthast & Sommelius, J. Chem. Phys. 107, 273 (1997):
      E = -kappa1 sum_{i=1}^{N-2} b_i . b_{i+1} - kappa2 sum_{i=1}^{N-3} b_i . b_{i+2}
          + 4 sum_{i<j-1} eps(s_i, s_j) (r_ij^-12 - r_ij^-6),
  b_i unit bond vectors, kappa1 = -1, kappa2 = 1/2, eps(A,A) = 1, otherwise 1/2
  (eps multiplies the whole Lennard-Jones term).

Bond lengths are exactly 1 by parametrisation: in 2-D the state is the N-2 bend angles
(radians); in 3-D it is N-1 free 3-vectors read only through their directions
(b_i = v_i / |v_i|), so every state is a valid chain and no constraint is needed.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ._base import Capsule, register

__all__ = [
    "ab_protein",
    "fibonacci_sequence",
    "ab_coordinates",
    "chain_move_2d",
    "self_avoiding_bends_2d",
    "AB_KNOWN_MINIMA_2D",
]

AB_KNOWN_MINIMA_2D = {13: -3.2941}
"""Published lowest 2-D energy for the length-13 Fibonacci sequence (Hsu, Mehra &
Grassberger, Phys. Rev. E 68, 037703 (2003); Stillinger et al. 1993 had -3.2235).
experiments/ab_protein.py reaches it (-3.29408 after an L-BFGS polish)."""


def fibonacci_sequence(n: int) -> str:
    """Fibonacci AB sequence S_{k+1} = S_{k-1} + S_k with S_0 = A, S_1 = B; lengths 13, 21,
    34, 55 give the standard benchmark sequences (13: ABBABBABABBAB)."""
    a, b = "A", "B"
    while len(b) < n:
        a, b = b, a + b
    if len(b) != n:
        raise ValueError(
            f"no Fibonacci AB sequence has length {n} (lengths: 1, 2, 3, 5, 8, 13, 21, 34, 55, ...)"
        )
    return b


def _check_sequence(sequence) -> str:
    if not isinstance(sequence, str) or not sequence:
        raise ValueError(f"sequence must be a non-empty string of 'A' and 'B', got {sequence!r}")
    seq = sequence.strip().upper()
    bad = sorted(set(seq) - {"A", "B"})
    if bad:
        raise ValueError(f"sequence may only contain 'A' and 'B', found {bad} in {sequence!r}")
    if len(seq) < 3:
        raise ValueError(f"the AB model needs at least 3 monomers, got {len(seq)}")
    return seq


def _pair_mask(n):
    """(n, n) float mask of the non-bonded pairs i < j - 1 (upper triangle, offset 2)."""
    return np.triu(np.ones((n, n)), 2)


def _coordinate_rows(x, dim: int):
    """Monomer coordinates as `dim` arrays of shape (N,) (x's, y's[, z's]): the layout the
    energy uses, so pair differences are (N, N) tables with no small trailing axis."""
    x = jnp.asarray(x)
    if dim == 2:
        phi = jnp.concatenate([jnp.zeros((1,), x.dtype), jnp.cumsum(x)])  # bond directions
        comps = (jnp.cos(phi), jnp.sin(phi))
    else:
        b = x / jnp.linalg.norm(x, axis=-1, keepdims=True)
        comps = (b[:, 0], b[:, 1], b[:, 2])
    return [jnp.concatenate([jnp.zeros((1,), c.dtype), jnp.cumsum(c)]) for c in comps]


def ab_coordinates(x, dim: int):
    """Monomer positions (N, dim) of a state: bend angles (N-2,) in 2-D, bond vectors
    (N-1, 3) in 3-D; monomer 0 at the origin, all bonds of length exactly 1."""
    return jnp.stack(_coordinate_rows(x, dim), axis=-1)


def _distinct_slots(draws, m: int):
    """Three distinct indices of 0..m-1 from `draws` uniform in 0..m-1, 0..m-2, 0..m-3
    (bounds max(., 1)): the second and third skip the indices already drawn, so every
    ordered triple of distinct indices is equally likely (sampling without replacement).
    For m < 3 the slots past m - 1 fall outside 0..m-1 (they then pick nothing)."""
    a1 = draws[1] + (draws[1] >= draws[0])
    lo, hi = jnp.minimum(draws[0], a1), jnp.maximum(draws[0], a1)
    a2 = draws[2] + (draws[2] >= lo)
    return draws[0], a1, a2 + (a2 >= hi)


def _slot_bounds(m: int) -> list[int]:
    return [m, max(m - 1, 1), max(m - 2, 1)]


def _distinct_picks(key: PRNGKeyArray, m: int, count) -> Array:
    """(m,) bool mask of min(`count`, m) distinct indices of 0..m-1 (count 1-3), every
    such set equally likely (`_distinct_slots`, the first `count` kept): the distribution
    of `jax.random.permutation(key, m) < count`, from three integer draws instead of a
    sort of m random keys (which, under the moves' vmap, was ~60 % of a 2-D chain move)."""
    a0, a1, a2 = _distinct_slots(jax.random.randint(key, (3,), 0, jnp.array(_slot_bounds(m))), m)
    idx = jnp.arange(m)
    return (idx == a0) | ((idx == a1) & (count >= 2)) | ((idx == a2) & (count >= 3))


def pivot_move_2d(key: PRNGKeyArray, x: Float[Array, " m"], scale) -> Float[Array, " m"]:
    """Pivot move for a 2-D chain in bend angles: 1-3 randomly chosen angles (every set
    of that many equally likely: `_distinct_picks`) redrawn uniformly in [-pi, pi) (the
    chain folds at new places, the rest of the fold is kept), then N(0, scale^2) added
    to every angle."""
    k_new, k_noise, k_count, k_pick = jax.random.split(key, 4)
    m = x.shape[0]
    count = jax.random.randint(k_count, (), 1, 4)
    pick = _distinct_picks(k_pick, m, count)
    new = jax.random.uniform(k_new, x.shape, x.dtype, minval=-np.pi, maxval=np.pi)
    return jnp.where(pick, new, x) + scale * jax.random.normal(k_noise, x.shape, x.dtype)


# Closest non-bonded distance (bond lengths 1, LJ sigma 1) below which a 2-D fold counts
# as a clash, and the draws a clash-free start or move gets. Set from AB-34 (benchmarks/
# README.md, "clash-free starts and moves"): random starts closer than 0.5 relaxed into
# E ~ +1e3 clashes 92 % of the time, starts at >= 0.7 never; hop proposals from
# physical minima at >= 0.9 never, at 0.5-0.9 2-8 %, at < 0.5 57-60 %. Physical
# contacts sit near the LJ minimum 2^(1/6) = 1.12.
_CLEAR_2D = 0.8
_TRIES_2D = 8


def _nonbonded_clearance_2d(x: Float[Array, " m"]) -> Float[Array, ""]:
    """Closest distance between two monomers i < j - 1 of a 2-D chain in bend angles."""
    xs, ys = _coordinate_rows(x, 2)
    n = x.shape[0] + 2
    r2 = jnp.square(xs[:, None] - xs[None, :]) + jnp.square(ys[:, None] - ys[None, :])
    return jnp.sqrt(jnp.min(jnp.where(_pair_mask(n) > 0, r2, jnp.inf)))


def _first_clear(cands: Float[Array, "t m"]) -> Float[Array, " m"]:
    """The first of independent candidate folds whose clearance is >= `_CLEAR_2D` (so a
    draw of the candidates' distribution conditioned on not clashing); if none is, the
    one with the largest clearance."""
    clear = jax.vmap(_nonbonded_clearance_2d)(cands)
    ok = clear >= _CLEAR_2D
    pick = jnp.where(jnp.any(ok), jnp.argmax(ok), jnp.argmax(clear))
    return cands[pick]


def _chain_move_2d_kind(key, x, scale, kind):
    """One draw of `chain_move_2d`'s move `kind` (0 pivot, 1 crankshaft, 2 local). Every
    kind's candidate is formed (under vmap `kind` is data), so the random numbers are
    the few each needs, drawn in three calls: the pivot's count (1-3), its three distinct
    slots (`_distinct_slots`) and their three new angles; the crankshaft's / local
    refold's first angle i, span (1-3) and turn d; the local refold's three normals and
    the noise on every angle."""
    k_int, k_uni, k_norm = jax.random.split(key, 3)
    m = x.shape[0]
    idx = jnp.arange(m)
    ints = jax.random.randint(
        k_int, (6,), jnp.array([1, 0, 0, 0, 0, 1]), jnp.array([4, *_slot_bounds(m), m, 4])
    )
    count, i, span = ints[0], ints[4], ints[5]
    a0, a1, a2 = _distinct_slots(ints[1:4], m)
    u = jax.random.uniform(k_uni, (4,), x.dtype, minval=-np.pi, maxval=np.pi)
    g = jax.random.normal(k_norm, (m + 3,), x.dtype)
    # pivot: angles a0 (and a1, a2 as count asks) redrawn uniformly in [-pi, pi)
    pivot = jnp.where(
        idx == a0,
        u[1],
        jnp.where((idx == a1) & (count >= 2), u[2], jnp.where((idx == a2) & (count >= 3), u[3], x)),
    )
    j = jnp.minimum(i + span, m - 1)
    d = u[0]
    crank = x + jnp.where(idx == i, d, 0.0) - jnp.where((idx == j) & (j != i), d, 0.0)
    # local: N(0, (4 scale)^2) on angles i .. i + span - 1 (those that exist)
    near = jnp.where(
        idx == i,
        g[m],
        jnp.where(
            (idx == i + 1) & (span >= 2),
            g[m + 1],
            jnp.where((idx == i + 2) & (span >= 3), g[m + 2], 0.0),
        ),
    )
    local = x + 4.0 * scale * near
    y = jnp.where(kind == 0, pivot, jnp.where(kind == 1, crank, local))
    return y + scale * g[:m]


def chain_move_2d(key: PRNGKeyArray, x: Float[Array, " m"], scale) -> Float[Array, " m"]:
    """Chain move for a 2-D chain in bend angles, one of (equally likely):

    - pivot: 1-3 angles redrawn uniformly in [-pi, pi) (`pivot_move_2d`: the tail swings);
    - crankshaft: angles i and j = i + 1..3 turned by +d and -d, d uniform in [-pi, pi):
      the segment between monomers i and j + 1 rotates and the tail keeps its direction
      (it only shifts), a local refold that a pivot cannot make without moving the tail;
    - local: N(0, (4 scale)^2) on 1-3 consecutive angles (a small refold whose size the
      search's step adaptation controls).

    Then N(0, scale^2) is added to every angle. The move kind is drawn once; of up to
    `_TRIES_2D` independent draws of that kind the first that does not clash (closest
    non-bonded monomers at least `_CLEAR_2D` apart) is returned, else the clearest:
    a swung tail that lands on the chain relaxes, in bend angles, into a steric clash
    (E ~ +1e3) that the hop then rejects, which on AB-34 was 39-41 % of the pivots and
    21-23 % of the crankshafts from physical minima.
    """
    k_kind, k_tries = jax.random.split(key)
    kind = jax.random.randint(k_kind, (), 0, 3)
    keys = jax.random.split(k_tries, _TRIES_2D)
    cands = jax.vmap(lambda k: _chain_move_2d_kind(k, x, scale, kind))(keys)
    return _first_clear(cands)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def self_avoiding_bends_2d(
    key: PRNGKeyArray, num_chains: int, m: int, bound: float = 1.5
) -> Float[Array, "c m"]:
    """`num_chains` 2-D chains of m bend angles grown monomer by monomer: each bend is
    the first of `_TRIES_2D` uniform draws in (-bound, bound) that puts the new monomer
    at least `_CLEAR_2D` from every earlier non-bonded one (else the clearest draw); a
    chain that still clashes (it spiralled into itself) is regrown, up to `_TRIES_2D`
    growths (else the clearest). So the starts do not relax into steric clashes (on
    AB-34, 55 % of fully random bends had a non-bonded pair closer than 0.5, and 92 % of
    those relaxed into clashes)."""

    def grow(k):
        n = m + 2
        draws = jax.random.uniform(k, (m, _TRIES_2D), minval=-bound, maxval=bound)
        pos = jnp.zeros((n, 2), draws.dtype).at[1, 0].set(1.0)
        idx = jnp.arange(n)

        def step(carry, inp):
            pos, phi = carry
            t, cand = inp  # bend at monomer t + 1 places monomer t + 2
            ang = phi + cand
            new = pos[t + 1][None, :] + jnp.stack([jnp.cos(ang), jnp.sin(ang)], axis=-1)
            r2 = jnp.sum(jnp.square(new[:, None, :] - pos[None, :, :]), axis=-1)
            earlier = idx[None, :] <= t  # monomers 0..t: non-bonded to monomer t + 2
            clear = jnp.sqrt(jnp.min(jnp.where(earlier, r2, jnp.inf), axis=1))
            ok = clear >= _CLEAR_2D
            pick = jnp.where(jnp.any(ok), jnp.argmax(ok), jnp.argmax(clear))
            bend = cand[pick]
            pos = pos.at[t + 2].set(new[pick])
            return (pos, phi + bend), bend

        (pos, _), bends = jax.lax.scan(
            step, (pos, jnp.zeros((), draws.dtype)), (jnp.arange(m), draws)
        )
        r2 = jnp.sum(jnp.square(pos[:, None, :] - pos[None, :, :]), axis=-1)
        return bends, jnp.sqrt(jnp.min(jnp.where(_pair_mask(n) > 0, r2, jnp.inf)))

    def start(k):
        # a growth that spiralled into itself (no clear draw left) is regrown from scratch
        bends, clear = jax.vmap(grow)(jax.random.split(k, _TRIES_2D))
        ok = clear >= _CLEAR_2D
        return bends[jnp.where(jnp.any(ok), jnp.argmax(ok), jnp.argmax(clear))]

    return jax.vmap(start)(jax.random.split(key, num_chains))


def pivot_move_3d(key: PRNGKeyArray, x: Float[Array, "m 3"], scale) -> Float[Array, "m 3"]:
    """Pivot move for a 3-D chain in bond vectors: every bond after a random one is
    rotated by one random rotation (uniform axis, angle uniform in [-pi, pi); Rodrigues'
    formula), then N(0, scale^2) added to every bond-vector coordinate."""
    k_at, k_axis, k_angle, k_noise = jax.random.split(key, 4)
    m = x.shape[0]
    at = jax.random.randint(k_at, (), 0, m)
    axis = jax.random.normal(k_axis, (3,), x.dtype)
    axis = axis / jnp.maximum(jnp.linalg.norm(axis), 1e-12)
    theta = jax.random.uniform(k_angle, (), x.dtype, minval=-np.pi, maxval=np.pi)
    cross = jnp.cross(jnp.broadcast_to(axis, x.shape), x)
    rotated = (
        x * jnp.cos(theta)
        + cross * jnp.sin(theta)
        + axis[None, :] * (x @ axis)[:, None] * (1.0 - jnp.cos(theta))
    )
    tail = (jnp.arange(m) > at)[:, None]
    y = jnp.where(tail, rotated, x)
    return y + scale * jax.random.normal(k_noise, x.shape, x.dtype)


@register("biomedical.ab_protein", "AB off-lattice protein model (2-D Stillinger / 3-D Irbäck)")
def ab_protein(sequence: str, dim: int = 2) -> Capsule:
    """AB off-lattice protein model for a sequence of A (hydrophobic) and B (hydrophilic).

    dim=2 is the Stillinger 1993 form (bend term (1/4)(1 - cos theta), species-dependent
    C multiplying only r^-6); dim=3 is the Irbäck 1997 form (bond-vector couplings
    kappa1 = -1, kappa2 = 1/2; eps multiplying the whole LJ term). See the module
    docstring for both equations. Energies are dimensionless (LJ units, bond length 1).

    Args:
        sequence: string of 'A' / 'B', length >= 3 (e.g. `fibonacci_sequence(13)`).
        dim: 2 or 3.

    Returns:
        A `Capsule`. 2-D states are the N-2 bend angles (radians, unconstrained);
        3-D states are N-1 bond 3-vectors (only their directions count). `decode`
        gives monomer coordinates, energy and XYZ text (A as C atoms, B as N atoms).
        `moves`: chain moves (2-D: `chain_move_2d`, pivots, crankshafts and local
        refolds; 3-D: `pivot_move_3d`).
    """
    seq = _check_sequence(sequence)
    if dim not in (2, 3):
        raise ValueError(f"dim must be 2 or 3, got {dim!r}")
    n = len(seq)
    xi = np.array([1.0 if c == "A" else -1.0 for c in seq])
    # Dense (n, n) pair tables masked to i < j - 1: on CPU the masked dense sum is ~1.5x
    # faster than gathering the n(n-3)/2+1 pairs by index.
    mask = _pair_mask(n)
    xa, xb = xi[:, None], xi[None, :]
    if dim == 2:
        coeff = jnp.asarray(mask * (1.0 + xa + xb + 5.0 * xa * xb) / 8.0, jnp.float32)
        shape = (n - 2,)
    else:
        eps = jnp.asarray(mask * np.where((xa > 0) & (xb > 0), 1.0, 0.5), jnp.float32)
        shape = (n - 1, 3)
    rep = jnp.asarray(mask, jnp.float32)  # r^-12 is summed over the same pairs
    off = jnp.asarray(1.0 - mask, jnp.float32)  # masked entries get r^2 >= 1: no 0-division
    kappa1, kappa2 = -1.0, 0.5

    def energy_fn(x: Float[Array, "..."]) -> Float[Array, ""]:
        if x.shape != shape:
            raise ValueError(
                f"ab_protein(len {n}, dim={dim}) states have shape {shape}, got {x.shape}"
            )
        r2 = off
        for c in _coordinate_rows(x, dim):
            r2 = r2 + jnp.square(c[:, None] - c[None, :])
        r2 = jnp.maximum(r2, 1e-12)
        inv6 = 1.0 / (r2 * r2 * r2)
        if dim == 2:
            bend = 0.25 * jnp.sum(1.0 - jnp.cos(x))
            return bend + 4.0 * jnp.sum(rep * inv6 * inv6 - coeff * inv6)
        b = x / jnp.linalg.norm(x, axis=-1, keepdims=True)
        e_bond = -kappa1 * jnp.sum(b[:-1] * b[1:]) - kappa2 * jnp.sum(b[:-2] * b[2:])
        return e_bond + 4.0 * jnp.sum(eps * (inv6 * inv6 - inv6))

    def init(key: PRNGKeyArray, num_chains: int):
        if dim == 2:
            # random bends in (-1.5, 1.5), grown self-avoiding (`self_avoiding_bends_2d`)
            return self_avoiding_bends_2d(key, num_chains, n - 2)
        base = jnp.broadcast_to(jnp.array([1.0, 0.0, 0.0]), (num_chains, *shape))
        return base + 0.7 * jax.random.normal(key, (num_chains, *shape))

    def decode(x) -> dict:
        pos = np.asarray(ab_coordinates(jnp.asarray(x), dim), np.float64)
        e = float(energy_fn(jnp.asarray(x)))
        p3 = pos if dim == 3 else np.concatenate([pos, np.zeros((n, 1))], axis=1)
        lines = [str(n), f"AB {seq} dim={dim} E={e:.6f} (A=C, B=N)"]
        lines += [
            f"{'C' if c == 'A' else 'N'} {a:.6f} {b:.6f} {z:.6f}" for c, (a, b, z) in zip(seq, p3)
        ]
        return {"sequence": seq, "positions": pos, "energy": e, "xyz": "\n".join(lines) + "\n"}

    return Capsule(
        name="biomedical.ab_protein",
        energy_fn=energy_fn,
        init=init,
        decode=decode,
        params={"sequence": seq, "dim": dim},
        description=f"AB protein model ({'Stillinger 2-D' if dim == 2 else 'Irbäck 3-D'})",
        moves=chain_move_2d if dim == 2 else pivot_move_3d,
    )
