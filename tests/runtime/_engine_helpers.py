"""Capsules that misbehave on purpose, for the job engine's budget tests.

`testing.sleepy(seconds)`: building its initial states sleeps (a job that overruns its
wall-time budget). `testing.hog(mb, seconds)`: building its initial states holds `mb` MB of
touched memory for `seconds` (a job over its memory budget). Both are Gaussians otherwise.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

import capsules
from capsules import Capsule, register

SLEEPY, HOG = "testing.sleepy", "testing.hog"


def _gaussian(name: str, init_hook, params: dict) -> Capsule:
    def init(key, num_chains):
        init_hook()
        return jax.random.normal(key, (num_chains, 2))

    return Capsule(
        name=name,
        energy_fn=lambda x: 0.5 * jnp.sum(x**2),
        init=init,
        decode=lambda x: x,
        params=params,
    )


def _sleepy(seconds: float = 30.0) -> Capsule:
    return _gaussian(SLEEPY, lambda: time.sleep(seconds), {"seconds": seconds})


_HELD: list[np.ndarray] = []


def _hog(mb: int = 400, seconds: float = 20.0) -> Capsule:
    def hook():
        _HELD.append(np.ones(mb * 2**20 // 8))  # touched: resident
        time.sleep(seconds)

    return _gaussian(HOG, hook, {"mb": mb, "seconds": seconds})


for _name, _f in ((SLEEPY, _sleepy), (HOG, _hog)):
    if _name not in capsules._base._REGISTRY:
        register(_name, "misbehaving Gaussian (engine tests)")(_f)
