"""Tuners of the microcanonical samplers (`method="mclmc"` and `method="mams"`), many chains.

MCLMC (Robnik et al. 2023; BlackJAX `mclmc_find_L_and_step_size`), with the statistics
pooled over all chains:
1. step size from the energy error: with xi = dE^2 / (d * 5e-4) per chain and step,
   weights w = exp(-(log xi / 9)^2 / 2), eps = (sum w xi / eps^6 / sum w)^(-1/6) with an
   exponential forgetting of (m - 1) / (m + 1) per step, m = max(150 / chains, 3) (the
   150 effective samples counted over all chains; Var dE ~ eps^6); a divergent step caps
   eps at 0.8 eps; the phase stops early once converged (below);
2. the same, collecting the eps-weighted variance of the positions: L = sqrt(sum var)
   or, with diagonal preconditioning, M^-1 = var and L = sqrt(d), then more step-size
   steps at the new mass (`dense_mass=True`: the eps-weighted (D, D) covariance is
   M^-1, shrunk like the window warm-up's, and L = sqrt(d));
3. L = 0.4 eps tau from the effective sample size (tau = steps per effective sample,
   averaged over dimensions) of a short run at the tuned parameters.

MAMS (Robnik et al., arXiv 2503.01707; BlackJAX `adjusted_mclmc_find_L_and_step_size`):
the step size tuned to the mean acceptance 0.9 over all chains (L / eps held at its initial
ratio): the mean acceptance a gives the energy-error scale sigma(a) with a = 2 Phi(-sigma/2)
(dH ~ N(sigma^2 / 2, sigma^2)), and log eps moves by 0.25 log(sigma(0.9) / sigma(a)) (a
damped Newton step, dH ~ eps^2 at fixed L; at most x2 up, x4 down), the last steps
averaged; then the positions' variance sets M^-1 (diagonal; `dense_mass=True`: their
(D, D) covariance) and L = sqrt(d) (no preconditioning: L = sqrt(sum var / M^-1)),
the step-size update again at that L, then L = 0.5 L / (effective samples per transition)
(at most 2 L) from a run at the tuned step size, and a last step-size phase at the final
L. Phases take at most 20 / 20 / 25 / 20
/ 15 % of the warm-up.

Early stop (both tuners): a step-size phase that collects no moments ends after
`min_steps` (10) once the exponentially smoothed change of log eps per step falls below
`tolerance` (0.02): for MCLMC |change| (its eps estimate is itself averaged), for MAMS the
signed change in magnitude, since its per-step update follows the mean acceptance of one
step, whose noise keeps the smoothed |change| above 0.02 after eps has converged (about
0.08 with 64 chains on a 20-d Gaussian); the signed average tends to 0 there and stays
large while eps still moves one way.
Unused steps cost nothing, so `num_steps` is an upper bound.

The sampler passed in gives the initial step size, L and the energy; everything runs
in one compiled call (jit / vmap safe) and returns arrays.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, PRNGKeyArray

from .._checks import ArgumentError, as_key, positive, positive_int
from .._custom_types import PyTree
from ..run._scan import init_chains, step_chains
from ..samplers import _metric
from ..samplers.mclmc import MAMS, MCLMC
from ._common import check_batch, check_target, ess_per_dim, flat_chains
from .window import AdaptationResult, grads_per_step

__all__ = ["MAMS_TARGET", "mams_adapt_run", "mclmc_adapt_run"]

MAMS_TARGET = 0.9
"""The MAMS paper's target acceptance rate."""


def _rebuild(sampler, step_size, L, inverse_mass):
    s = eqx.tree_at(lambda t: t.step_size, sampler, step_size)
    s = eqx.tree_at(lambda t: t.L, s, L)
    return eqx.tree_at(lambda t: t.inverse_mass, s, inverse_mass)


def _phases(num_steps: int, fracs: tuple[float, ...]) -> tuple[int, ...]:
    sizes = [max(int(round(f * num_steps)), 1) for f in fracs[:-1]]
    return (*sizes, max(num_steps - sum(sizes), 2))


