"""Minimum search used by the capsule studies: Langevin annealing with `idf.sample`
followed by L-BFGS relaxation (optax), vmapped over many starts.

`idf.sample_equilibrium` (the annealing API) is not on main yet; this helper does the
same job with public pieces: a geometric temperature ladder, a short MALA run at each
temperature (each run starts where the last ended), then a deterministic relaxation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

import idf_jax as idf


def relax(energy_fn, x0_batch, steps: int = 2000, project=None):
    """L-BFGS (optax, zoom line search) on every start; returns (x, E) batched."""
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(energy_fn)

    def one(x0):
        def body(carry, _):
            x, state = carry
            v, g = value_and_grad(x, state=state)
            g = jnp.where(jnp.isfinite(g), g, 0.0)
            updates, state = opt.update(g, state, x, value=v, grad=g, value_fn=energy_fn)
            return (optax.apply_updates(x, updates), state), None

        (x, _), _ = jax.lax.scan(body, (x0, opt.init(x0)), None, length=steps)
        if project is not None:
            x = project(x)
        return x, energy_fn(x)

    return jax.jit(jax.vmap(one))(x0_batch)


def anneal(energy_fn, key, x0_batch, temperatures, steps_per_temperature: int, step_size: float,
           project=None, record=None):
    """MALA at each temperature of a decreasing ladder; returns the final states and the
    (chains, total_draws) energy history (one draw every 10 steps)."""
    x = x0_batch
    history = []
    for k, T in enumerate(temperatures):
        sampler = idf.mala(energy_fn, step_size=step_size * float(T) ** 0.5, temperature=float(T))
        tr = idf.sample(sampler, jax.random.fold_in(key, k), x, steps_per_temperature, thin=10)
        x = tr.final_state.position
        if project is not None:
            x = jax.vmap(project)(x)
        history.append(np.asarray(tr.energies))
    return x, np.concatenate(history, axis=1)
