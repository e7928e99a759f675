"""ChEES warm-up (`method="chees"`): step size and trajectory length of jittered HMC.

Hoffman, Radul & Sountsov (2021); BlackJAX `chees_adaptation`. Every step runs one
jittered trajectory per chain (`idf.dynamic_hmc`: n = ceil(U t / eps) leapfrog steps)
and, from all chains together:
- the step size follows dual averaging on the harmonic mean of the acceptance
  probabilities (target 0.651);
- log t follows Adam (learning rate 0.025, updates clipped to +-0.35) up the gradient
  of the ChEES criterion E[(|x' - E x'|^2 - |x - E x|^2)^2] / 4, estimated per chain as
  U t (|x'_c|^2 - |x_c|^2) <x'_c, M^-1 p'_c> (centred, whitened by M^-1), averaged with
  acceptance weights (divergent trajectories left out);
- the returned values are moving averages of log eps and log t with weights
  step^-0.5; t stays in [eps, 1000 eps].
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, PRNGKeyArray

from .. import _tree
from .._checks import ArgumentError, as_key
from .._custom_types import PyTree
from ..run._scan import init_chains
from ..samplers._metric import is_dense
from ..samplers.dynamic_hmc import DynamicHMC, dynamic_hmc_proposal
from ..samplers.langevin import LangevinState
from ._common import check_batch, check_target, da_init, da_update, flat_chains, harmonic_mean
from .window import AdaptationResult

__all__ = ["CHEES_TARGET", "chees_adapt_run"]

CHEES_TARGET = 0.651
"""The ChEES paper's target for the harmonic-mean acceptance."""


def chees_adapt_run(
    sampler: DynamicHMC,
    key: PRNGKeyArray,
    x0_batch: PyTree,
    num_steps: int,
    target_acceptance: float | Array | None = None,
    *,
    learning_rate: float = 0.025,
    max_leapfrog_steps: int = 1000,
) -> AdaptationResult:
    """Tune an `idf.dynamic_hmc` sampler's step size and trajectory length (module doc).

    The sampler's step size is the starting point; the trajectory length starts at it.
    """
    if not isinstance(sampler, DynamicHMC):
        raise ArgumentError(
            "sampler",
            f'method="chees" tunes an idf.dynamic_hmc(...) sampler, got {type(sampler).__name__}',
        )
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 10:
        raise ArgumentError("num_steps", f"num_steps must be an integer >= 10, got {num_steps!r}")
    if check_batch(x0_batch) < 2:
        raise ArgumentError("x0_batch", 'method="chees" needs at least 2 chains')
    if is_dense(sampler.inverse_mass, jax.tree.map(lambda l: l[0], x0_batch)):
        raise ArgumentError("sampler", 'method="chees" needs a diagonal inverse_mass')
    key = as_key(key)
    target = check_target(target_acceptance, CHEES_TARGET)
    dynamic, static = eqx.partition(sampler, eqx.is_array)
    consts = jnp.asarray([learning_rate, max_leapfrog_steps], jnp.float32)
    out = _chees_jit(static, dynamic, key, x0_batch, target, consts, num_steps=num_steps)
    return AdaptationResult(*out)