def _check(sampler, kind, name, num_steps, x0_batch, key):
    if not isinstance(sampler, kind):
        raise ArgumentError(
            "sampler",
            f'method="{name}" tunes an idf.{name}(...) sampler, got {type(sampler).__name__}',
        )
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 20:
        raise ArgumentError("num_steps", f"num_steps must be an integer >= 20, got {num_steps!r}")
    check_batch(x0_batch)
    return as_key(key)


def check_bool(name: str, value: Any) -> bool:
    """`value` as a bool, or `ArgumentError` naming `name`."""
    if not isinstance(value, bool):
        raise ArgumentError(name, f"{name} must be True or False, got {value!r}")
    return value


def _flat_inverse_mass(inv_mass, example, dim: int) -> Array:
    """The diagonal inverse mass as a (d,) vector (a scalar broadcast)."""
    if jax.tree.structure(inv_mass) == jax.tree.structure(example) and jnp.ndim(
        jax.tree.leaves(inv_mass)[0]
    ):
        return ravel_pytree(inv_mass)[0].astype(jnp.float32)
    return jnp.full((dim,), jnp.asarray(inv_mass, jnp.float32))


def _moments_update(sums, x_flat, weight, shift):
    """Weighted sums of 1, x - shift and (x - shift)^2 (dense: the outer products)."""
    s0, s1, s2 = sums
    xc = x_flat - shift[None]
    sq = xc.T @ xc if s2.ndim == 2 else (xc**2).sum(0)
    return s0 + weight * x_flat.shape[0], s1 + weight * xc.sum(0), s2 + weight * sq


def _zero_sums(dim: int, dense: bool):
    z = jnp.zeros((), jnp.float32)
    d = jnp.zeros((dim,), jnp.float32)
    return z, d, jnp.zeros((dim, dim) if dense else (dim,), jnp.float32)


def _covariance(sums):
    """Variance (d,) or covariance (d, d) from `_moments_update` sums (shift cancels)."""
    s0, s1, s2 = sums
    w = jnp.maximum(s0, 1e-30)
    mean = s1 / w
    if s2.ndim == 2:
        cov = s2 / w - jnp.outer(mean, mean)
        return 0.5 * (cov + cov.T)
    return jnp.maximum(s2 / w - mean**2, 1e-10)


def _dense_inverse_mass(cov, count):
    """The covariance shrunk towards 1e-3 I as in the window warm-up, with a relative jitter."""
    eye = jnp.eye(cov.shape[0], dtype=cov.dtype)
    jitter = 1e-6 * jnp.mean(jnp.diag(cov))
    return cov * (count / (count + 5.0)) + eye * (1e-3 * 5.0 / (count + 5.0) + jitter)


def _z_variance_sum(cov, inv_mass, example, dim: int):
    """sum of the variances in the sampler's coordinates: tr(M cov) (diag or dense M^-1)."""
    if _metric.is_dense(inv_mass, example):
        m = jnp.asarray(jax.tree.leaves(inv_mass)[0], jnp.float32)
        full = cov if cov.ndim == 2 else jnp.diag(cov)
        return jnp.trace(jnp.linalg.solve(m, full))
    var = jnp.diag(cov) if cov.ndim == 2 else cov
    return jnp.sum(var / _flat_inverse_mass(inv_mass, example, dim))


def _mode(diagonal_preconditioning: Any, dense_mass: Any) -> str:
    precond = check_bool("diagonal_preconditioning", diagonal_preconditioning)
    dense = check_bool("dense_mass", dense_mass)
    return "dense" if dense else ("diag" if precond else "none")


# --------------------------------------------------------------------------- MCLMC


