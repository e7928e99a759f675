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


def _relax_one(energy_fn, steps, project=None):
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

    return one


def relax(energy_fn, x0_batch, steps: int = 2000, project=None):
    """L-BFGS (optax, zoom line search) on every start; returns (x, E) batched."""
    return jax.jit(jax.vmap(_relax_one(energy_fn, steps, project)))(x0_batch)


def basin_hopping(
    energy_fn,
    key,
    x0_batch,
    hops: int,
    relax_steps: int,
    kick: float,
    temperature: float,
    project=None,
    method: str = "fire",
    dt: float = 0.02,
    kick_fraction: float = 1.0,
):
    """Basin hopping (Wales & Doye 1997), every chain in parallel: kick all coordinates by
    N(0, kick^2) (each coordinate
    only with probability `kick_fraction`: pivot-like moves for chains), relax, accept the new minimum with probability
    min(1, exp(-(E_new - E_old) / T)). The local relaxation is FIRE (`idf_jax.thermo.relax`, one
    gradient per step, cheap to compile) or L-BFGS. Returns (best x, best E, (chains, hops)
    history of the best energy)."""
    if method == "fire":
        from idf_jax.thermo.relax import fire_one

        fire = fire_one(energy_fn, project, relax_steps, 1e-6, 10.0)
        relax_one = lambda x: fire(x, jnp.float32(dt))
    else:
        relax_one = _relax_one(energy_fn, relax_steps, project)

    def one(key, x0):
        x, e = relax_one(x0)

        def body(carry, k):
            x, e, bx, be = carry
            k1, k2 = jax.random.split(jax.random.fold_in(key, k))
            k1, k3 = jax.random.split(k1)
            chosen = jax.random.uniform(k3, x.shape) < kick_fraction
            xn, en = relax_one(x + kick * chosen * jax.random.normal(k1, x.shape))
            en = jnp.where(jnp.isfinite(en), en, jnp.inf)
            accept = jnp.log(jax.random.uniform(k2)) < -(en - e) / temperature
            x, e = jnp.where(accept, xn, x), jnp.where(accept, en, e)
            better = e < be
            bx, be = jnp.where(better, x, bx), jnp.where(better, e, be)
            return (x, e, bx, be), be

        (_, _, bx, be), hist = jax.lax.scan(body, (x, e, x, e), jnp.arange(hops))
        return bx, be, hist

    keys = jax.random.split(key, jax.tree.leaves(x0_batch)[0].shape[0])
    return jax.jit(jax.vmap(one))(keys, x0_batch)


def anneal(
    energy_fn,
    key,
    x0_batch,
    temperatures,
    steps_per_temperature: int,
    step_size: float,
    project=None,
    record=None,
):
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


def anneal_scan(
    energy_fn,
    key,
    x0_batch,
    t_start: float,
    t_end: float,
    num_steps: int,
    step_size: float,
    project=None,
):
    """One jitted annealing run: MALA with a geometric temperature schedule
    T_k = t_start (t_end / t_start)^(k / (num_steps - 1)) and step size eta_k = step_size T_k,
    every chain in parallel; returns the final states, shape like x0_batch."""
    ratio = (t_end / t_start) ** (1.0 / max(num_steps - 1, 1))

    def one(key, x0):
        def body(x, k):
            T = t_start * ratio**k
            sampler = idf.mala(energy_fn, step_size=step_size * T, temperature=T)
            state, _ = sampler.step(jax.random.fold_in(key, k), sampler.init(x))
            x = state.position
            if project is not None:
                x = project(x)
            return x, None

        x, _ = jax.lax.scan(body, x0, jnp.arange(num_steps, dtype=jnp.float32))
        return x

    keys = jax.random.split(key, jax.tree.leaves(x0_batch)[0].shape[0])
    return jax.jit(jax.vmap(one))(keys, x0_batch)


