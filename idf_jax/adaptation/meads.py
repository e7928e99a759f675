"""MEADS warm-up (`method="meads"`): step size, damping and diagonal mass of generalised HMC.

Hoffman & Sountsov (2022), Algorithm 3; BlackJAX `meads_adaptation`. The chains are
split into K folds (default 4; K must divide the number of chains), each with its own
parameters. At step t the chains of fold k = t mod K set the parameters of fold
k + 1 (so no chain is tuned on its own history), and every K steps the chains are
reshuffled over the folds. From a fold's positions x and gradients g of log p = -E / T:
- sigma = sd(x) per coordinate (the diagonal preconditioner, M^-1 = sigma^2);
- eps = min(1, 0.5 / sqrt(lambda_max(g * sigma)));
- gamma = max(1 / sqrt(lambda_max((x - mean) / sigma)), 1 / ((t + 1) eps));
- alpha = 1 - exp(-2 eps gamma) (momentum refresh), delta = alpha / 2 (slice drift);
with lambda_max the cross-chain estimate of the largest eigenvalue. The returned
parameters are computed from all chains at the end. At temperature T the step is
divided by sqrt(T) (the kernel's momenta are N(0, T M)).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import PRNGKeyArray

from .._checks import ArgumentError, as_key
from .._custom_types import PyTree
from ..run._scan import init_chains
from ..samplers.ghmc import GHMC, build_ghmc_kernel
from ._common import check_batch, flat_chains, maximum_eigenvalue
from .window import AdaptationResult

__all__ = ["meads_adapt_run"]


def meads_adapt_run(
    sampler: GHMC,
    key: PRNGKeyArray,
    x0_batch: PyTree,
    num_steps: int,
    *,
    num_folds: int = 4,
    step_size_multiplier: float = 0.5,
    damping_slowdown: float = 1.0,
) -> AdaptationResult:
    """Tune an `idf.ghmc` sampler's step size, alpha, delta and inverse mass (module doc)."""
    if not isinstance(sampler, GHMC):
        raise ArgumentError(
            "sampler",
            f'method="meads" tunes an idf.ghmc(...) sampler, got {type(sampler).__name__}',
        )
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 10:
        raise ArgumentError("num_steps", f"num_steps must be an integer >= 10, got {num_steps!r}")
    n = check_batch(x0_batch)
    if isinstance(num_folds, bool) or not isinstance(num_folds, int) or num_folds < 1:
        raise ArgumentError("num_folds", f"num_folds must be an integer >= 1, got {num_folds!r}")
    if n % num_folds or n // num_folds < 2:
        raise ArgumentError(
            "num_folds",
            f"num_folds ({num_folds}) must divide the number of chains ({n}) with >= 2 per fold",
        )
    key = as_key(key)
    dynamic, static = eqx.partition(sampler, eqx.is_array)
    consts = jnp.asarray([step_size_multiplier, damping_slowdown], jnp.float32)
    out = _meads_jit(static, dynamic, key, x0_batch, consts, num_steps=num_steps, folds=num_folds)
    return AdaptationResult(*out)


def _parameters(x, g, t, mult, slowdown):
    """(eps, sigma, alpha) from positions x (m, d) and log-density gradients g (m, d)."""
    mean = jnp.mean(x, 0)
    sigma = jnp.maximum(jnp.std(x, 0), 1e-10)
    eps = jnp.minimum(mult / jnp.sqrt(maximum_eigenvalue(g * sigma[None])), 1.0)
    gamma = jnp.maximum(
        1.0 / jnp.sqrt(maximum_eigenvalue((x - mean[None]) / sigma[None])),
        slowdown / ((t + 1.0) * eps),
    )
    return eps, sigma, 1.0 - jnp.exp(-2.0 * eps * gamma)


