"""Plasma capsules: charges on a sphere (Thomson problem) and screened-Coulomb (Yukawa)
dusty-plasma clusters in a harmonic trap.

Both energies are pure, jit / vmap / grad safe, with NaN-free gradients (self pairs are
masked before the square root). States are arrays of particle coordinates (n, dim).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ._base import Capsule, register

__all__ = ["thomson", "yukawa_trap", "shell_occupations", "THOMSON_MINIMA", "to_xyz"]

THOMSON_MINIMA = {
    2: 0.500000000,
    3: 1.732050808,
    4: 3.674234614,
    5: 6.474691495,
    6: 9.985281374,
    12: 49.165253058,
}
"""Known global minima of the Thomson problem (unit charges on the unit sphere, E = sum 1/r);
N = 2, 3, 4, 6, 12 are the antipodal pair, triangle, tetrahedron, octahedron and icosahedron
(closed forms), N = 5 the triangular bipyramid (Schwartz 2013 proved it optimal)."""


def _check_n(n, minimum=2) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < minimum:
        raise ValueError(f"n (number of particles) must be an integer >= {minimum}, got {n!r}")
    return int(n)


def _pair_distances(x: Float[Array, "n d"]):
    """(r_ij for i < j, flattened) with a NaN-free gradient."""
    n = x.shape[0]
    iu, ju = np.triu_indices(n, 1)
    d = x[iu] - x[ju]
    r2 = jnp.sum(d * d, axis=-1)
    return jnp.sqrt(jnp.maximum(r2, 1e-30))


def to_xyz(positions, element: str = "X", comment: str = "") -> str:
    """XYZ text for (n, 2 or 3) coordinates (2-D padded with z = 0)."""
    p = np.asarray(positions, np.float64)
    if p.shape[-1] == 2:
        p = np.concatenate([p, np.zeros((p.shape[0], 1))], axis=1)
    lines = [str(len(p)), comment.replace("\n", " ")]
    lines += [f"{element} {a:.8f} {b:.8f} {c:.8f}" for a, b, c in p]
    return "\n".join(lines) + "\n"


def _normalise(x):
    return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


def sphere_move(key: PRNGKeyArray, x: Float[Array, "n 3"], scale) -> Float[Array, "n 3"]:
    """Basin-hopping move on the sphere: every charge rotated by a random tangent step of
    size ~scale (u + scale N(0, I), renormalised); with probability 1/4 one random charge
    also jumps to a uniformly random direction."""
    k_rot, k_pick, k_dir, k_jump = jax.random.split(key, 4)
    u = _normalise(x)
    y = _normalise(u + scale * jax.random.normal(k_rot, u.shape, u.dtype))
    j = jax.random.randint(k_pick, (), 0, u.shape[0])
    z = jax.random.normal(k_dir, (3,), u.dtype)
    jumped = y.at[j].set(z / jnp.maximum(jnp.linalg.norm(z), 1e-12))
    return jnp.where(jax.random.uniform(k_jump) < 0.25, jumped, y)


@register("plasma.thomson", "Thomson problem: n unit charges on the unit sphere, E = sum 1/r")
def thomson(n: int) -> Capsule:
    """Thomson problem: n unit point charges on the unit sphere.

    E(x) = sum_{i<j} 1 / |u_i - u_j|,  u_i = x_i / |x_i|  (Coulomb units, radius 1).

    The sphere is kept exactly by parametrisation: the energy reads each row of x only
    through its direction u_i, so E is the sphere energy for any nonzero x and grad E is
    tangent to the sphere; `project` (row normalisation) maps a state onto the sphere
    after a sampler step. Known minima: `THOMSON_MINIMA` (N=5 6.474691, N=12 49.165253).

    Args:
        n: number of charges, >= 2.

    Returns:
        A `Capsule` with states (n, 3); `init` draws uniform points on the sphere;
        `decode` gives positions on the sphere, energy and XYZ text.
    """
    n = _check_n(n)

    def energy_fn(x: Float[Array, "n 3"]) -> Float[Array, ""]:
        if x.shape != (n, 3):
            raise ValueError(f"thomson({n}) states have shape ({n}, 3), got {x.shape}")
        return jnp.sum(1.0 / _pair_distances(_normalise(x)))

    def init(key: PRNGKeyArray, num_chains: int) -> Float[Array, "c n 3"]:
        return _normalise(jax.random.normal(key, (num_chains, n, 3)))

    def decode(x) -> dict:
        u = np.asarray(_normalise(jnp.asarray(x)), np.float64)
        e = float(energy_fn(jnp.asarray(u)))
        return {"positions": u, "energy": e, "xyz": to_xyz(u, "X", f"thomson n={n} E={e:.8f}")}

    return Capsule(
        name="plasma.thomson",
        energy_fn=energy_fn,
        init=init,
        decode=decode,
        params={"n": n},
        description="Thomson problem on the unit sphere",
        project=_normalise,
        moves=sphere_move,
    )


def shell_occupations(positions, rel_gap: float = 0.1) -> tuple[int, ...]:
    """Particles per shell, innermost first, for a trapped cluster.

    Radii |r_i| are sorted and a new shell starts wherever consecutive radii differ by more
    than `rel_gap` times the largest radius (a particle at the centre forms its own shell).
    """
    r = np.sort(np.linalg.norm(np.asarray(positions, np.float64), axis=-1))
    cuts = np.flatnonzero(np.diff(r) > rel_gap * r[-1]) + 1
    return tuple(int(len(s)) for s in np.split(r, cuts))


@register(
    "plasma.yukawa_trap",
    "screened-Coulomb (Yukawa) dusty-plasma cluster in a harmonic trap, 2-D or 3-D",
)
def yukawa_trap(n: int, kappa: float = 0.0, dim: int = 2) -> Capsule:
    """Yukawa (screened Coulomb) cluster in an isotropic harmonic trap.

    E(r) = sum_i |r_i|^2 + sum_{i<j} exp(-kappa r_ij) / r_ij

    in the dimensionless units of Bedanov & Peeters, Phys. Rev. B 49, 2667 (1994):
    lengths in r0 = (2 q^2 / (4 pi eps0 m w^2))^(1/3), energies in
    E0 = (m w^2 / 2)^(1/3) (q^2 / 4 pi eps0)^(2/3), kappa = r0 / Debye length.
    kappa = 0 is the Coulomb cluster of that paper (2-D shell structure (1,5), (2,8),
    (3,9), (1,6,12), ...; N = 2 has E = 1.5, N = 3 has E/N = 1.310371).

    Args:
        n: number of particles, >= 2.
        kappa: inverse screening length, >= 0.
        dim: 2 (a plane, as in dusty-plasma crystals) or 3 (Coulomb / Yukawa balls).

    Returns:
        A `Capsule` with states (n, dim); `init` draws particles uniformly in a disc / ball
        of the expected cluster radius; `decode` gives positions, energy, energy per
        particle, shell occupations and XYZ text.
    """
    n = _check_n(n)
    if isinstance(kappa, bool) or not np.isfinite(kappa) or kappa < 0:
        raise ValueError(f"kappa (inverse screening length) must be finite and >= 0, got {kappa!r}")
    kappa = float(kappa)
    if dim not in (2, 3):
        raise ValueError(f"dim must be 2 or 3, got {dim!r}")

    def energy_fn(x: Float[Array, "n d"]) -> Float[Array, ""]:
        if x.shape != (n, dim):
            raise ValueError(
                f"yukawa_trap(n={n}, dim={dim}) states have shape ({n}, {dim}), got {x.shape}"
            )
        r = _pair_distances(x)
        return jnp.sum(x * x) + jnp.sum(jnp.exp(-kappa * r) / r)

    # Coulomb cluster radius estimate: R ~ (n / 2)^(1/3) (continuum, 2-D); same scale in 3-D.
    radius = float((n / 2.0) ** (1.0 / 3.0))

    def init(key: PRNGKeyArray, num_chains: int) -> Float[Array, "c n d"]:
        k1, k2 = jax.random.split(key)
        direction = _normalise(jax.random.normal(k1, (num_chains, n, dim)))
        rad = radius * jax.random.uniform(k2, (num_chains, n, 1)) ** (1.0 / dim)
        return direction * rad

    def decode(x) -> dict:
        p = np.asarray(x, np.float64)
        centred = p - p.mean(axis=0)
        e = float(energy_fn(jnp.asarray(p, jnp.float32)))
        return {
            "positions": p,
            "energy": e,
            "energy_per_particle": e / n,
            "shells": shell_occupations(centred),
            "xyz": to_xyz(p, "X", f"yukawa_trap n={n} kappa={kappa} E={e:.8f}"),
        }

    return Capsule(
        name="plasma.yukawa_trap",
        energy_fn=energy_fn,
        init=init,
        decode=decode,
        params={"n": n, "kappa": kappa, "dim": dim},
        description="Yukawa cluster in a harmonic trap",
    )