def adam_relax_one(energy_fn, steps: int, lr: float, clip: float = 100.0):
    """Local relaxation by Adam with a cosine-decayed rate (optax) for one state:
    `one(x0) -> (x, E)`. Adam moves each coordinate by at most ~lr per step, so it is
    robust from overlapping starts where r^-12 forces are huge (FIRE and L-BFGS blow up
    there); gradients are clipped to +-clip and non-finite ones zeroed. About 2x cheaper
    per step than L-BFGS with a zoom line search under vmap; polish with `relax` after."""
    opt = optax.adam(optax.cosine_decay_schedule(lr, steps, 0.02))
    value_and_grad = jax.value_and_grad(energy_fn)

    def one(x0):
        def body(carry, _):
            x, state = carry
            _, g = value_and_grad(x)
            g = jnp.clip(jnp.where(jnp.isfinite(g), g, 0.0), -clip, clip)
            updates, state = opt.update(g, state, x)
            return (optax.apply_updates(x, updates), state), None

        (x, _), _ = jax.lax.scan(body, (x0, opt.init(x0)), None, length=steps)
        e = energy_fn(x)
        return x, jnp.where(jnp.isfinite(e), e, jnp.inf)

    return one


def pivot_basin_hopping(
    energy_fn,
    key,
    dim: int,
    *,
    starts: int = 8192,
    pool: int = 512,
    rounds: int = 30,
    hops_per_round: int = 10,
    temperature: float = 0.15,
    low: float = -np.pi,
    high: float = np.pi,
    jitter: float = 0.05,
    log=None,
):
    """Population basin hopping for chains in internal (angle) coordinates.

    1. `starts` uniform random states in [low, high)^dim, each relaxed by Adam (150 steps);
       the `pool` lowest become the chains.
    2. Each hop redraws 1-3 randomly chosen coordinates uniformly in [low, high) (a pivot
       move: the chain folds at new places, the rest of the fold is kept), adds N(0,
       jitter^2) to all, relaxes (Adam, 100 steps) and accepts the new minimum with
       probability min(1, exp(-(E_new - E_old) / temperature)) (Wales & Doye 1997).
       All chains run in parallel (vmap); `rounds` jitted calls of `hops_per_round` hops.

    Returns (best x per chain, best E per chain, list of the overall best E per round).
    """
    start_relax = jax.jit(jax.vmap(adam_relax_one(energy_fn, 150, 0.08)))
    hop_relax = adam_relax_one(energy_fn, 100, 0.05)
    k_start, k_hops = jax.random.split(key)
    xs, es = [], []
    for i in range(max(1, starts // 4096)):
        x0 = jax.random.uniform(
            jax.random.fold_in(k_start, i), (min(starts, 4096), dim), minval=low, maxval=high
        )
        x, e = start_relax(x0)
        xs.append(np.asarray(x))
        es.append(np.asarray(e))
    x, e = np.concatenate(xs), np.concatenate(es)
    order = np.argsort(e)[:pool]
    x, e = jnp.asarray(x[order]), jnp.asarray(e[order])

    def chain(key, x, e):
        def body(carry, k):
            x, e, bx, be = carry
            k1, k2, k3, k4 = jax.random.split(jax.random.fold_in(key, k), 4)
            m = jax.random.randint(k3, (), 1, 4)
            pick = jax.random.permutation(k4, dim) < m
            xn = jnp.where(pick, jax.random.uniform(k1, (dim,), minval=low, maxval=high), x)
            xn, en = hop_relax(xn + jitter * jax.random.normal(k2, (dim,)))
            u = jax.random.uniform(jax.random.fold_in(k2, 1))
            accept = jnp.log(u) < -(en - e) / temperature
            x, e = jnp.where(accept, xn, x), jnp.where(accept, en, e)
            better = e < be
            return (x, e, jnp.where(better, x, bx), jnp.where(better, e, be)), None

        (x, e, bx, be), _ = jax.lax.scan(body, (x, e, x, e), jnp.arange(hops_per_round))
        return x, e, bx, be

    hop = jax.jit(jax.vmap(chain))
    best_x, best_e, curve = x, e, []
    for r in range(rounds):
        x, e, bx, be = hop(jax.random.split(jax.random.fold_in(k_hops, r), pool), x, e)
        better = be < best_e
        best_x = jnp.where(better[:, None], bx, best_x)
        best_e = jnp.where(better, be, best_e)
        curve.append(float(jnp.min(best_e)))
        if log is not None:
            log(r, curve[-1])
    return best_x, best_e, curve