def mclmc_adapt_run(
    sampler: MCLMC,
    key: PRNGKeyArray,
    x0_batch: PyTree,
    num_steps: int,
    *,
    desired_energy_var: float = 5e-4,
    trust_in_estimate: float = 1.5,
    num_effective_samples: float = 150.0,
    diagonal_preconditioning: bool = True,
    dense_mass: bool = False,
    l_factor: float = 0.4,
    tolerance: float = 0.02,
    min_steps: int = 10,
) -> AdaptationResult:
    """Tune an `idf.mclmc` sampler's step size, L (and inverse mass); module doc.

    `dense_mass=True` tunes a dense (D, D) inverse mass (it overrides
    `diagonal_preconditioning`). `tolerance` (> 0) and `min_steps` (>= 1) set the early
    stop of the step-size phases; `num_steps` is the most steps the warm-up takes.
    """
    key = _check(sampler, MCLMC, "mclmc", num_steps, x0_batch, key)
    mode = _mode(diagonal_preconditioning, dense_mass)
    precond = mode != "none"
    sizes = _phases(num_steps, (0.3, 0.3 if precond else 0.4, 0.1 if precond else 0.0, 0.3))
    if not precond:
        sizes = (sizes[0], sizes[1], 0, sizes[3])
    dynamic, static = eqx.partition(sampler, eqx.is_array)
    positive("tolerance", tolerance)
    tol = float(tolerance)
    least = positive_int("min_steps", min_steps)
    consts = jnp.asarray(
        [desired_energy_var, trust_in_estimate, num_effective_samples, l_factor, tol, least],
        jnp.float32,
    )
    out = _mclmc_jit(static, dynamic, key, x0_batch, consts, sizes=sizes, mode=mode)
    return AdaptationResult(*out)


