"""Step-size and diagonal inverse-mass adaptation over all chains at once.

`adapt(sampler_factory, key, x0_batch, num_steps)` warms up a batch of chains and
returns a ready sampler with its tuned parameters.

The factory convention: `sampler_factory(step_size)` or
`sampler_factory(step_size, inverse_mass=None)` returns an `idf.Sampler`. When the factory
has an `inverse_mass` parameter, a diagonal inverse mass (a PyTree like one state) is
adapted too; otherwise only the step size. Both arguments may be traced arrays: the
factory is called inside the compiled warm-up loop. Examples:

    sampler, params = idf.adapt(lambda step_size: idf.mala(E, step_size), key, x0, 500)
    sampler, params = idf.adapt(
        lambda step_size, inverse_mass=None: idf.hmc(E, step_size, 10, inverse_mass=inverse_mass),
        key, x0, 500)
    trace = idf.sample(sampler, key2, params_positions_or_x0, 1000)

Algorithm (Stan's windowed warm-up, Hoffman & Gelman 2014 dual averaging):
- one step size shared by all chains, tuned by dual averaging on the acceptance
  probability averaged over chains: with H_t the running mean of (target - alpha_t),
  log eps_t = mu - sqrt(t) / gamma * H_t, and the returned value is the weighted
  average log eps_bar (gamma = 0.05, t0 = 10, kappa = 0.75, mu = log(10 eps_0));
- the inverse mass is the per-coordinate variance of the positions, pooled over chains
  and over the steps of doubling "slow" windows (Welford accumulators, shrunk towards
  1e-3: var * n / (n + 5) + 1e-3 * 5 / (n + 5)); after each window dual averaging
  restarts from the current step size;
- memory is a fixed set of accumulators: it does not grow with `num_steps`.

Default targets: 0.574 for Langevin-type proposals (MALA, the optimal scaling of
Roberts & Rosenthal 1998) and 0.8 for HMC (samplers whose info carries an
`energy_error`; Stan's default, which keeps energy errors small for energy-law
fidelity). Unadjusted samplers (ula, underdamped_langevin) accept every step, so an
acceptance target cannot tune them: `adapt` raises for them unless
`adapt_step_size=False` (inverse mass only).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .samplers._base import Sampler, check_positive, check_positive_int

__all__ = ["adapt", "adapt_run", "AdaptationResult", "default_target_acceptance"]

PyTree = Any

MALA_TARGET = 0.574
HMC_TARGET = 0.8


class AdaptationResult(NamedTuple):
    """Everything the warm-up produced.

    sampler: the factory's sampler at the tuned parameters.
    params: dict with `step_size` (float) and, when the factory takes one,
        `inverse_mass` (a PyTree like one state); `sampler_factory(**params)` rebuilds it.
    positions: (chains, ...) positions at the end of the warm-up (good starting points).
    acceptance_rate: () mean acceptance over the final (fixed-mass) phase.
    target_acceptance: () the target used.
    """

    sampler: Sampler
    params: dict
    positions: PyTree
    acceptance_rate: Float[Array, ""]
    target_acceptance: float


def _takes_inverse_mass(factory) -> bool:
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return False
    return "inverse_mass" in sig.parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()
    )


def _make(factory, mass: bool, step_size, inverse_mass):
    s = factory(step_size, inverse_mass=inverse_mass) if mass else factory(step_size)
    if not isinstance(s, Sampler) and not (hasattr(s, "init") and hasattr(s, "step")):
        raise ValueError(
            f"sampler_factory must return an idf.Sampler (init, step), got {type(s).__name__}"
        )
    return s


def default_target_acceptance(info) -> float:
    """0.8 for HMC-like infos (with `energy_error`), 0.574 otherwise (MALA)."""
    return HMC_TARGET if hasattr(info, "energy_error") else MALA_TARGET


def _windows(num_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Stan-like layout: (collect[i], window_end[i]) booleans per step.

    15% initial fast phase (step size only), doubling slow windows collecting the
    variance, 10% final fast phase with the final mass. For < 20 steps, no mass windows.
    """
    collect = np.zeros(num_steps, bool)
    end = np.zeros(num_steps, bool)
    if num_steps < 20:
        return collect, end
    start = int(0.15 * num_steps)
    stop = num_steps - max(int(0.1 * num_steps), 1)
    w = max((stop - start) // 7, 1)  # windows w, 2w, 4w: 7w in all
    edges = [start]
    while edges[-1] < stop:
        nxt = edges[-1] + w
        w *= 2
        if stop - nxt < w:  # the last window absorbs the remainder
            nxt = stop
        edges.append(nxt)
    for a, b in zip(edges[:-1], edges[1:]):
        collect[a:b] = True
        end[b - 1] = True
    return collect, end


def adapt(
    sampler_factory: Callable[..., Sampler],
    key: PRNGKeyArray,
    x0_batch: PyTree,
    num_steps: int,
    target_acceptance: float | None = None,
    **kwargs,
) -> tuple[Sampler, dict]:
    """Tune step size (and a diagonal inverse mass) for `sampler_factory`; see the module doc.

    Args:
        sampler_factory: `(step_size)` or `(step_size, inverse_mass=None)` -> Sampler.
        key: PRNG key.
        x0_batch: PyTree with a leading chain axis; every chain contributes.
        num_steps: warm-up steps per chain (>= 10).
        target_acceptance: in (0, 1); default 0.574 (MALA-type) or 0.8 (HMC).
        **kwargs: `initial_step_size`, `adapt_mass`, `adapt_step_size` (see `adapt_run`).

    Returns:
        (sampler, params): the tuned sampler and {'step_size': float,
        'inverse_mass': PyTree} (`inverse_mass` only when adapted).
    """
    res = adapt_run(sampler_factory, key, x0_batch, num_steps, target_acceptance, **kwargs)
    return res.sampler, res.params


def adapt_run(
    sampler_factory: Callable[..., Sampler],
    key: PRNGKeyArray,
    x0_batch: PyTree,
    num_steps: int,
    target_acceptance: float | None = None,
    *,
    initial_step_size: float | None = None,
    adapt_mass: bool | None = None,
    adapt_step_size: bool = True,
) -> AdaptationResult:
    """`adapt`, returning the full `AdaptationResult` (final positions, acceptance).

    Args (beyond `adapt`'s):
        initial_step_size: eps_0; default: found by doubling / halving from 0.1 until the
            mean acceptance of one step from x0 crosses the target (Hoffman & Gelman's
            heuristic, all chains at once).
        adapt_mass: default True when the factory takes `inverse_mass`.
        adapt_step_size: False keeps `initial_step_size` and tunes only the mass.
    """
    num_steps = check_positive_int("num_steps", num_steps)
    if num_steps < 10:
        raise ValueError(f"num_steps must be >= 10 for adaptation, got {num_steps}")
    if not callable(sampler_factory):
        raise ValueError("sampler_factory must be callable: (step_size[, inverse_mass]) -> Sampler")
    leaves = jax.tree.leaves(x0_batch)
    if not leaves or any(jnp.ndim(l) == 0 for l in leaves):
        raise ValueError("x0_batch must be a PyTree of arrays with a leading chain axis")
    n = int(leaves[0].shape[0])
    if any(l.shape[0] != n for l in leaves):
        raise ValueError("every leaf of x0_batch needs the same leading chain axis")
    takes_mass = _takes_inverse_mass(sampler_factory)
    if adapt_mass is None:
        adapt_mass = takes_mass
    if adapt_mass and not takes_mass:
        raise ValueError("adapt_mass=True needs a factory with an `inverse_mass` parameter")
    if initial_step_size is not None:
        check_positive("initial_step_size", initial_step_size)
    if not adapt_step_size and initial_step_size is None:
        raise ValueError("adapt_step_size=False needs initial_step_size")
    key = jax.random.key(key) if isinstance(key, int) else key
    k_init, k_probe, k_run = jax.random.split(key, 3)

    example = jax.tree.map(lambda l: l[0], x0_batch)
    ones = jax.tree.map(lambda l: jnp.ones_like(l, jnp.float32), example) if takes_mass else None

    def build(eps, inv_mass):
        return _make(sampler_factory, takes_mass, eps, inv_mass)

    probe_sampler = build(0.1 if initial_step_size is None else float(initial_step_size), ones)
    init_keys = jax.random.split(k_init, n)
    state0 = jax.vmap(probe_sampler.init)(x0_batch, init_keys)
    info_shape = jax.eval_shape(
        lambda s: jax.vmap(probe_sampler.step)(jax.random.split(k_probe, n), s)[1], state0
    )
    if not hasattr(info_shape, "acceptance_rate"):
        raise ValueError("the sampler's info must have an `acceptance_rate` field")
    if target_acceptance is None:
        target_acceptance = default_target_acceptance(info_shape)
    target_acceptance = float(target_acceptance)
    if not 0.0 < target_acceptance < 1.0:
        raise ValueError(f"target_acceptance must be in (0, 1), got {target_acceptance}")

    @jax.jit
    def probe(eps):
        s = build(eps, ones)
        _, info = jax.vmap(s.step)(jax.random.split(k_probe, n), state0)
        acc = jnp.asarray(info.acceptance_rate, jnp.float32)
        fractional = jnp.any((acc > 0.0) & (acc < 1.0))
        return jnp.nanmean(acc), fractional

    # A Metropolis acceptance probability is continuous in (0, 1); an unadjusted sampler
    # reports exactly 1 (or 0 on divergence) whatever the step size.
    seen_fractional = False

    def probe_acc(e):
        nonlocal seen_fractional
        m, f = probe(e)
        seen_fractional = seen_fractional or bool(f)
        return float(m)

    if initial_step_size is None:
        eps = 0.1
        direction = 1.0 if probe_acc(eps) > target_acceptance else -1.0
        for _ in range(30):
            nxt = eps * 2.0**direction
            acc = probe_acc(nxt)
            if (direction > 0 and not acc > target_acceptance) or (
                direction < 0 and acc > target_acceptance
            ):
                if direction < 0:
                    eps = nxt
                break
            eps = nxt
    else:
        eps = float(initial_step_size)
        if adapt_step_size:
            for f in (0.25, 1.0, 4.0, 16.0):
                probe_acc(eps * f)
    if adapt_step_size and not seen_fractional:
        raise ValueError(
            "the sampler's acceptance is always exactly 0 or 1: an unadjusted sampler (ula, "
            "underdamped_langevin) cannot be tuned by an acceptance target; choose its "
            "step size otherwise and pass adapt_step_size=False, initial_step_size=..."
        )

    collect, window_end = (
        _windows(num_steps)
        if adapt_mass
        else (np.zeros(num_steps, bool), np.zeros(num_steps, bool))
    )
    final_phase = np.zeros(num_steps, bool)
    final_phase[num_steps - max(int(0.1 * num_steps), 1) :] = True
    run = _make_warmup(build, takes_mass, n, target_acceptance, bool(adapt_step_size))
    out = run(
        k_run,
        state0,
        jnp.float32(eps),
        ones,
        jnp.asarray(collect),
        jnp.asarray(window_end),
        jnp.asarray(final_phase),
    )
    state, log_eps_bar, log_eps, inv_mass, acc_final, acc_all_one = out
    step_size = float(jnp.exp(log_eps_bar)) if adapt_step_size else eps
    if adapt_step_size and bool(acc_all_one):
        raise ValueError(
            "the sampler accepted every step of the warm-up: an unadjusted sampler (ula, "
            "underdamped_langevin) cannot be tuned by an acceptance target; choose its "
            "step size otherwise and pass adapt_step_size=False, initial_step_size=..."
        )
    if not np.isfinite(step_size) or step_size <= 0:
        raise ValueError(f"adaptation failed: step size {step_size}")
    params: dict[str, Any] = {"step_size": step_size}
    if takes_mass:
        params["inverse_mass"] = inv_mass if adapt_mass else None
    sampler = (
        sampler_factory(step_size, inverse_mass=params["inverse_mass"])
        if takes_mass
        else sampler_factory(step_size)
    )
    return AdaptationResult(sampler, params, state.position, acc_final, target_acceptance)


class _DA(NamedTuple):
    log_eps: Array
    log_eps_bar: Array
    h_bar: Array
    t: Array
    mu: Array


def _da_init(log_eps):
    z = jnp.zeros((), jnp.float32)
    return _DA(log_eps, log_eps, z, z, log_eps + jnp.log(10.0))


def _da_update(da: _DA, alpha, target, gamma=0.05, t0=10.0, kappa=0.75):
    t = da.t + 1.0
    h_bar = (1.0 - 1.0 / (t + t0)) * da.h_bar + (target - alpha) / (t + t0)
    log_eps = da.mu - jnp.sqrt(t) / gamma * h_bar
    w = t ** (-kappa)
    log_eps_bar = w * log_eps + (1.0 - w) * da.log_eps_bar
    return _DA(log_eps, log_eps_bar, h_bar, t, da.mu)


def _make_warmup(build, takes_mass, n, target, adapt_eps):
    @jax.jit
    def run(key, state0, eps0, ones, collect, window_end, final_phase):
        chain_keys = jax.random.split(key, n)
        zeros = jax.tree.map(jnp.zeros_like, ones) if takes_mass else None

        def body(carry, xs):
            state, da, inv_mass, cnt, mean, m2, acc_sum, acc_cnt, all_one = carry
            i, coll, wend, fin = xs
            eps = jnp.exp(da.log_eps) if adapt_eps else eps0
            sampler = build(eps, inv_mass)
            ks = jax.vmap(jax.random.fold_in, (0, None))(chain_keys, i)
            state, info = jax.vmap(sampler.step)(ks, state)
            acc = jnp.asarray(info.acceptance_rate, jnp.float32)
            alpha = jnp.nanmean(jnp.where(jnp.isfinite(acc), acc, 0.0))
            all_one = all_one & jnp.all(acc == 1.0)
            da = _da_update(da, alpha, target) if adapt_eps else da
            acc_sum = acc_sum + jnp.where(fin, alpha, 0.0)
            acc_cnt = acc_cnt + jnp.where(fin, 1.0, 0.0)
            if takes_mass:
                # Welford over chains and steps: batch update with this step's n chains.
                tot = cnt + n
                xs_ = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), state.position)
                bmean = jax.tree.map(lambda x: jnp.mean(x, axis=0), xs_)
                bvar = jax.tree.map(lambda x, bm: jnp.sum((x - bm) ** 2, axis=0), xs_, bmean)
                delta = jax.tree.map(lambda bm, mu: bm - mu, bmean, mean)
                m2 = jax.tree.map(
                    lambda m, bv, d: jnp.where(coll, m + bv + d**2 * cnt * n / tot, m),
                    m2,
                    bvar,
                    delta,
                )
                mean = jax.tree.map(
                    lambda mu, d: jnp.where(coll, mu + d * n / tot, mu), mean, delta
                )
                cnt = jnp.where(coll, cnt + n, cnt)

                def new_mass(m, old):
                    var = m / jnp.maximum(cnt - 1.0, 1.0)
                    reg = var * cnt / (cnt + 5.0) + 1e-3 * 5.0 / (cnt + 5.0)
                    return jnp.where(wend, reg, old)

                inv_mass = jax.tree.map(new_mass, m2, inv_mass)
                mean = jax.tree.map(lambda a: jnp.where(wend, 0.0, a), mean)
                m2 = jax.tree.map(lambda a: jnp.where(wend, 0.0, a), m2)
                cnt = jnp.where(wend, 0.0, cnt)
            if adapt_eps:
                restarted = _da_init(da.log_eps_bar)
                da = jax.tree.map(lambda a, b: jnp.where(wend, a, b), restarted, da)
            return (state, da, inv_mass, cnt, mean, m2, acc_sum, acc_cnt, all_one), None

        log0 = jnp.log(eps0)
        carry = (
            state0,
            _da_init(log0),
            ones,
            jnp.zeros((), jnp.float32),
            zeros,
            zeros,
            jnp.zeros((), jnp.float32),
            jnp.zeros((), jnp.float32),
            jnp.array(True),
        )
        steps = jnp.arange(collect.shape[0])
        carry, _ = jax.lax.scan(body, carry, (steps, collect, window_end, final_phase))
        state, da, inv_mass, _, _, _, acc_sum, acc_cnt, all_one = carry
        return (
            state,
            da.log_eps_bar,
            da.log_eps,
            inv_mass,
            acc_sum / jnp.maximum(acc_cnt, 1.0),
            all_one,
        )

    return run
