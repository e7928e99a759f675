"""Batched local minimisation, compiled once per energy structure: every state runs the
library's batched L-BFGS (`idf_jax.thermo.local_min.lbfgs_until_one`: one energy and
gradient evaluation per iteration, the line search spread over iterations, a step cap)
until |grad E| < gtol, all states in one `vmap`-ed `while_loop`.

The energy is an argument of the compiled function (`eqx.filter_jit`): an
`equinox.Module` energy (`MMFFEnergy`, `LJEnergy`) is traced, so every molecule of one
size bucket reuses one compilation; a plain function is a static argument (compiled
once per function object). The iteration budget, the tolerance and the step cap are
data: no budget compiles again. Under `vmap` the loop runs until the slowest state is
done; a converged state's lane is masked (its result does not change).
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from idf_jax.thermo.local_min import lbfgs_until_one

__all__ = ["RelaxResult", "relax", "relax_each", "compiled", "grad_norm", "TRACES"]

MAX_STEP = 0.3
"""Default cap on any coordinate's move in one L-BFGS step (length units: angstrom for
MMFF94, sigma for Lennard-Jones): a start with overlapping atoms cannot throw them away."""

MEMORY = 8
"""L-BFGS memory (pairs kept)."""

CPU_COMPILER_OPTIONS = {"xla_cpu_use_fusion_emitters": False, "xla_backend_optimization_level": 1}
"""XLA options for small batches on CPU (fewer than `FULL_OPTIMIZATION_ITEMS` states):
compiling takes ~2x less time, running ~3x more (see benchmarks/README.md,
"Conformers"); a few conformers are compile-bound, many are run-bound. Not used on
other backends."""

FULL_OPTIMIZATION_ITEMS = 128
"""Batches of at least this many states are compiled with XLA's default optimisation."""

TRACES: collections.Counter[str] = collections.Counter()
"""How many times each compiled function was traced (one per compilation)."""

_COMPILED: dict[tuple[Callable, str, bool], Callable] = {}


def compiled(fn: Callable, items: int = 0) -> Callable:
    """`eqx.filter_jit(fn)` for the current backend: on CPU with `CPU_COMPILER_OPTIONS`
    when the batch has fewer than `FULL_OPTIMIZATION_ITEMS` states (`items`)."""
    backend = jax.default_backend()
    quick = backend == "cpu" and items < FULL_OPTIMIZATION_ITEMS
    key = (fn, backend, quick)
    if key not in _COMPILED:
        opts = dict(CPU_COMPILER_OPTIONS) if quick else None
        # equinox forwards keyword arguments to jax.jit; its overloads do not list them
        filter_jit = cast(Callable[..., Callable], eqx.filter_jit)
        _COMPILED[key] = filter_jit(fn, compiler_options=opts)
    return _COMPILED[key]


class RelaxResult(NamedTuple):
    """position: (batch, ...) minimised states; energy: (batch,); grad_norm: (batch,)
    |grad E| at the result; num_steps: (batch,) L-BFGS iterations the state ran (each one
    energy and gradient evaluation)."""

    position: Array
    energy: Float[Array, " batch"]
    grad_norm: Float[Array, " batch"]
    num_steps: Int[Array, " batch"]


def grad_norm(energy_fn: Callable, x) -> Array:
    """|grad E(x)| over every leaf of x (one state)."""
    g = jax.grad(energy_fn)(x)
    return jnp.sqrt(sum(jnp.sum(leaf * leaf) for leaf in jax.tree.leaves(g)))


def _one(energy_fn, x, max_iter, gtol, max_step):
    xr, e, evals = lbfgs_until_one(energy_fn, None, MEMORY)(x, max_iter, gtol, max_step)
    return xr, e, grad_norm(energy_fn, xr), evals - 1


def _batch_shared(energy_fn, x, max_iter, gtol, max_step):
    TRACES["relax"] += 1
    return jax.vmap(lambda xi, n: _one(energy_fn, xi, n, gtol, max_step))(x, max_iter)


def _batch_each(energies, x, max_iter, gtol, max_step):
    TRACES["relax_each"] += 1
    return jax.vmap(lambda en, xi, n: _one(en, xi, n, gtol, max_step))(energies, x, max_iter)


def _check(max_steps, gtol, max_step, x_batch) -> Array:
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")
    if not gtol > 0:
        raise ValueError(f"gtol must be positive, got {gtol!r}")
    if not max_step > 0:
        raise ValueError(f"max_step must be positive, got {max_step!r}")
    x_batch = jnp.asarray(x_batch)
    if x_batch.ndim < 1:
        raise ValueError("x_batch needs a leading batch axis")
    return x_batch


def _run(batch: Callable, energy: Any, x: Array, max_steps, gtol, max_step, active):
    n = x.shape[0]
    active = np.ones(n, bool) if active is None else np.asarray(active, bool)
    if active.shape != (n,):
        raise ValueError(f"active must be shaped ({n},), got {active.shape}")
    budget = jnp.asarray(np.where(active, max_steps, 0), jnp.int32)
    scalars = (jnp.asarray(gtol, x.dtype), jnp.asarray(max_step, x.dtype))  # data: no recompiles
    xr, e, gn, steps = compiled(batch, n)(energy, x, budget, *scalars)
    # states never relaxed (padding) report inf, not their start
    inf = jnp.asarray(np.where(active, 0.0, np.inf), e.dtype)
    return RelaxResult(xr, e + inf, gn + inf, steps)


def relax(
    energy_fn: Callable[[Array], Array],
    x_batch: Float[ArrayLike, "batch ..."],
    *,
    max_steps: int = 1000,
    gtol: float = 1e-6,
    max_step: float = MAX_STEP,
) -> RelaxResult:
    """Minimise energy_fn from every state of x_batch with batched L-BFGS.

    Stops a state when |grad E| < gtol (energy units per length unit), after max_steps
    iterations, or when 20 trial steps in a row fail. Runs in x_batch's dtype: for
    MMFF94 use float64 (`with jax.enable_x64(True)`) to reach gtol ~ 1e-6 kcal/mol/A.
    An `equinox.Module` energy is traced (one compilation per shape and structure).
    """
    x_batch = _check(max_steps, gtol, max_step, x_batch)
    return _run(_batch_shared, energy_fn, x_batch, max_steps, gtol, max_step, None)


def relax_each(
    energies: Any,
    x_batch: Float[ArrayLike, "batch ..."],
    *,
    max_steps: int = 1000,
    gtol: float = 1e-6,
    max_step: float = MAX_STEP,
    active: np.ndarray | None = None,
) -> RelaxResult:
    """Like `relax`, with one energy per state: `energies` is an `equinox.Module` energy
    whose every leaf has the leading batch axis of x_batch (`stack_energies`).

    `active`: (batch,) False for states never to relax (padding): they do no iteration
    and their energy and gradient norm are reported as inf.
    """
    x_batch = _check(max_steps, gtol, max_step, x_batch)
    sizes = {np.shape(leaf)[0] for leaf in jax.tree.leaves(energies) if np.ndim(leaf) > 0}
    if sizes != {x_batch.shape[0]}:
        raise ValueError(
            f"energies need the leading batch axis of x_batch ({x_batch.shape[0]}), got {sizes}"
        )
    return _run(_batch_each, energies, x_batch, max_steps, gtol, max_step, active)