def _chees_warmup(static, dynamic, key, x0_batch, target, consts, *, num_steps):
    sampler = eqx.combine(dynamic, static)
    lr, max_steps = consts[0], consts[1]
    n = jax.tree.leaves(x0_batch)[0].shape[0]
    state = init_chains(sampler, x0_batch)
    inv_mass = sampler.inverse_mass
    example = jax.tree.map(lambda l: l[0], x0_batch)
    if _tree._is_tree_like(inv_mass, example):
        m_flat = ravel_pytree(inv_mass)[0].astype(jnp.float32)
    else:
        m_flat = jnp.asarray(inv_mass, jnp.float32)
    eps0 = jnp.asarray(sampler.step_size, jnp.float32)

    def propose(k, s, eps, t_len):
        return dynamic_hmc_proposal(
            sampler.energy_fn, k, s, eps, t_len, sampler.temperature, inv_mass
        )

    def body(carry, i):
        state, da, log_t, adam_m, adam_v, log_eps_ma, log_t_ma, grads = carry
        eps = jnp.exp(da.log_eps)
        t_len = jnp.exp(log_t)
        keys = jax.random.split(jax.random.fold_in(key, i), n + 1)
        x, p, e, g, log_ratio, diverged, _, steps, jitter = jax.vmap(propose, (0, 0, None, None))(
            keys[:n], state, eps, t_len
        )
        u = jax.random.uniform(keys[n], (n,))
        accept = jnp.log(u) < log_ratio
        acc = jnp.exp(jnp.minimum(log_ratio, 0.0)).astype(jnp.float32)
        ok = ~diverged
        new_state = jax.vmap(_tree.select)(accept, LangevinState(x, e, g), state)
        # Step size: dual averaging on the harmonic-mean acceptance.
        da_new = da_update(da, harmonic_mean(acc, ok), target)
        da = jax.tree.map(lambda a, b: jnp.where(jnp.isfinite(da_new.log_eps), a, b), da_new, da)
        # Trajectory length: Adam up the ChEES gradient (w.r.t. log t).
        w = jnp.where(ok, acc, 0.0)
        xp = flat_chains(x).astype(jnp.float32)
        x0 = flat_chains(state.position).astype(jnp.float32)
        xp_c = xp - (jnp.sum(w[:, None] * xp, 0) / jnp.maximum(jnp.sum(w), 1e-20))[None]
        x0_c = x0 - jnp.mean(x0, 0)[None]
        vel = flat_chains(p).astype(jnp.float32) * jnp.atleast_1d(m_flat)[None]
        inv_sqrt = (1.0 / jnp.sqrt(jnp.atleast_1d(m_flat)))[None]
        diff = jnp.sum((xp_c * inv_sqrt) ** 2, 1) - jnp.sum((x0_c * inv_sqrt) ** 2, 1)
        per_chain = (
            jitter.astype(jnp.float32) * t_len * diff * jnp.sum(xp_c * inv_sqrt * vel * inv_sqrt, 1)
        )
        per_chain = jnp.where(ok & jnp.isfinite(per_chain), per_chain, 0.0)
        grad = jnp.sum(w * per_chain) / (jnp.sum(w) + 1e-20)
        step = (i + 1).astype(jnp.float32)
        adam_m = 0.9 * adam_m + 0.1 * grad
        adam_v = 0.999 * adam_v + 0.001 * grad**2
        m_hat = adam_m / (1.0 - 0.9**step)
        v_hat = adam_v / (1.0 - 0.999**step)
        update = jnp.clip(lr * m_hat / (jnp.sqrt(v_hat) + 1e-8), -0.35, 0.35)
        log_t_new = log_t + update
        log_t = jnp.where(jnp.isfinite(log_t_new), log_t_new, log_t)
        log_t = jnp.clip(log_t, da.log_eps, da.log_eps + jnp.log(max_steps))
        wt = step**-0.5
        log_eps_ma = (1.0 - wt) * log_eps_ma + wt * da.log_eps
        log_t_ma = (1.0 - wt) * log_t_ma + wt * log_t
        grads = grads + jnp.sum(steps.astype(jnp.float32))
        return (new_state, da, log_t, adam_m, adam_v, log_eps_ma, log_t_ma, grads), acc

    z = jnp.zeros((), jnp.float32)
    log_eps0 = jnp.log(eps0)
    carry = (state, da_init(log_eps0), log_eps0, z, z, z, z, jnp.float32(n))
    carry, accs = jax.lax.scan(body, carry, jnp.arange(num_steps))
    state, _, _, _, _, log_eps_ma, log_t_ma, grads = carry
    eps = jnp.exp(log_eps_ma)
    t_len = jnp.clip(jnp.exp(log_t_ma), eps, max_steps * eps)
    tuned = eqx.tree_at(lambda s: s.step_size, sampler, eps)
    tuned = eqx.tree_at(lambda s: s.trajectory_length, tuned, t_len)
    final = accs[-max(num_steps // 10, 1) :]
    params = {"step_size": eps, "trajectory_length": t_len}
    return tuned, params, state.position, jnp.mean(final), target, grads


_chees_jit = jax.jit(_chees_warmup, static_argnums=(0,), static_argnames=("num_steps",))
