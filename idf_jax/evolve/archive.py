"""A MAP-Elites quality-diversity archive: the best configuration per descriptor cell.

The descriptor space (e.g. speed x accuracy) is a grid of `bins` cells over `ranges`;
a candidate with descriptors d falls in the cell of d (descriptors outside the ranges
are clipped into the border cells). Insertion rules, applied to a whole generation at
once (pure JAX, traceable):

- a candidate with a non-finite fitness or a non-finite descriptor is never inserted;
- among the candidates of one generation that fall in the same cell, the lowest fitness
  wins (ties: the first in population order);
- the winner replaces the cell's elite only when its fitness is strictly lower (an
  empty cell holds +inf, so any finite fitness fills it); ties keep the incumbent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from .._checks import ArgumentError

__all__ = ["Archive", "MapElites", "archive_insert", "cell_index"]


class MapElites(NamedTuple):
    """The grid of a MAP-Elites archive: `bins` cells per descriptor over `ranges`."""

    bins: tuple[int, ...]
    ranges: tuple[tuple[float, float], ...]

    @staticmethod
    def make(bins: Sequence[int] | int, ranges: Sequence[Sequence[float]]) -> MapElites:
        """Check and build a grid; `bins` may be one int for every descriptor."""
        try:
            rng = tuple((float(lo), float(hi)) for lo, hi in ranges)
        except (TypeError, ValueError) as e:
            raise ArgumentError("ranges", f"ranges must be (lo, hi) pairs, got {ranges!r}") from e
        if not rng:
            raise ArgumentError("ranges", "ranges must give at least one (lo, hi) pair")
        b = (bins,) * len(rng) if isinstance(bins, (int, np.integer)) else tuple(bins)
        if len(b) != len(rng):
            raise ArgumentError("bins", f"bins has {len(b)} entries for {len(rng)} descriptors")
        for x in b:
            if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < 1:
                raise ArgumentError("bins", f"bins must be integers >= 1, got {bins!r}")
        for lo, hi in rng:
            if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
                raise ArgumentError("ranges", f"each range needs finite lo < hi, got {(lo, hi)}")
        return MapElites(tuple(int(x) for x in b), rng)

    @property
    def num_cells(self) -> int:
        return int(np.prod(self.bins))


class Archive(NamedTuple):
    """The elites: per cell (flattened grid, row-major over `bins`).

    fitness: (cells,) +inf where empty. solution: (cells, dim) encoded points.
    descriptor: (cells, k) the elite's descriptors (NaN where empty).
    filled: (cells,) bool.
    """

    fitness: Float[Array, " cells"]
    solution: Float[Array, "cells dim"]
    descriptor: Float[Array, "cells k"]
    filled: Bool[Array, " cells"]

    @staticmethod
    def empty(grid: MapElites, dim: int) -> Archive:
        c, k = grid.num_cells, len(grid.bins)
        return Archive(
            jnp.full((c,), jnp.inf, jnp.float32),
            jnp.zeros((c, dim), jnp.float32),
            jnp.full((c, k), jnp.nan, jnp.float32),
            jnp.zeros((c,), bool),
        )


def cell_index(grid: MapElites, descriptors: Float[Array, "pop k"]) -> Array:
    """The flat cell of each row of `descriptors` (clipped into the grid)."""
    d = jnp.asarray(descriptors, jnp.float32)
    idx = jnp.zeros(d.shape[:1], jnp.int32)
    for j, (b, (lo, hi)) in enumerate(zip(grid.bins, grid.ranges)):
        i = jnp.floor((d[:, j] - lo) / (hi - lo) * b).astype(jnp.int32)
        idx = idx * b + jnp.clip(i, 0, b - 1)
    return idx


def archive_insert(
    grid: MapElites,
    archive: Archive,
    solution: Float[Array, "pop dim"],
    fitness: Float[Array, " pop"],
    descriptors: Float[Array, "pop k"],
) -> Archive:
    """Insert one generation by the rules of the module docstring (traceable)."""
    c = grid.num_cells
    f = jnp.asarray(fitness, jnp.float32)
    d = jnp.asarray(descriptors, jnp.float32).reshape(f.shape[0], -1)
    if d.shape[1] != len(grid.bins):
        raise ArgumentError(
            "descriptor_fn",
            f"descriptor_fn must return {len(grid.bins)} values, got {d.shape[1]}",
        )
    ok = jnp.isfinite(f) & jnp.all(jnp.isfinite(d), axis=1)
    cell = jnp.where(ok, cell_index(grid, jnp.where(jnp.isfinite(d), d, 0.0)), c)
    f_ok = jnp.where(ok, f, jnp.inf)
    best = jax.ops.segment_min(f_ok, cell, num_segments=c + 1)
    pos = jnp.arange(f.shape[0])
    is_best = ok & (f_ok == best[cell])
    first = jax.ops.segment_min(jnp.where(is_best, pos, f.shape[0]), cell, num_segments=c + 1)
    winner = is_best & (pos == first[cell])
    improves = winner & (f_ok < archive.fitness[jnp.minimum(cell, c - 1)])
    target = jnp.where(improves, cell, c)  # c: out of range, dropped
    return Archive(
        archive.fitness.at[target].set(f_ok, mode="drop"),
        archive.solution.at[target].set(jnp.asarray(solution, jnp.float32), mode="drop"),
        archive.descriptor.at[target].set(d, mode="drop"),
        archive.filled.at[target].set(True, mode="drop"),
    )


def elites(archive: Archive, grid: MapElites, decode_python) -> list[dict[str, Any]]:
    """The filled cells as dicts: cell (grid index tuple), fitness, descriptor, params."""
    filled = np.asarray(archive.filled)
    out = []
    for i in np.flatnonzero(filled):
        out.append(
            {
                "cell": tuple(int(v) for v in np.unravel_index(i, grid.bins)),
                "fitness": float(archive.fitness[i]),
                "descriptor": [float(v) for v in np.asarray(archive.descriptor[i])],
                "params": decode_python(archive.solution[i]),
            }
        )
    return out
