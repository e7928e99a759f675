"""Different molecules in one vmapped energy: `MMFFBatch` (stacked `MMFFEnergy` modules
padded to the largest molecule) with its position padding and batched energy."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ._energy import MMFFEnergy, dummy_positions, exact_bucket, merge_buckets, stack_energies
from ._mmff import MMFFParameters

__all__ = ["MMFFBatch", "batch_parameters", "pad_positions", "mmff_energy_batch"]

_PAD_ATOMS = 4  # dummy atoms appended to the largest molecule


class MMFFBatch(NamedTuple):
    """Different molecules padded to common sizes so one compiled, vmapped energy serves
    them all. arrays: an `MMFFEnergy` with a leading molecule axis on every leaf;
    num_atoms: (m,) real atom counts; max_atoms: padded atom count (largest molecule + 4
    dummy atoms). Padded terms and atoms add exactly 0 to the energy and its gradient."""

    arrays: MMFFEnergy
    num_atoms: np.ndarray
    max_atoms: int
    distance_dielectric: bool


def batch_parameters(params: list[MMFFParameters], dtype=None) -> MMFFBatch:
    """Stack the parameters of several molecules (same dielectric model) for vmap; the
    float tables become JAX arrays in `dtype` (default: JAX's default float)."""
    if not params:
        raise ValueError("batch_parameters needs at least one molecule")
    dd = {p.distance_dielectric for p in params}
    if len(dd) != 1:
        raise ValueError("all molecules in a batch must use the same dielectric model")
    dtype = dtype or jnp.result_type(float)
    bucket = merge_buckets([exact_bucket(p) for p in params])
    bucket = bucket._replace(atoms=bucket.atoms + _PAD_ATOMS)
    stacked = stack_energies([MMFFEnergy.from_parameters(p, bucket) for p in params])

    def to_jax(v: np.ndarray) -> Array:
        return jnp.asarray(v, dtype) if np.issubdtype(v.dtype, np.floating) else jnp.asarray(v)

    arrays = jax.tree.map(to_jax, stacked)
    return MMFFBatch(arrays, np.array([p.num_atoms for p in params]), bucket.atoms, dd.pop())


def pad_positions(batch: MMFFBatch, positions: list[ArrayLike]) -> Array:
    """(m, max_atoms, 3) coordinates: each molecule's (n_i, 3) then fixed dummy atoms at
    well-separated, non-collinear points far away."""
    dtype = jnp.asarray(batch.arrays.tables["bond"].params["kb"]).dtype
    rows = []
    for n, x in zip(batch.num_atoms, positions):
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (n, 3):
            raise ValueError(f"positions must be shaped ({n}, 3), got {x.shape}")
        rows.append(np.concatenate([x, dummy_positions(batch.max_atoms - n)]))
    return jnp.asarray(np.stack(rows), dtype)


def mmff_energy_batch(batch: MMFFBatch, x: Float[ArrayLike, "m n 3"]) -> Float[Array, " m"]:
    """MMFF94 energies (kcal/mol) of a padded batch of different molecules, vmapped."""
    return jax.vmap(lambda e, xi: e(xi))(batch.arrays, jnp.asarray(x))
