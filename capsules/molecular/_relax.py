"""Batched local minimisation with the library's L-BFGS (`idf.relax`), compiled once per
energy structure.

The energy is an argument of the compiled function (`eqx.filter_jit`): an
`equinox.Module` energy (`MMFFEnergy`, `LJEnergy`) is traced, so every molecule of one
size bucket reuses one compilation; a plain function is a static argument (compiled
once per function object). The iterations run in chunks of at most 200 (one compiled
chunk, called repeatedly): the run stops early once every state has |grad E| <= gtol
or no unconverged state lowered its energy in a whole chunk.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

import idf_jax as idf

__all__ = ["RelaxResult", "relax", "relax_each", "compiled", "grad_norm", "TRACES"]

CHUNK = 200
"""Most L-BFGS iterations per compiled call."""

STALL = 1e-12
"""A chunk that lowers a state's energy by less than STALL (1 + |E|) did not move it."""

CPU_COMPILER_OPTIONS = {"xla_cpu_use_fusion_emitters": False, "xla_backend_optimization_level": 1}
"""XLA options for the compiled relaxation and annealing on CPU: compiling an MMFF94
L-BFGS chunk takes ~3x less time (25 s -> 8 s of CPU for a 16-atom bucket), running it
~1.5x more (see benchmarks/README.md, "Conformers"). Not used on other backends."""

TRACES: collections.Counter[str] = collections.Counter()
"""How many times each compiled function was traced (one per compilation)."""

_COMPILED: dict[tuple[Callable, str], Callable] = {}


def compiled(fn: Callable) -> Callable:
    """`eqx.filter_jit(fn)` for the current backend, with `CPU_COMPILER_OPTIONS` on CPU."""
    backend = jax.default_backend()
    key = (fn, backend)
    if key not in _COMPILED:
        opts = dict(CPU_COMPILER_OPTIONS) if backend == "cpu" else None
        # equinox forwards keyword arguments to jax.jit; its overloads do not list them
        filter_jit = cast(Callable[..., Callable], eqx.filter_jit)
        _COMPILED[key] = filter_jit(fn, compiler_options=opts)
    return _COMPILED[key]


class RelaxResult(NamedTuple):
    """position: (batch, ...) minimised states; energy: (batch,); grad_norm: (batch,)
    |grad E| at the result; num_steps: (batch,) L-BFGS iterations run for the state, in
    whole chunks (a chunk a state starts converged does not count)."""

    position: Array
    energy: Float[Array, " batch"]
    grad_norm: Float[Array, " batch"]
    num_steps: Int[Array, " batch"]


def grad_norm(energy_fn: Callable, x) -> Array:
    """|grad E(x)| over every leaf of x (one state)."""
    g = jax.grad(energy_fn)(x)
    return jnp.sqrt(sum(jnp.sum(leaf * leaf) for leaf in jax.tree.leaves(g)))


def _chunk_shared(energy_fn, x, num_steps: int, gtol: float):
    TRACES["relax"] += 1
    x, e = idf.relax(energy_fn, x, method="lbfgs", num_steps=num_steps, gtol=gtol)
    return x, e, jax.vmap(lambda xi: grad_norm(energy_fn, xi))(x)


def _chunk_each(energies, x, num_steps: int, gtol: float):
    TRACES["relax_each"] += 1

    def one(energy_fn, xi):
        xr, e = idf.relax(energy_fn, xi[None], method="lbfgs", num_steps=num_steps, gtol=gtol)
        return xr[0], e[0], grad_norm(energy_fn, xr[0])

    return jax.vmap(one)(energies, x)


def _check(max_steps, gtol, x_batch) -> Array:
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")
    if not gtol > 0:
        raise ValueError(f"gtol must be positive, got {gtol!r}")
    x_batch = jnp.asarray(x_batch)
    if x_batch.ndim < 1:
        raise ValueError("x_batch needs a leading batch axis")
    return x_batch