def _mclmc_warmup(static, dynamic, key, x0_batch, consts, *, sizes, mode):
    sampler = eqx.combine(dynamic, static)
    desired, trust, n_eff, l_factor = consts[0], consts[1], consts[2], consts[3]
    tol, min_steps = consts[4], consts[5]
    n1, n2, n2b, n3 = sizes
    n = jax.tree.leaves(x0_batch)[0].shape[0]
    # The forgetting counts samples over all chains: n_eff of them, at least 3 steps.
    memory = jnp.maximum(n_eff / n, 3.0)
    decay = (memory - 1.0) / (memory + 1.0)
    k_init, k_run = jax.random.split(key)
    state = init_chains(sampler, x0_batch, jax.random.split(k_init, n))
    chain_keys = jax.random.split(k_run, n)
    example = jax.tree.map(lambda l: l[0], x0_batch)
    dim = ravel_pytree(example)[0].shape[0]
    temp = jnp.asarray(sampler.temperature, jnp.float32)
    eps = jnp.asarray(sampler.step_size, jnp.float32)
    big_l = jnp.asarray(sampler.L, jnp.float32)
    inv_mass: Any = sampler.inverse_mass
    dense = mode == "dense" or _metric.is_dense(inv_mass, example)
    grads = jnp.float32(n)  # the initial gradients

    def step_size_phase(state, eps, inv_mass, big_l, start, length, collect):
        """`length` steps at most: all of them when `collect`, else until converged."""
        shift = jnp.mean(flat_chains(state.position).astype(jnp.float32), axis=0)

        def cond(carry):
            i, drift = carry[0], carry[6]
            return (i < length) & (collect | (i < min_steps) | (drift >= tol))

        def body(carry):
            i, state, eps, t, xavg, eps_max, drift, sums, g = carry
            s = _rebuild(sampler, eps, big_l, inv_mass)
            state, info = step_chains(s, chain_keys, state, start + i)
            g = g + jnp.sum(grads_per_step(s, info))
            ok = ~info.diverged
            ec = jnp.asarray(info.energy_error, jnp.float32) / temp
            xi = ec**2 / (dim * desired) + 1e-8
            w = jnp.where(ok, jnp.exp(-0.5 * (jnp.log(xi) / (6.0 * trust)) ** 2), 0.0)
            xavg = decay * xavg + jnp.sum(w * xi) / eps**6
            t = decay * t + jnp.sum(w)
            eps_max = jnp.where(jnp.any(~ok), jnp.minimum(eps_max, 0.8 * eps), eps_max)
            new = jnp.where(t > 0, (xavg / jnp.maximum(t, 1e-30)) ** (-1.0 / 6.0), eps)
            new = jnp.where(jnp.isfinite(new) & (new > 0), new, 0.8 * eps)
            new = jnp.minimum(new, eps_max)
            change = jnp.abs(jnp.log(new / eps))
            drift = jnp.where(i == 0, change, 0.7 * drift + 0.3 * change)
            if collect:
                x = flat_chains(state.position).astype(jnp.float32)
                sums = _moments_update(sums, x, new, shift)
            return (i + 1, state, new, t, xavg, eps_max, drift, sums, g)

        z = jnp.zeros((), jnp.float32)
        big = jnp.float32(1e3)
        carry = (
            jnp.int32(0),
            state,
            eps,
            z,
            z,
            jnp.float32(jnp.inf),
            big,
            _zero_sums(dim, dense),
            z,
        )
        _, state, eps, _, _, _, _, sums, g = jax.lax.while_loop(cond, body, carry)
        return state, eps, sums, g

    state, eps, _, g1 = step_size_phase(state, eps, inv_mass, big_l, 0, n1, False)
    state, eps, sums, g2 = step_size_phase(state, eps, inv_mass, big_l, n1, n2, True)
    cov = _covariance(sums)
    grads = grads + g1 + g2
    if mode != "none":
        inv_mass = _tuned_mass(cov, n * n2, example, mode)
        big_l = jnp.sqrt(jnp.float32(dim))
        state, eps, _, g2b = step_size_phase(state, eps, inv_mass, big_l, n1 + n2, n2b, False)
        grads = grads + g2b
    else:
        big_l = jnp.sqrt(_z_variance_sum(cov, inv_mass, example, dim))

    tuned = _rebuild(sampler, eps, big_l, inv_mass)

    def record(state, i):
        state, info = step_chains(tuned, chain_keys, state, n1 + n2 + n2b + i)
        return state, (flat_chains(state.position), jnp.sum(grads_per_step(tuned, info)))

    state, (xs, g3) = jax.lax.scan(record, state, jnp.arange(n3))
    ess = ess_per_dim(jnp.swapaxes(xs, 0, 1))
    tau = n3 * n / ess
    finite = jnp.isfinite(tau)
    mean_tau = jnp.sum(jnp.where(finite, tau, 0.0)) / jnp.maximum(jnp.sum(finite), 1)
    big_l = jnp.where(jnp.any(finite), l_factor * eps * mean_tau, big_l)
    grads = grads + jnp.sum(g3)
    tuned = _rebuild(sampler, eps, big_l, inv_mass)
    params = {"step_size": eps, "L": big_l, "inverse_mass": inv_mass}
    one = jnp.float32(1.0)
    return tuned, params, state.position, one, jnp.float32(jnp.nan), grads


_mclmc_jit = jax.jit(_mclmc_warmup, static_argnums=(0,), static_argnames=("sizes", "mode"))


def _tuned_mass(cov, count, example, mode: str) -> Any:
    """The inverse mass from the warm-up moments: dense (D, D) or diagonal like x."""
    if mode == "dense":
        dt = jnp.result_type(ravel_pytree(example)[0])
        return _dense_inverse_mass(cov, jnp.float32(count)).astype(dt)
    unravel = ravel_pytree(example)[1]
    return jax.tree.map(lambda v, x: jnp.asarray(v, jnp.result_type(x)), unravel(cov), example)


# --------------------------------------------------------------------------- MAMS


