"""The one loop every many-chain routine shares (private): vmap over chains, scan over steps.

Chain c at step i draws its randomness from `fold_in(chain_keys[c], i)`, so a run cut
into pieces gives the same numbers as one scan. Used by the driver (`sample`), the
warm-up (`adapt`) and the thermodynamic ladder's pilot runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from .._custom_types import PyTree
from ..samplers import _random
from ..samplers._base import Sampler

__all__ = ["init_chains", "scan_chains", "step_chains"]


def init_chains(sampler: Sampler, x0_batch: PyTree, keys: jax.Array | None = None) -> Any:
    """The state of every chain: `vmap(sampler.init)` over the leading axis of `x0_batch`."""
    if keys is None:
        return jax.vmap(lambda x: sampler.init(x, None))(x0_batch)
    return jax.vmap(sampler.init)(x0_batch, keys)


def step_chains(sampler: Sampler, chain_keys: jax.Array, state: Any, i) -> tuple[Any, Any]:
    """One transition of every chain at step index `i` (keys `fold_in(chain_keys[c], i)`)."""
    keys = jax.vmap(_random.fold_in, (0, None))(chain_keys, i)
    return jax.vmap(sampler.step)(keys, state)


def scan_chains(
    sampler: Sampler,
    chain_keys: jax.Array,
    state: Any,
    num_steps: int,
    *,
    start: int | jax.Array = 0,
    record: Callable[[Any, Any], PyTree] | None = None,
) -> tuple[Any, PyTree]:
    """`num_steps` transitions of every chain in one `lax.scan`.

    Returns the final state and, when `record(state, info)` is given, its values stacked
    over steps (leading axis `num_steps`).
    """

    def body(s, i):
        s, info = step_chains(sampler, chain_keys, s, start + i)
        return s, (record(s, info) if record is not None else None)

    return jax.lax.scan(body, state, jnp.arange(num_steps))
