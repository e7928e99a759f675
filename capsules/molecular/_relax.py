"""Batched local minimisation (L-BFGS from optax), vmapped over a leading batch axis."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, Int

__all__ = ["RelaxResult", "relax"]


class RelaxResult(NamedTuple):
    """position: (batch, ...) minimised states; energy: (batch,); grad_norm: (batch,)
    |grad E| at the result; num_steps: (batch,) L-BFGS iterations taken."""

    position: Array
    energy: Float[Array, " batch"]
    grad_norm: Float[Array, " batch"]
    num_steps: Int[Array, " batch"]


def relax(
    energy_fn: Callable[[Array], Array],
    x_batch: Float[Array, "batch ..."],
    *,
    max_steps: int = 1000,
    gtol: float = 1e-6,
    memory_size: int = 10,
) -> RelaxResult:
    """Minimise energy_fn from every state of x_batch with L-BFGS (zoom line search).

    Stops a state when |grad E| <= gtol (energy units per length unit) or after
    max_steps iterations. Runs in x_batch's dtype: for MMFF94 use float64
    (`with jax.enable_x64(True)`) to reach gtol ~ 1e-6 kcal/mol/A.
    """
    if not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")
    if not gtol > 0:
        raise ValueError(f"gtol must be positive, got {gtol!r}")
    x_batch = jnp.asarray(x_batch)
    if x_batch.ndim < 1:
        raise ValueError("x_batch needs a leading batch axis")
    return _relax_jit(energy_fn, x_batch, max_steps, float(gtol), int(memory_size))


@jax.jit(static_argnums=(0, 2, 3, 4))
def _relax_jit(energy_fn, x_batch, max_steps, gtol, memory_size):
    opt = optax.lbfgs(memory_size=memory_size)
    value_and_grad = optax.value_and_grad_from_state(energy_fn)

    def one(x0):
        def cond(carry):
            _, state, i, gnorm = carry
            return (i < max_steps) & (gnorm > gtol)

        def body(carry):
            x, state, i, _ = carry
            value, grad = value_and_grad(x, state=state)
            updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=energy_fn)
            x = optax.apply_updates(x, updates)
            return x, state, i + 1, optax.tree.norm(grad)

        state = opt.init(x0)
        inf = jnp.asarray(jnp.inf, x0.dtype)
        x, state, steps, _ = jax.lax.while_loop(cond, body, (x0, state, jnp.int32(0), inf))
        e, g = jax.value_and_grad(energy_fn)(x)
        return x, e, optax.tree.norm(g), steps

    x, e, gn, steps = jax.vmap(one)(x_batch)
    return RelaxResult(x, e, gn, steps)
