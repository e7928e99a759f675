"""Lennard-Jones clusters in free space with a hand-derived force (`jax.custom_vjp`).

Reduced units: lengths in sigma, energies in epsilon. The pair energy is
    u(r) = 4 eps ((sigma / r)^12 - (sigma / r)^6),
and the cluster energy E(x) = sum_{i<j} u(|x_i - x_j|) for x shaped (n, 3).
Known global minima (Cambridge Cluster Database, eps = sigma = 1): LJ7 -16.505384,
LJ13 -44.326801, LJ26 -108.315616, LJ38 -173.928427, LJ75 -397.492331.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from idf_jax.thermo.constraints import Inequality

from .._base import Capsule, register
from ._molecule import Molecule

__all__ = [
    "LJEnergy",
    "lj_energy",
    "lj_energy_autodiff",
    "lennard_jones_cluster",
    "LJ_GLOBAL_MINIMA",
    "cluster_move",
]

LJ_GLOBAL_MINIMA = {
    2: -1.0,
    3: -3.0,
    4: -6.0,
    5: -9.103852,
    6: -12.712062,
    7: -16.505384,
    8: -19.821489,
    13: -44.326801,
    19: -72.659782,
    26: -108.315616,
    31: -133.586422,
    38: -173.928427,
    75: -397.492331,
}
"""Putative global minima E/eps of LJ_n (Cambridge Cluster Database, Wales & Doye 1997)."""


def _ring_sweep(x, epsilon, sigma, with_grad: bool):
    """Sum over pairs as n // 2 ring shifts: shift k pairs atom i with atom (i + k) mod n.

    Every unordered pair appears once for k < n / 2; for even n the shift k = n / 2 lists
    each pair twice and gets weight 1/2. Coordinates are handled as (3, n) rows so every
    shift is a dense, cache-resident elementwise pass (no gathers, no n x n temporaries).
    """
    n = x.shape[-2]
    xs = jnp.swapaxes(x, -1, -2)  # (3, n)
    s2 = sigma * sigma

    def body(k, carry):
        energy, grad = carry
        d = xs - jnp.roll(xs, -k, axis=-1)  # x_i - x_{i+k}
        inv_r2 = 1.0 / (d[0] * d[0] + d[1] * d[1] + d[2] * d[2])
        s6 = (s2 * inv_r2) ** 3
        w = jnp.where(2 * k == n, 0.5, 1.0).astype(xs.dtype)
        energy = energy + (4.0 * w) * epsilon * jnp.sum(s6 * (s6 - 1.0))
        if with_grad:
            # dE/dx_i += 2 du/d(r^2) d, du/d(r^2) = 4 eps (3 s6 - 6 s12) / r^2
            f = ((8.0 * w) * epsilon * s6 * (3.0 - 6.0 * s6) * inv_r2) * d
            grad = grad + f - jnp.roll(f, k, axis=-1)  # -f belongs to atom i + k
        return energy, grad

    init = (jnp.zeros((), xs.dtype), jnp.zeros_like(xs) if with_grad else None)
    energy, grad = jax.lax.fori_loop(1, n // 2 + 1, body, init)
    return energy, (jnp.swapaxes(grad, -1, -2) if with_grad else None)


def _energy(x, epsilon, sigma):
    return _ring_sweep(x, epsilon, sigma, with_grad=False)[0]


def _energy_and_grad(x, epsilon, sigma):
    return _ring_sweep(x, epsilon, sigma, with_grad=True)


@jax.custom_vjp
def _lj(x, epsilon, sigma):
    return _energy(x, epsilon, sigma)


def _lj_fwd(x, epsilon, sigma):
    energy, grad = _energy_and_grad(x, epsilon, sigma)
    de_dsigma = -jnp.sum(x * grad) / sigma
    return energy, (grad, energy, epsilon, de_dsigma)


def _lj_bwd(res, ct):
    grad, energy, epsilon, de_dsigma = res
    # E is linear in eps: dE/deps = E / eps. For sigma, the virial identity
    # sum_i x_i . dE/dx_i = sum_pairs r du/dr = -sigma dE/dsigma (computed forward).
    return ct * grad, ct * energy / epsilon, ct * de_dsigma


_lj.defvjp(_lj_fwd, _lj_bwd)


def lj_energy(
    x: Float[ArrayLike, "n 3"],
    epsilon: Float[ArrayLike, ""] = 1.0,
    sigma: Float[ArrayLike, ""] = 1.0,
) -> Float[Array, ""]:
    """E(x) = sum_{i<j} 4 eps ((sigma/r_ij)^12 - (sigma/r_ij)^6), energy in eps.

    The gradient is hand-derived and shared with the energy evaluation through
    `jax.custom_vjp`: `jax.grad` / `jax.value_and_grad` (and so every sampler) cost one
    sweep over the pairs, dE/dx_i = sum_j 8 eps (3 s6 - 6 s12) / r_ij^2 (x_i - x_j)
    with s6 = (sigma / r_ij)^6. Reverse mode only (no `jax.jvp` / `jax.hessian`).
    """
    x = jnp.asarray(x)
    return _lj(x, jnp.asarray(epsilon, x.dtype), jnp.asarray(sigma, x.dtype))


def lj_energy_autodiff(
    x: Float[Array, "n 3"], epsilon: float = 1.0, sigma: float = 1.0
) -> Float[Array, ""]:
    """The same energy as `lj_energy` over the i < j pairs, differentiated by plain
    autodiff (the reference the hand-derived force is tested against)."""
    x = jnp.asarray(x)
    n = x.shape[-2]
    i, j = np.triu_indices(n, k=1)
    d = x[i] - x[j]
    s6 = (sigma * sigma / jnp.sum(d * d, axis=-1)) ** 3
    return 4.0 * epsilon * jnp.sum(s6 * s6 - s6)


class LJEnergy(eqx.Module):
    """E(x) = `lj_energy(x, epsilon, sigma)` as a PyTree: epsilon and sigma are 0-d array
    leaves, the cluster size is x's shape, so `jax.jit` / `eqx.filter_jit` with the
    module as an argument compile once per n for every (epsilon, sigma), and `jax.grad`
    with respect to the module gives dE/d(epsilon), dE/d(sigma). Compared and hashed
    by identity, like a function."""

    epsilon: Float[ArrayLike, ""]
    sigma: Float[ArrayLike, ""]

    __hash__ = object.__hash__

    def __eq__(self, other) -> bool:
        return self is other

    def __call__(self, x: Float[ArrayLike, "n 3"]) -> Float[Array, ""]:
        return lj_energy(x, self.epsilon, self.sigma)


def _lattice_init(key, num_chains, n, sigma, spacing=1.12):
    """Random n-point subsets of a jittered simple-cubic lattice (spacing 1.12 sigma,
    jitter +-0.1 sigma): no two atoms start closer than ~0.9 sigma, so no overflow."""
    m = int(np.ceil(n ** (1.0 / 3.0))) + 1
    g = np.arange(m) - (m - 1) / 2.0
    grid = np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1).reshape(-1, 3)
    # keep the m^3 points ordered by distance to the centre; draw n of the nearest 2n
    order = np.argsort(np.sum(grid * grid, axis=-1), kind="stable")
    pool = jnp.asarray(grid[order[: min(len(grid), 2 * n)]] * spacing * sigma)

    def one(k):
        k1, k2 = jax.random.split(k)
        idx = jax.random.permutation(k1, pool.shape[0])[:n]
        jitter = jax.random.uniform(k2, (n, 3), minval=-0.1, maxval=0.1) * sigma
        x = pool[idx] + jitter
        return x - jnp.mean(x, axis=0)

    return jax.vmap(one)(jax.random.split(key, num_chains))


def cluster_move(epsilon: float = 1.0, sigma: float = 1.0):
    """Basin-hopping move for an atomic cluster: `move(key, x, scale) -> x'`, x (n, 3).

    With probability 1/4 an angular (surface) move (Doye & Wales): the least-bound atom
    (highest pair energy; half of the time a random atom instead) goes to a random
    point on the sphere through the outermost atom, centred on the centroid. Otherwise
    every atom is displaced by N(0, scale^2) per coordinate (Wales & Doye 1997).
    """
    s2 = float(sigma) ** 2

    def move(key: PRNGKeyArray, x: Float[Array, "n 3"], scale) -> Float[Array, "n 3"]:
        k_kind, k_atom, k_pick, k_dir, k_kick = jax.random.split(key, 5)
        n = x.shape[0]
        c = jnp.mean(x, axis=0)
        d = x[:, None, :] - x[None, :, :]
        r2 = jnp.sum(d * d, axis=-1) + jnp.eye(n, dtype=x.dtype)
        s6 = (s2 / r2) ** 3
        pair = 4.0 * epsilon * (s6 * s6 - s6) * (1.0 - jnp.eye(n, dtype=x.dtype))
        worst = jnp.argmax(jnp.sum(pair, axis=1))
        atom = jnp.where(
            jax.random.uniform(k_pick) < 0.5, worst, jax.random.randint(k_atom, (), 0, n)
        )
        radius = jnp.max(jnp.linalg.norm(x - c[None, :], axis=-1))
        u = jax.random.normal(k_dir, (3,), x.dtype)
        u = u / jnp.maximum(jnp.linalg.norm(u), 1e-12)
        angular = x.at[atom].set(c + radius * u)
        kicked = x + scale * jax.random.normal(k_kick, x.shape, x.dtype)
        return jnp.where(jax.random.uniform(k_kind) < 0.25, angular, kicked)

    return move


def _container(radius):
    def outside(x):
        c = jnp.mean(x, axis=-2, keepdims=True)
        return jnp.sqrt(jnp.sum((x - c) ** 2, axis=-1) + 1e-12) - radius

    return outside


@register("molecular.lennard_jones_cluster", "Lennard-Jones cluster of n atoms, reduced units")
def lennard_jones_cluster(
    n: int, epsilon: float = 1.0, sigma: float = 1.0, container_radius: float | None = None
) -> Capsule:
    """LJ_n cluster: x shaped (n, 3) in units of sigma, E in units of eps.

    energy_fn: an `LJEnergy` module (`lj_energy`, hand-derived force via custom_vjp),
    exactly the free-space LJ energy, so its minima are the Cambridge Cluster Database
    values.
    constraints: one `Inequality` keeping every atom within `container_radius` of the
    centroid (default sigma * (1 + 0.6 n^(1/3)), well outside the compact minima), so
    that annealing at finite temperature does not evaporate the cluster; it is zero at
    every compact configuration and is not part of `energy_fn`.
    init: random subsets of a jittered cubic lattice (no overlaps).
    decode: a `Molecule` of argon-labelled atoms, positions in sigma, energy in eps.
    moves: `cluster_move` (angular surface-atom moves and all-atom kicks).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n must be an integer >= 2 (number of atoms), got {n!r}")
    for name, v in (("epsilon", epsilon), ("sigma", sigma)):
        if not np.isfinite(v) or v <= 0:
            raise ValueError(f"{name} must be a positive finite number, got {v!r}")
    n = int(n)
    radius = (
        sigma * (1.0 + 0.6 * n ** (1.0 / 3.0)) if container_radius is None else container_radius
    )
    if not np.isfinite(radius) or radius <= sigma:
        raise ValueError(f"container_radius must exceed sigma, got {radius!r}")
    epsilon, sigma, container_radius = float(epsilon), float(sigma), float(radius)

    energy_fn = LJEnergy(np.asarray(epsilon), np.asarray(sigma))

    def init(key: PRNGKeyArray, num_chains: int) -> Float[Array, "chains n 3"]:
        return _lattice_init(key, int(num_chains), n, sigma)

    def decode(x) -> Molecule:
        x = np.asarray(x, dtype=np.float64)
        return Molecule(
            elements=("Ar",) * n,
            positions=x,
            energy=float(energy_fn(jnp.asarray(x))),
            comment=f"LJ{n} cluster, reduced units (sigma={sigma}, eps={epsilon})",
        )

    return Capsule(
        name="molecular.lennard_jones_cluster",
        energy_fn=energy_fn,
        init=init,
        decode=decode,
        constraints=(Inequality(fn=_container(container_radius), weight=100.0 * epsilon),),
        params={"n": n, "epsilon": epsilon, "sigma": sigma, "container_radius": container_radius},
        description=f"LJ{n} cluster in a spherical container of radius {container_radius:.3g}",
        moves=cluster_move(epsilon, sigma),
    )
