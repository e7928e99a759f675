"""Shared pieces of the runtime tests: a registered Gaussian capsule with known moments.

E(x) = |x|^2 / (2 sigma^2) in `dim` dimensions; at temperature T the Boltzmann
distribution is N(0, T sigma^2 I), so <E> = dim * T / 2 and Var(E) = dim * T^2 / 2.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import capsules
from capsules import Capsule, register

NAME = "testing.gaussian"
API_KEY = "test-key-7Qm2xVb9Lr4Tz8Wc1Np6Hs3Jd5Kf0Gy"  # 40 characters: strong enough


def _gaussian(dim: int = 2, sigma: float = 1.0) -> Capsule:
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be an integer >= 1, got {dim!r}")
    if not isinstance(sigma, (int, float)) or not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")

    def energy_fn(x):
        return 0.5 * jnp.sum(x**2) / sigma**2

    def init(key, num_chains):
        return 3.0 * sigma * jax.random.normal(key, (num_chains, dim))

    return Capsule(
        name=NAME,
        energy_fn=energy_fn,
        init=init,
        decode=lambda x: {"x": [float(v) for v in x]},
        params={"dim": dim, "sigma": sigma},
        description="isotropic Gaussian (tests)",
    )


def ensure_registered() -> str:
    if NAME not in capsules._base._REGISTRY:
        register(NAME, "isotropic Gaussian with known moments (runtime tests)")(_gaussian)
    return NAME


ensure_registered()

LJ_NAME = "testing.lj_cluster"


def _lj_cluster(n: int = 2) -> Capsule:
    """Lennard-Jones cluster in reduced units: E = sum_{i<j} 4 (r^-12 - r^-6); dimer minimum
    at r = 2^(1/6) with E = -1."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    iu = jnp.triu_indices(n, 1)

    def energy_fn(x):
        d2 = jnp.sum((x[:, None] - x[None]) ** 2, -1)[iu]
        inv6 = 1.0 / d2**3
        return jnp.sum(4.0 * (inv6**2 - inv6))

    def init(key, num_chains):
        return 1.5 * jax.random.normal(key, (num_chains, n, 3))

    return Capsule(
        name=LJ_NAME, energy_fn=energy_fn, init=init, decode=lambda x: x, params={"n": n}
    )


if LJ_NAME not in capsules._base._REGISTRY:
    register(LJ_NAME, "Lennard-Jones cluster (runtime tests)")(_lj_cluster)
