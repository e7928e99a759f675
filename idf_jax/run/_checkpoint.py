"""Checkpoints of a run's carry: atomic writes (temporary file + os.replace), exact resume."""

from __future__ import annotations

import json
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._io import atomic_write


def _key_fingerprint(key) -> list[int]:
    data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    return np.asarray(data).astype(np.int64).ravel().tolist()


def _save_checkpoint(path: str, carry: Any, meta: dict) -> None:
    """Write the carry atomically (`idf_jax._io.atomic_write`): leaves as an NPZ, meta as JSON."""
    leaves = [np.asarray(l) for l in jax.tree.leaves(carry)]

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would add ".npz" to a name
            np.savez(f, *leaves, __meta__=np.asarray(json.dumps(meta)))

    atomic_write(path, write)


def _load_checkpoint(path: str, template: Any, meta: dict) -> tuple[Any, int]:
    try:
        with np.load(path, allow_pickle=False) as z:
            saved = json.loads(str(z["__meta__"]))
            leaves = [z[f"arr_{i}"] for i in range(len(z.files) - 1)]
    except Exception as e:  # corrupt or foreign file
        raise ValueError(f"checkpoint {path!r} cannot be read: {e}") from e
    steps_done = saved.pop("steps_done", None)
    if saved != meta:
        diff = {
            k: (saved.get(k), meta.get(k))
            for k in set(saved) | set(meta)
            if saved.get(k) != meta.get(k)
        }
        raise ValueError(
            f"checkpoint {path!r} was written by a different run (saved, now): {diff}; "
            "delete it or pass another path"
        )
    t_leaves, treedef = jax.tree.flatten(template)
    if len(leaves) != len(t_leaves) or any(
        a.shape != b.shape or a.dtype != b.dtype for a, b in zip(leaves, t_leaves)
    ):
        raise ValueError(f"checkpoint {path!r} does not match this sampler's state layout")
    carry = jax.tree.unflatten(treedef, [jnp.asarray(l) for l in leaves])
    return carry, int(steps_done)
