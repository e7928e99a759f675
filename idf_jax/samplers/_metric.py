"""Euclidean metrics of the Hamiltonian samplers (private): diagonal or dense inverse mass.

An inverse mass M^-1 is a scalar or a PyTree like the position (diagonal), or one
(D, D) symmetric positive-definite array with D the position's total size (dense; the
position is raveled). Kinetic energy p^T M^-1 p / 2, velocity M^-1 p, momenta
p ~ N(0, T M) (dense: p = sqrt(T) C^-T z with M^-1 = C C^T, one Cholesky per draw).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .. import _tree
from .._checks import ArgumentError, is_traced, positive
from .._custom_types import PyTree

__all__ = ["check_inverse_mass", "is_dense", "kinetic", "sample_momentum", "velocity"]


def is_dense(inv_mass: Any, like: PyTree) -> bool:
    """True when `inv_mass` is one (D, D) array for a position of total size D (static)."""
    leaves = jax.tree.leaves(inv_mass)
    if len(leaves) != 1 or jnp.ndim(leaves[0]) != 2:
        return False
    pos = jax.tree.leaves(like)
    size = sum(int(np.prod(jnp.shape(l))) for l in pos)
    shape = tuple(jnp.shape(leaves[0]))
    if shape != (size, size):
        return False
    return not (len(pos) == 1 and tuple(jnp.shape(pos[0])) == shape)


def velocity(p: PyTree, inv_mass: Any) -> PyTree:
    """M^-1 p."""
    if is_dense(inv_mass, p):
        flat, unravel = ravel_pytree(p)
        return unravel(inv_mass @ flat)
    return _tree.mul(p, inv_mass)


def kinetic(p: PyTree, inv_mass: Any) -> jax.Array:
    """p^T M^-1 p / 2."""
    if is_dense(inv_mass, p):
        flat = ravel_pytree(p)[0]
        return 0.5 * flat @ (inv_mass @ flat)
    return jnp.asarray(0.5 * _tree.weighted_sq_norm(p, inv_mass))


def sample_momentum(key, like: PyTree, inv_mass: Any, temperature) -> PyTree:
    """p ~ N(0, T M), shaped like `like`."""
    if is_dense(inv_mass, like):
        flat, unravel = ravel_pytree(like)
        chol = jnp.linalg.cholesky(inv_mass)
        z = jax.random.normal(key, flat.shape, flat.dtype)
        p = jax.scipy.linalg.solve_triangular(chol.T, z, lower=False)
        return unravel(jnp.sqrt(temperature) * p)
    sd = jax.tree.map(lambda m: jnp.sqrt(temperature / m), inv_mass)
    return _tree.mul(_tree.normal_like(key, like), sd)


def check_inverse_mass(inv_mass: Any) -> None:
    """Diagonal entries finite and > 0, or a concrete symmetric positive-definite matrix.

    A square array with entries <= 0 is accepted only as a dense SPD matrix.
    """
    if is_traced(inv_mass):
        return
    leaves = jax.tree.leaves(inv_mass)
    if len(leaves) == 1 and jnp.ndim(leaves[0]) == 2:
        m = np.asarray(leaves[0], np.float64)
        if m.shape[0] == m.shape[1] and not np.all(m > 0):
            ok = np.all(np.isfinite(m)) and np.allclose(m, m.T, rtol=1e-5, atol=1e-8)
            if ok:
                ok = bool(np.all(np.linalg.eigvalsh(0.5 * (m + m.T)) > 0))
            if not ok:
                raise ArgumentError(
                    "inverse_mass",
                    "a dense inverse_mass must be a symmetric positive-definite (D, D) matrix",
                )
            return
    positive("inverse_mass", inv_mass)