def mams_adapt_run(
    sampler: MAMS,
    key: PRNGKeyArray,
    x0_batch: PyTree,
    num_steps: int,
    target_acceptance: float | Array | None = None,
    *,
    diagonal_preconditioning: bool = True,
    dense_mass: bool = False,
    l_factor: float = 0.5,
    tolerance: float = 0.02,
    min_steps: int = 10,
) -> AdaptationResult:
    """Tune an `idf.mams` sampler's step size, L (and inverse mass); module doc.

    `dense_mass=True` tunes a dense (D, D) inverse mass (it overrides
    `diagonal_preconditioning`). `tolerance` (> 0) and `min_steps` (>= 1) set the early
    stop of the step-size phases; `num_steps` is the most steps the warm-up takes.
    """
    key = _check(sampler, MAMS, "mams", num_steps, x0_batch, key)
    mode = _mode(diagonal_preconditioning, dense_mass)
    target = check_target(target_acceptance, MAMS_TARGET)
    sizes = _phases(num_steps, (0.2, 0.2, 0.25, 0.2, 0.15))
    dynamic, static = eqx.partition(sampler, eqx.is_array)
    positive("tolerance", tolerance)
    tol = float(tolerance)
    least = positive_int("min_steps", min_steps)
    consts = jnp.asarray([l_factor, tol, least], jnp.float32)
    out = _mams_jit(static, dynamic, key, x0_batch, target, consts, sizes=sizes, mode=mode)
    return AdaptationResult(*out)


def _sigma_of_acceptance(acc):
    """sigma with acceptance 2 Phi(-sigma / 2): dH ~ N(sigma^2 / 2, sigma^2)."""
    a = jnp.clip(acc, 1e-4, 1.0 - 1e-4)
    return -2.0 * jax.scipy.special.ndtri(0.5 * a)


