"""Move proposals for global search: `(key, x, scale) -> x'` on one state.

A move perturbs one state; `scale` is the chain's current step size, adapted by the
search towards a target acceptance. `gaussian` is the generic move (every coordinate
plus N(0, scale^2)); domain moves come from a capsule's `moves` (surface-atom moves for
clusters, pivots for chains, rotations on the sphere). `check_moves` normalises the
user's `moves=` argument (one callable or a sequence of them) and checks that every
move maps a state to a state of the same structure, shapes and dtypes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .. import _tree
from .._checks import ArgumentError

__all__ = ["Move", "gaussian", "check_moves", "apply_move"]

PyTree = Any
Move = Callable[[PRNGKeyArray, PyTree, Float[Array, ""]], PyTree]
"""`move(key, x, scale) -> x'` for one state."""


def gaussian(key: PRNGKeyArray, x: PyTree, scale: Float[Array, ""]) -> PyTree:
    """Every coordinate of `x` plus independent N(0, scale^2) noise."""
    return _tree.add_scaled(x, _tree.normal_like(key, x), scale)


def check_moves(moves: Move | Sequence[Move] | None, example: PyTree) -> tuple[Move, ...]:
    """`moves` as a non-empty tuple of moves (None: the generic `gaussian`).

    Each move is traced once on `example` (abstractly, nothing runs); one that fails or
    returns a state of another structure, shape or dtype raises `ArgumentError("moves")`.
    """
    if moves is None:
        return (gaussian,)
    seq = (moves,) if callable(moves) else moves
    if isinstance(seq, (str, bytes)) or not isinstance(seq, Sequence) or len(seq) == 0:
        raise ArgumentError(
            "moves",
            f"moves must be a callable (key, x, scale) -> x' or a sequence of them, got {moves!r}",
        )
    want = jax.tree.map(lambda l: jax.ShapeDtypeStruct(jnp.shape(l), jnp.result_type(l)), example)
    scale = jax.ShapeDtypeStruct((), jnp.result_type(*jax.tree.leaves(example)))
    key = jax.eval_shape(lambda: jax.random.key(0))
    out = []
    for i, m in enumerate(seq):
        if not callable(m):
            raise ArgumentError("moves", f"moves[{i}] is not callable: {m!r}")
        try:
            got = jax.eval_shape(m, key, want, scale)
        except Exception as e:  # a move that cannot take (key, x, scale)
            raise ArgumentError(
                "moves", f"moves[{i}] failed on a state shaped like x0_batch[0]: {e}"
            ) from e
        same = jax.tree.structure(got) == jax.tree.structure(want) and all(
            a.shape == b.shape and a.dtype == b.dtype
            for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want))
        )
        if not same:
            expected = [(l.shape, str(l.dtype)) for l in jax.tree.leaves(want)]
            returned = [
                (getattr(l, "shape", None), str(getattr(l, "dtype", None)))
                for l in jax.tree.leaves(got)
            ]
            raise ArgumentError(
                "moves", f"moves[{i}] must return a state like its input {expected}, got {returned}"
            )
        out.append(m)
    return tuple(out)


def apply_move(moves: tuple[Move, ...], key: PRNGKeyArray, x: PyTree, scale) -> PyTree:
    """One move drawn uniformly from `moves`, applied to `x` (one state)."""
    if len(moves) == 1:
        return moves[0](key, x, scale)
    k_pick, k_move = jax.random.split(key)
    i = jax.random.randint(k_pick, (), 0, len(moves))
    return jax.lax.switch(i, [lambda k, y, s, m=m: m(k, y, s) for m in moves], k_move, x, scale)
