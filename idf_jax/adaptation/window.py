"""Stan-style window adaptation (`method="window"`): step size and diagonal inverse mass.

`adapt(sampler, key, x0_batch, num_steps)` warms up a batch of chains and returns the
sampler with its tuned parameters (array leaves, not Python floats). It is a pure
function of arrays: it runs under `jax.jit` and `jax.vmap` (over keys, targets, energy
parameters) and compiles once per sampler structure.

`sampler` is either a sampler with a `step_size` field (`idf.mala(E, 0.1)`,
`idf.hmc(E, 0.1, 10)`; samplers with an `inverse_mass` field get a diagonal inverse
mass adapted too), or a factory `sampler_factory(step_size)` /
`sampler_factory(step_size, inverse_mass=None)` -> Sampler, called inside the compiled
warm-up with traced arguments (held static: pass the same function to reuse the
compiled warm-up). Examples:

    sampler, params = idf.adapt(idf.mala(E, 0.1), key, x0, 500)
    sampler, params = idf.adapt(idf.hmc(E, 0.1, 10), key, x0, 500)   # + inverse mass
    sampler, params = idf.adapt(lambda step_size: idf.mala(E, step_size), key, x0, 500)
    trace = idf.sample(sampler, key2, x0, 1000)

Algorithm (Stan's windowed warm-up, Hoffman & Gelman 2014 dual averaging):
- one step size shared by all chains, tuned by dual averaging on the acceptance
  probability averaged over chains: with H_t the running mean of (target - alpha_t),
  log eps_t = mu - sqrt(t) / gamma * H_t, and the returned value is the weighted
  average log eps_bar (gamma = 0.05, t0 = 10, kappa = 0.75, mu = log(10 eps_0));
- the inverse mass is the per-coordinate variance of the positions, pooled over chains
  and over the steps of doubling "slow" windows (Welford accumulators, shrunk towards
  1e-3: var * n / (n + 5) + 1e-3 * 5 / (n + 5)); after each window dual averaging
  restarts from the current step size;
- memory is a fixed set of accumulators: it does not grow with `num_steps`;
- `dense_mass=True` (`method="window_dense"`) estimates the full (D, D) covariance of the
  raveled positions instead (same windows and shrinkage, towards 1e-3 I), for samplers
  whose kernels take a dense metric (hmc, dynamic_hmc, ghmc).

Default targets: 0.574 for Langevin-type proposals (MALA, the optimal scaling of
Roberts & Rosenthal 1998) and 0.8 for HMC (samplers whose info carries an
`energy_error`; Stan's default, which keeps energy errors small for energy-law
fidelity). Unadjusted samplers (ula, underdamped_langevin) accept every step, so an
acceptance target cannot tune them: `adapt` raises for them unless
`adapt_step_size=False` (inverse mass only).

The initial step size (when not given) follows Hoffman & Gelman's heuristic inside the
graph: from 0.1, double or halve until the mean one-step acceptance from x0 crosses the
target (at most 30 times, a `lax.while_loop` on stop-gradient inputs).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import ArgumentError, as_key, is_traced
from .._custom_types import PyTree
from ..run._scan import init_chains, step_chains
from ..samplers._base import Sampler, check_positive, check_positive_int

__all__ = ["AdaptationResult", "default_target_acceptance", "grads_per_step", "window_adapt_run"]

MALA_TARGET = 0.574
HMC_TARGET = 0.8


class AdaptationResult(NamedTuple):
    """Everything the warm-up produced (a PyTree: it passes through jit and vmap).

    sampler: the tuned sampler (its step size and inverse mass are array leaves).
    params: {'step_size': () array, 'inverse_mass': PyTree like one state} (the latter
        only for samplers that take one).
    positions: (chains, ...) positions at the end of the warm-up.
    acceptance_rate: () mean acceptance over the final 10 % of the warm-up (for the
        unadjusted MCLMC: 1).
    target_acceptance: () the acceptance the step size was tuned to (MCLMC: NaN, it is
        tuned to an energy-error variance instead).
    num_grad_evals: () gradient evaluations the warm-up spent, summed over all chains
        (the tuning cost; divide by the number of chains for one chain's share).
    """

    sampler: Sampler
    params: dict
    positions: PyTree
    acceptance_rate: Float[Array, ""]
    target_acceptance: Float[Array, ""]
    num_grad_evals: Array | None = None


class _Factory(eqx.Module):
    """A `(step_size[, inverse_mass]) -> Sampler` factory, held static."""

    fn: Callable[..., Sampler] = eqx.field(static=True)
    takes_mass: bool = eqx.field(static=True)

    def build(self, step_size, inverse_mass) -> Sampler:
        if self.takes_mass:
            return self.fn(step_size, inverse_mass=inverse_mass)
        return self.fn(step_size)


class _Template(eqx.Module):
    """A sampler whose `step_size` (and `inverse_mass`) fields are replaced."""

    sampler: Sampler
    takes_mass: bool = eqx.field(static=True)

    def build(self, step_size, inverse_mass) -> Sampler:
        s = eqx.tree_at(lambda t: t.step_size, self.sampler, step_size)
        if self.takes_mass and inverse_mass is not None:
            s = eqx.tree_at(lambda t: t.inverse_mass, s, inverse_mass)
        return s


def _unit_mass(example: PyTree, takes_mass: bool, dense: bool) -> Any:
    """The identity inverse mass: ones like one state, or the (D, D) identity when dense."""
    if not takes_mass:
        return None
    if dense:
        return jnp.eye(ravel_pytree(example)[0].shape[0], dtype=jnp.float32)
    return jax.tree.map(lambda l: jnp.ones_like(l, jnp.float32), example)


def _grads_one(sampler: Sampler) -> float:
    """Gradient evaluations of one transition of a sampler without a `num_grad_evals` info."""
    return float(getattr(sampler, "num_integration_steps", 1))


def grads_per_step(sampler: Sampler, info) -> Array:
    """(chains,) gradient evaluations of one vmapped step: `info.num_grad_evals` or
    `info.num_integration_steps` (NUTS) when the sampler reports it, else the sampler's
    `num_integration_steps` (HMC) or 1 (Langevin)."""
    acc = jnp.asarray(info.acceptance_rate)
    for name in ("num_grad_evals", "num_integration_steps"):  # NUTS: its trajectory's
        if hasattr(info, name):
            return jnp.asarray(getattr(info, name), jnp.float32) * jnp.ones(acc.shape, jnp.float32)
    return jnp.full(acc.shape, _grads_one(sampler), jnp.float32)


def _takes_inverse_mass(factory) -> bool:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    return "inverse_mass" in params


def default_target_acceptance(info) -> float:
    """0.8 for samplers whose info has `energy_error` (HMC-type), else 0.574 (MALA-type)."""
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


def window_adapt_run(
    sampler: Sampler | Callable[..., Sampler],
    key: PRNGKeyArray,
    x0_batch: PyTree,
    num_steps: int,
    target_acceptance: float | Array | None = None,
    *,
    initial_step_size: float | Array | None = None,
    adapt_mass: bool | None = None,
    adapt_step_size: bool = True,
    dense_mass: bool = False,
) -> AdaptationResult:
    """The window warm-up, returning the full `AdaptationResult` (see the module doc).

    Args (beyond `adapt`'s):
        initial_step_size: eps_0; default: found by doubling / halving from 0.1 until the
            mean acceptance of one step from x0 crosses the target (Hoffman & Gelman's
            heuristic, all chains at once, inside the graph).
        adapt_mass: default True when the sampler takes an `inverse_mass`.
        adapt_step_size: False keeps `initial_step_size` and tunes only the mass.
        dense_mass: estimate a dense (D, D) inverse mass (the positions' covariance,
            D = the size of one state, shrunk towards 1e-3 I like the diagonal) instead of
            a diagonal one (`method="window_dense"`); for samplers whose kernels take a
            dense metric (hmc, dynamic_hmc, ghmc).
    """
    num_steps = check_positive_int("num_steps", num_steps)
    if num_steps < 10:
        raise ArgumentError("num_steps", f"num_steps must be >= 10 for adaptation, got {num_steps}")
    if isinstance(sampler, Sampler):
        if not hasattr(sampler, "step_size"):
            raise ArgumentError(
                "sampler", f"{type(sampler).__name__} has no `step_size` field to adapt"
            )
        takes_mass = hasattr(sampler, "inverse_mass")
        builder: _Factory | _Template = _Template(sampler, takes_mass)
    elif callable(sampler):
        takes_mass = _takes_inverse_mass(sampler)
        builder = _Factory(sampler, takes_mass)
    else:
        raise ArgumentError(
            "sampler",
            "sampler must be a Sampler or a callable (step_size[, inverse_mass]) -> Sampler",
        )
    leaves = jax.tree.leaves(x0_batch)
    if not leaves or any(jnp.ndim(l) == 0 for l in leaves):
        raise ArgumentError(
            "x0_batch", "x0_batch must be a PyTree of arrays with a leading chain axis"
        )
    n = int(leaves[0].shape[0])
    if any(l.shape[0] != n for l in leaves):
        raise ArgumentError("x0_batch", "every leaf of x0_batch needs the same leading chain axis")
    if adapt_mass is None:
        adapt_mass = takes_mass
    if adapt_mass and not takes_mass:
        raise ArgumentError(
            "adapt_mass", "adapt_mass=True needs a sampler with an `inverse_mass` parameter"
        )
    if not isinstance(dense_mass, bool):
        raise ArgumentError("dense_mass", f"dense_mass must be True or False, got {dense_mass!r}")
    if dense_mass and not (takes_mass and adapt_mass):
        raise ArgumentError(
            "dense_mass", "a dense mass needs a sampler with an `inverse_mass` parameter"
        )
    if initial_step_size is not None:
        check_positive("initial_step_size", initial_step_size)
    if not adapt_step_size and initial_step_size is None:
        raise ArgumentError("initial_step_size", "adapt_step_size=False needs initial_step_size")
    if target_acceptance is not None and not is_traced(target_acceptance):
        t = float(target_acceptance)
        if not 0.0 < t < 1.0:
            raise ArgumentError(
                "target_acceptance", f"target_acceptance must be in (0, 1), got {t}"
            )
    key = as_key(key)

    # A probe sampler tells whether acceptance can tune it and which target applies.
    example = jax.tree.map(lambda l: l[0], x0_batch)
    ones = _unit_mass(example, takes_mass, dense_mass)
    probe = builder.build(jnp.asarray(0.1), ones)
    if not isinstance(probe, Sampler):
        raise ArgumentError(
            "sampler", f"the factory must return an idf Sampler, got {type(probe).__name__}"
        )
    if adapt_step_size and getattr(type(probe), "is_adjusted", True) is False:
        raise ArgumentError(
            "sampler",
            f"{type(probe).__name__} is unadjusted (it accepts every step): an acceptance "
            "target cannot tune its step size; choose it otherwise and pass "
            "adapt_step_size=False, initial_step_size=...",
        )
    collect, window_end = (
        _windows(num_steps)
        if adapt_mass
        else (np.zeros(num_steps, bool), np.zeros(num_steps, bool))
    )
    final_phase = np.zeros(num_steps, bool)
    final_phase[num_steps - max(int(0.1 * num_steps), 1) :] = True
    eps0 = -1.0 if initial_step_size is None else initial_step_size
    dynamic, static = eqx.partition(builder, eqx.is_array)
    out = _warmup_jit(
        static,
        dynamic,
        key,
        x0_batch,
        jnp.asarray(eps0, jnp.float32),
        None if target_acceptance is None else jnp.asarray(target_acceptance, jnp.float32),
        jnp.asarray(collect),
        jnp.asarray(window_end),
        jnp.asarray(final_phase),
        adapt_eps=bool(adapt_step_size),
        adapt_mass=bool(adapt_mass),
        dense=dense_mass,
    )
    tuned, params, positions, acc_final, acc_all_one, target_used, n_grads = out
    if adapt_step_size and not is_traced(acc_all_one) and bool(acc_all_one):
        raise ArgumentError(
            "sampler",
            "the sampler accepted every step of the warm-up: an unadjusted sampler cannot "
            "be tuned by an acceptance target; choose its step size otherwise and pass "
            "adapt_step_size=False, initial_step_size=...",
        )
    step = params["step_size"]
    if not is_traced(step) and not (np.isfinite(float(step)) and float(step) > 0):
        raise ValueError(f"adaptation failed: step size {float(step)}")
    return AdaptationResult(tuned, params, positions, acc_final, target_used, n_grads)


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


def _mean_acceptance(sampler: Sampler, keys, state) -> Array:
    _, info = jax.vmap(sampler.step)(keys, state)  # one probe step from the same state
    acc = jnp.asarray(info.acceptance_rate, jnp.float32)
    return jnp.nanmean(jnp.where(jnp.isfinite(acc), acc, 0.0))


def _find_step_size(builder, keys, state0, ones, target) -> Array:
    """Hoffman & Gelman: from 0.1, double / halve until the acceptance crosses `target`."""
    builder, state0 = jax.lax.stop_gradient((builder, state0))

    def acc(eps):
        return _mean_acceptance(builder.build(eps, ones), keys, state0)

    eps = jnp.float32(0.1)
    direction = jnp.where(acc(eps) > target, 1.0, -1.0)

    def cond(c):
        i, _, done = c
        return (~done) & (i < 30)

    def body(c):
        i, eps, _ = c
        nxt = eps * 2.0**direction
        a = acc(nxt)
        crossed = jnp.where(direction > 0, ~(a > target), a > target)
        new = jnp.where(crossed, jnp.where(direction < 0, nxt, eps), nxt)
        return i + 1, new, crossed

    _, eps, _ = jax.lax.while_loop(cond, body, (jnp.int32(0), eps, jnp.array(False)))
    return eps


def _warmup(
    static,
    dynamic,
    key,
    x0_batch,
    eps_in,
    target,
    collect,
    window_end,
    final_phase,
    *,
    adapt_eps,
    adapt_mass,
    dense=False,
):
    builder = eqx.combine(dynamic, static)
    takes_mass = builder.takes_mass
    n = jax.tree.leaves(x0_batch)[0].shape[0]
    k_init, k_probe, k_run = jax.random.split(key, 3)
    example = jax.tree.map(lambda l: l[0], x0_batch)
    ones = _unit_mass(example, takes_mass, dense)
    probe = builder.build(jnp.float32(0.1), ones)
    state0 = init_chains(probe, x0_batch, jax.random.split(k_init, n))
    probe_keys = jax.random.split(k_probe, n)
    info_shape = jax.eval_shape(lambda s: jax.vmap(probe.step)(probe_keys, s)[1], state0)
    if not hasattr(info_shape, "acceptance_rate"):
        raise ArgumentError("sampler", "the sampler's info must have an `acceptance_rate` field")
    if target is None:
        target = jnp.float32(default_target_acceptance(info_shape))
    if eps_in.ndim == 0:
        eps0 = jnp.where(
            eps_in > 0, eps_in, _find_step_size(builder, probe_keys, state0, ones, target)
        )
    else:
        raise ArgumentError("initial_step_size", "initial_step_size must be a scalar")
    chain_keys = jax.random.split(k_run, n)
    if dense:
        dim = ravel_pytree(example)[0].shape[0]
        mean0: Any = jnp.zeros((dim,), jnp.float32)
        m20: Any = jnp.zeros((dim, dim), jnp.float32)
    else:
        mean0 = m20 = jax.tree.map(jnp.zeros_like, ones) if takes_mass else None

    def body(carry, xs):
        state, da, inv_mass, cnt, mean, m2, acc_sum, acc_cnt, all_one, n_grads = carry
        i, coll, wend, fin = xs
        eps = jnp.exp(da.log_eps) if adapt_eps else eps0
        sampler = builder.build(eps, inv_mass)
        state, info = step_chains(sampler, chain_keys, state, i)
        n_grads = n_grads + jnp.sum(grads_per_step(sampler, info))
        acc = jnp.asarray(info.acceptance_rate, jnp.float32)
        alpha = jnp.nanmean(jnp.where(jnp.isfinite(acc), acc, 0.0))
        all_one = all_one & jnp.all(acc == 1.0)
        da = _da_update(da, alpha, target) if adapt_eps else da
        acc_sum = acc_sum + jnp.where(fin, alpha, 0.0)
        acc_cnt = acc_cnt + jnp.where(fin, 1.0, 0.0)
        if adapt_mass and dense:
            # Welford over chains and steps for the full covariance of the flat positions.
            tot = cnt + n
            xs_ = jax.vmap(lambda x: ravel_pytree(x)[0])(state.position).astype(jnp.float32)
            bmean = jnp.mean(xs_, axis=0)
            centred = xs_ - bmean[None]
            delta = bmean - mean
            update = centred.T @ centred + jnp.outer(delta, delta) * (cnt * n / tot)
            m2 = jnp.where(coll, m2 + update, m2)
            mean = jnp.where(coll, mean + delta * (n / tot), mean)
            cnt = jnp.where(coll, cnt + n, cnt)
            cov = m2 / jnp.maximum(cnt - 1.0, 1.0)
            eye = jnp.eye(cov.shape[0], dtype=cov.dtype)
            reg = cov * (cnt / (cnt + 5.0)) + eye * (1e-3 * 5.0 / (cnt + 5.0))
            inv_mass = jnp.where(wend, 0.5 * (reg + reg.T), inv_mass)
            mean = jnp.where(wend, 0.0, mean)
            m2 = jnp.where(wend, 0.0, m2)
            cnt = jnp.where(wend, 0.0, cnt)
        elif adapt_mass:
            # Welford over chains and steps: batch update with this step's n chains.
            tot = cnt + n
            xs_ = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), state.position)
            bmean = jax.tree.map(lambda x: jnp.mean(x, axis=0), xs_)
            bvar = jax.tree.map(lambda x, bm: jnp.sum((x - bm[None]) ** 2, axis=0), xs_, bmean)
            delta = jax.tree.map(lambda bm, mu: bm - mu, bmean, mean)
            m2 = jax.tree.map(
                lambda m, bv, d: jnp.where(coll, m + bv + d**2 * cnt * n / tot, m),
                m2,
                bvar,
                delta,
            )
            mean = jax.tree.map(lambda mu, d: jnp.where(coll, mu + d * n / tot, mu), mean, delta)
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
        return (state, da, inv_mass, cnt, mean, m2, acc_sum, acc_cnt, all_one, n_grads), None

    carry = (
        state0,
        _da_init(jnp.log(eps0)),
        ones,
        jnp.zeros((), jnp.float32),
        mean0,
        m20,
        jnp.zeros((), jnp.float32),
        jnp.zeros((), jnp.float32),
        jnp.array(True),
        jnp.zeros((), jnp.float32),
    )
    steps = jnp.arange(collect.shape[0])
    carry, _ = jax.lax.scan(body, carry, (steps, collect, window_end, final_phase))
    state, da, inv_mass, _, _, _, acc_sum, acc_cnt, all_one, n_grads = carry
    step_size = jnp.exp(da.log_eps_bar) if adapt_eps else eps0
    params: dict[str, Any] = {"step_size": step_size}
    if takes_mass:
        params["inverse_mass"] = inv_mass if adapt_mass else None
    tuned = builder.build(step_size, params.get("inverse_mass"))
    acc_final = acc_sum / jnp.maximum(acc_cnt, 1.0)
    # The initial step-size search costs at most 31 probe steps of every chain.
    probe_grads = jnp.where(eps_in > 0, 0.0, 31.0 * n * _grads_one(probe))
    return tuned, params, state.position, acc_final, all_one, target, n_grads + probe_grads


_warmup_jit = jax.jit(
    _warmup, static_argnums=(0,), static_argnames=("adapt_eps", "adapt_mass", "dense")
)