def _mams_warmup(static, dynamic, key, x0_batch, target, consts, *, sizes, mode):
    sampler = eqx.combine(dynamic, static)
    l_factor, tol, min_steps = consts[0], consts[1], consts[2]
    na, nb, nc, nd, ne = sizes
    n = jax.tree.leaves(x0_batch)[0].shape[0]
    k_init, k_run = jax.random.split(key)
    state = init_chains(sampler, x0_batch, jax.random.split(k_init, n))
    chain_keys = jax.random.split(k_run, n)
    example = jax.tree.map(lambda l: l[0], x0_batch)
    dim = ravel_pytree(example)[0].shape[0]
    eps0 = jnp.asarray(sampler.step_size, jnp.float32)
    l0 = jnp.asarray(sampler.L, jnp.float32)
    ratio = jnp.maximum(l0 / eps0, 1.1)
    inv_mass: Any = sampler.inverse_mass
    dense = mode == "dense" or _metric.is_dense(inv_mass, example)
    sigma_target = _sigma_of_acceptance(target)

    def step_size_phase(state, eps_start, big_l, inv_mass, start, length, *, scale_l, collect):
        """The pooled step-size update of the module doc, `length` steps at most (all of
        them when `collect`, else until converged); L = ratio * eps when `scale_l`."""
        shift = jnp.mean(flat_chains(state.position).astype(jnp.float32), axis=0)
        cap = jnp.float32(jnp.inf) if scale_l else big_l / 1.1

        def cond(carry):
            i, _, _, _, drift, _, _, _ = carry
            # `drift` is signed: the pooled acceptance's noise averages out of it, a
            # systematic move of eps does not (|change| stays at the noise floor).
            converged = (i >= min_steps) & (jnp.abs(drift) < tol)
            return (i < length) & (collect | ~converged)

        def body(carry):
            i, state, log_eps, log_eps_avg, drift, sums, acc_avg, g = carry
            eps = jnp.exp(log_eps)
            s = _rebuild(sampler, eps, ratio * eps if scale_l else big_l, inv_mass)
            state, info = step_chains(s, chain_keys, state, start + i)
            g = g + jnp.sum(grads_per_step(s, info))
            acc = jnp.asarray(info.acceptance_rate, jnp.float32)
            alpha = jnp.mean(jnp.where(jnp.isfinite(acc), acc, 0.0))
            # dH scales like eps^2 at a fixed trajectory length: a damped Newton step on
            # log sigma, at most x2 up and x4 down per step.
            delta = 0.25 * jnp.log(sigma_target / _sigma_of_acceptance(alpha))
            delta = jnp.clip(delta, -jnp.log(4.0), jnp.log(2.0))
            new = jnp.minimum(log_eps + delta, jnp.log(cap))
            w = jnp.where(i == 0, 1.0, 0.3)
            log_eps_avg = (1.0 - w) * log_eps_avg + w * new
            drift = (1.0 - w) * drift + w * (new - log_eps)
            acc_avg = (1.0 - w) * acc_avg + w * alpha
            if collect:
                x = flat_chains(state.position).astype(jnp.float32)
                sums = _moments_update(sums, x, 1.0, shift)
            return (i + 1, state, new, log_eps_avg, drift, sums, acc_avg, g)

        z = jnp.zeros((), jnp.float32)
        log0 = jnp.log(jnp.minimum(eps_start, cap))
        big = jnp.float32(1e3)
        carry = (jnp.int32(0), state, log0, log0, big, _zero_sums(dim, dense), z, z)
        _, state, _, log_eps_avg, _, sums, acc_avg, g = jax.lax.while_loop(cond, body, carry)
        eps = jnp.minimum(jnp.exp(log_eps_avg), cap)
        return state, eps, sums, acc_avg, g

    # A: step size at L / eps fixed; B: continue, collecting the positions' moments.
    state, eps, _, _, ga = step_size_phase(
        state, eps0, l0, inv_mass, 0, na, scale_l=True, collect=False
    )
    state, eps, sums, _, gb = step_size_phase(
        state, eps, l0, inv_mass, na, nb, scale_l=True, collect=True
    )
    big_l_old = ratio * eps
    cov = _covariance(sums)
    if mode != "none":
        inv_mass = _tuned_mass(cov, n * nb, example, mode)
        big_l = jnp.sqrt(jnp.float32(dim))
    else:
        big_l = jnp.sqrt(_z_variance_sum(cov, inv_mass, example, dim))
    eps = jnp.minimum(eps * big_l / big_l_old, big_l / 1.1)
    # C: step size at the new L and mass.
    start = na + nb
    state, eps, _, _, gc = step_size_phase(
        state, eps, big_l, inv_mass, start, nc, scale_l=False, collect=False
    )
    # D: L from the effective sample size of a run at the tuned step size.
    tuned = _rebuild(sampler, eps, big_l, inv_mass)
    start += nc

    def record(state, i):
        state, info = step_chains(tuned, chain_keys, state, start + i)
        return state, (flat_chains(state.position), jnp.sum(grads_per_step(tuned, info)))

    state, (xs, gd) = jax.lax.scan(record, state, jnp.arange(nd))
    ess = ess_per_dim(jnp.swapaxes(xs, 0, 1))
    finite = jnp.isfinite(ess) & (ess > 0)
    ess_per_transition = jnp.sum(jnp.where(finite, ess, 0.0)) / jnp.maximum(jnp.sum(finite), 1)
    ess_per_transition = ess_per_transition / (nd * n)
    new_l = jnp.clip(l_factor * big_l / ess_per_transition, eps * 1.1, 2.0 * big_l)
    big_l = jnp.where(jnp.any(finite), new_l, big_l)
    # E: the step size at the final L.
    start += nd
    state, eps, _, acc, ge = step_size_phase(
        state, eps, big_l, inv_mass, start, ne, scale_l=False, collect=False
    )
    grads = jnp.float32(n) + ga + gb + gc + jnp.sum(gd) + ge
    tuned = _rebuild(sampler, eps, big_l, inv_mass)
    params = {"step_size": eps, "L": big_l, "inverse_mass": inv_mass}
    return tuned, params, state.position, acc, target, grads


_mams_jit = jax.jit(_mams_warmup, static_argnums=(0,), static_argnames=("sizes", "mode"))
