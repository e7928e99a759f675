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
API_KEY = "test-key-0123456789"


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
        name=NAME, energy_fn=energy_fn, init=init, decode=lambda x: {"x": [float(v) for v in x]},
        params={"dim": dim, "sigma": sigma}, description="isotropic Gaussian (tests)",
    )


def ensure_registered() -> str:
    if NAME not in capsules._base._REGISTRY:
        register(NAME, "isotropic Gaussian with known moments (runtime tests)")(_gaussian)
    return NAME


ensure_registered()