def _meads_warmup(static, dynamic, key, x0_batch, consts, *, num_steps, folds):
    sampler = eqx.combine(dynamic, static)
    mult, slowdown = consts[0], consts[1]
    n = jax.tree.leaves(x0_batch)[0].shape[0]
    per = n // folds
    k_init, k_run = jax.random.split(key)
    state = init_chains(sampler, x0_batch, jax.random.split(k_init, n))
    example = jax.tree.map(lambda l: l[0], x0_batch)
    unravel = ravel_pytree(example)[1]
    temp = jnp.asarray(sampler.temperature, jnp.float32)
    kernel = build_ghmc_kernel(sampler.energy_fn)

    def stats(state):
        x = flat_chains(state.position).astype(jnp.float32)
        g = -flat_chains(state.grad).astype(jnp.float32) / temp
        return x, g

    x, g = stats(state)
    eps, sigma, alpha = _parameters(x, g, 0.0, mult, slowdown)
    fold_eps = jnp.full((folds,), eps)
    fold_alpha = jnp.full((folds,), alpha)
    fold_sigma = jnp.tile(sigma[None], (folds, 1))
    order = jnp.arange(n)

    def body(carry, t):
        state, fold_eps, fold_alpha, fold_sigma, order = carry
        k_step, k_perm = jax.random.split(jax.random.fold_in(k_run, t))
        fold_of = jnp.zeros((n,), jnp.int32).at[order].set(jnp.arange(n) // per)
        eps_c = fold_eps[fold_of] / jnp.sqrt(temp)
        alpha_c = fold_alpha[fold_of]
        inv_mass_c = jax.vmap(
            lambda s: jax.tree.map(
                lambda v, ex: jnp.asarray(v, jnp.result_type(ex)), unravel(s**2), example
            )
        )(fold_sigma[fold_of])
        keys = jax.random.split(k_step, n)
        state, info = jax.vmap(
            lambda k, s, e, a, m: kernel(k, s, e, a, 0.5 * a, sampler.temperature, m)
        )(keys, state, eps_c, alpha_c, inv_mass_c)
        x, g = stats(state)
        src = jnp.mod(t, folds)
        members = jax.lax.dynamic_slice(order, (src * per,), (per,))
        e_new, s_new, a_new = _parameters(
            x[members], g[members], t.astype(jnp.float32), mult, slowdown
        )
        dst = jnp.mod(src + 1, folds)
        good = jnp.isfinite(e_new) & jnp.isfinite(a_new) & jnp.all(jnp.isfinite(s_new))
        fold_eps = jnp.where(good, fold_eps.at[dst].set(e_new), fold_eps)
        fold_alpha = jnp.where(good, fold_alpha.at[dst].set(a_new), fold_alpha)
        fold_sigma = jnp.where(good, fold_sigma.at[dst].set(s_new), fold_sigma)
        order = jnp.where(src == folds - 1, jax.random.permutation(k_perm, order), order)
        acc = jnp.asarray(info.acceptance_rate, jnp.float32)
        return (state, fold_eps, fold_alpha, fold_sigma, order), jnp.mean(acc)

    carry = (state, fold_eps, fold_alpha, fold_sigma, order)
    carry, accs = jax.lax.scan(body, carry, jnp.arange(num_steps))
    state = carry[0]
    x, g = stats(state)
    eps, sigma, alpha = _parameters(x, g, jnp.float32(num_steps), mult, slowdown)
    eps = eps / jnp.sqrt(temp)
    inv_mass = jax.tree.map(
        lambda v, ex: jnp.asarray(v, jnp.result_type(ex)), unravel(sigma**2), example
    )
    tuned = eqx.tree_at(lambda s: s.step_size, sampler, eps)
    tuned = eqx.tree_at(lambda s: s.alpha, tuned, alpha)
    tuned = eqx.tree_at(lambda s: s.delta, tuned, 0.5 * alpha)
    tuned = eqx.tree_at(lambda s: s.inverse_mass, tuned, inv_mass)
    params = {"step_size": eps, "alpha": alpha, "delta": 0.5 * alpha, "inverse_mass": inv_mass}
    final = accs[-max(num_steps // 10, 1) :]
    grads = jnp.float32(n) * (num_steps + 1)
    return tuned, params, state.position, jnp.mean(final), jnp.float32(jnp.nan), grads


_meads_jit = jax.jit(_meads_warmup, static_argnums=(0,), static_argnames=("num_steps", "folds"))