def _run(
    chunk: Callable,
    energy: Any,
    x: Array,
    max_steps: int,
    gtol: float,
    switch_off: Callable[[Any, np.ndarray], Any] | None = None,
    active: np.ndarray | None = None,
) -> RelaxResult:
    """Chunks of L-BFGS until every state is done. A state is done when |grad E| < gtol;
    with `switch_off` also when a chunk did not lower its energy (it sits at the
    rounding level), and done states are switched off for the next chunks. Without
    it the run ends when no unfinished state moved in a chunk."""
    num_chunks = math.ceil(max_steps / CHUNK)
    length = math.ceil(max_steps / num_chunks)
    fn = compiled(chunk)
    n = x.shape[0]
    active = np.ones(n, bool) if active is None else np.asarray(active, bool).copy()
    steps = np.zeros(n, np.int64)
    e_out, gn_out = np.full(n, np.inf), np.full(n, np.inf)
    e_prev = np.full(n, np.inf)
    for _ in range(num_chunks):
        e_chunk = energy if switch_off is None else switch_off(energy, active)
        x, e, gn = fn(e_chunk, x, length, float(gtol))
        e_np, gn_np = np.asarray(e), np.asarray(gn)
        steps += np.where(active, length, 0)
        e_out = np.where(active, e_np, e_out)  # switched-off states keep their last values
        gn_out = np.where(active, gn_np, gn_out)
        # a decrease below 1e-12 |E| is rounding noise: the state sits at its minimum
        improved = active & (e_prev - e_np > STALL * (1.0 + np.abs(e_np)))
        if switch_off is None:
            active = ~(gn_np < gtol)
            if not np.any(improved):
                break  # no unconverged state moved in a whole chunk
        else:
            active = improved & ~(gn_np < gtol)
        if not np.any(active):
            break
        e_prev = e_np
    return RelaxResult(x, jnp.asarray(e_out), jnp.asarray(gn_out), jnp.asarray(steps))


def relax(
    energy_fn: Callable[[Array], Array],
    x_batch: Float[ArrayLike, "batch ..."],
    *,
    max_steps: int = 1000,
    gtol: float = 1e-6,
) -> RelaxResult:
    """Minimise energy_fn from every state of x_batch with `idf.relax`'s L-BFGS.

    Stops a state when |grad E| < gtol (energy units per length unit) or after
    max_steps iterations (rounded up to whole chunks). Runs in x_batch's dtype: for
    MMFF94 use float64 (`with jax.enable_x64(True)`) to reach gtol ~ 1e-6 kcal/mol/A.
    An `equinox.Module` energy is traced (one compilation per shape and structure).
    """
    x_batch = _check(max_steps, gtol, x_batch)
    return _run(_chunk_shared, energy_fn, x_batch, max_steps, gtol)


def relax_each(
    energies: Any,
    x_batch: Float[ArrayLike, "batch ..."],
    *,
    max_steps: int = 1000,
    gtol: float = 1e-6,
    switch_off: Callable[[Any, np.ndarray], Any] | None = None,
    active: np.ndarray | None = None,
) -> RelaxResult:
    """Like `relax`, with one energy per state: `energies` is an `equinox.Module` energy
    whose every leaf has the leading batch axis of x_batch (`stack_energies`).

    Under vmap every state pays for the longest line search in the batch, and a state
    at its minimum makes the line search run to its limit. `switch_off(energies, keep)`
    (e.g. `switch_off_energies`) returns the energies with E = 0 wherever keep is False:
    states that converged, or stopped improving, are switched off between chunks so they
    cost one evaluation per iteration. `active`: (batch,) False for states never to
    relax (padding); their results are inf.
    """
    x_batch = _check(max_steps, gtol, x_batch)
    sizes = {np.shape(leaf)[0] for leaf in jax.tree.leaves(energies) if np.ndim(leaf) > 0}
    if sizes != {x_batch.shape[0]}:
        raise ValueError(
            f"energies need the leading batch axis of x_batch ({x_batch.shape[0]}), got {sizes}"
        )
    return _run(_chunk_each, energies, x_batch, max_steps, gtol, switch_off, active)
