"""Small PyTree arithmetic helpers used by the samplers (private)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def add_scaled(x, y, scale):
    """x + scale * y, leaf by leaf; `scale` is a scalar or a PyTree like `x`."""
    if _is_tree_like(scale, x):
        return jax.tree.map(lambda a, b, s: a + s * b, x, y, scale)
    return jax.tree.map(lambda a, b: a + scale * b, x, y)


def mul(x, scale):
    """scale * x, leaf by leaf; `scale` is a scalar or a PyTree like `x`."""
    if _is_tree_like(scale, x):
        return jax.tree.map(lambda a, s: s * a, x, scale)
    return jax.tree.map(lambda a: scale * a, x)


def normal_like(key, x):
    """Standard normal noise with the structure, shapes and dtypes of `x`."""
    leaves, treedef = jax.tree.flatten(x)
    # One leaf (the common case) uses the key as is: no split on the hot path.
    keys = [key] if len(leaves) == 1 else jax.random.split(key, len(leaves))
    noise = [jax.random.normal(k, jnp.shape(l), jnp.result_type(l)) for k, l in zip(keys, leaves)]
    return jax.tree.unflatten(treedef, noise)


def vdot(x, y):
    """Sum over all leaves of sum(x * y)."""
    return sum(jnp.sum(a * b) for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(y)))


def sq_norm(x):
    return vdot(x, x)


def weighted_sq_norm(x, w):
    """sum w * x**2 with `w` a scalar or a PyTree like `x`."""
    if _is_tree_like(w, x):
        return sum(jnp.sum(b * a * a) for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(w)))
    return w * sq_norm(x)


def all_finite(x):
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(l)) for l in jax.tree.leaves(x)]))


def select(pred, on_true, on_false):
    """Leaf-wise `where(pred, on_true, on_false)` with a scalar predicate."""
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def select_rows(mask, on_true, on_false):
    """Leaf-wise `where(mask, on_true, on_false)` with a per-row mask of shape (n,) (or
    any leading shape), broadcast over each leaf's trailing axes."""
    return jax.tree.map(
        lambda a, b: jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - mask.ndim)), a, b),
        on_true,
        on_false,
    )


def take(tree, idx):
    """Rows `idx` of every leaf (`leaf[idx]`)."""
    return jax.tree.map(lambda leaf: leaf[idx], tree)


def _is_tree_like(s, x) -> bool:
    """True when `s` is a PyTree with the structure of `x` (not a plain scalar)."""
    if isinstance(s, (int, float)) or getattr(s, "ndim", None) == 0:
        return False
    return jax.tree.structure(s) == jax.tree.structure(x)
