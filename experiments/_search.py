"""The AB study's original population pivot basin hopping (Adam relaxations from
overlapping starts, then an L-BFGS polish), kept as the reference the slow test
tests/capsules/test_physcaps_particles.py reproduces.

Basin hopping itself now lives in the library: `idf.sample_equilibrium(method=
"basin_hopping" | "parallel_tempering" | "population", moves=capsule.moves)` (pivot
moves are `capsules.biomedical.pivot_move_2d` / `pivot_move_3d`), which the studies use.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

import idf_jax as idf


def relax(energy_fn, x0_batch, steps: int = 2000, project=None):
    """L-BFGS polish (`idf.relax`: optax L-BFGS, zoom line search) of every start, run in
    float64; returns float32 (x, E) with E evaluated in float32.

    Why float64: near a minimum a float32 energy resolves ~1e-7 relative, a line-search
    step can then fail to lower E by rounding alone, and `idf.relax` stops a chain at its
    first step that does not lower E (on the AB 34-mer that left |grad E| ~ 0.05 and E
    0.01 above the minimum the straight path leads down to). In float64 it converges.
    """
    with jax.enable_x64(True):
        x64 = jax.tree.map(lambda l: jnp.asarray(l, jnp.float64), x0_batch)
        x, _ = idf.relax(energy_fn, x64, method="lbfgs", num_steps=steps, project=project)
        x = jax.tree.map(lambda l: jnp.asarray(l, jnp.float32), x)
    return x, jax.jit(jax.vmap(energy_fn))(x)


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
