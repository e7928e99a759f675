"""Adaptive tempered sequential Monte Carlo (SMC) with any idf kernel as the move.

The path of energies E_λ(x) = (1 - λ) E0(x) + λ E(x), λ from 0 to 1, joins a reference
π_0 ∝ exp(-E0) that can be sampled exactly to the target π_1 ∝ exp(-E). With N
particles x_i ~ π_λ (equally weighted), one stage:

1. picks λ' in (λ, 1] by bisection so that the incremental weights
   w_i = exp(-(λ' - λ) (E(x_i) - E0(x_i))) have ESS = (sum w)^2 / sum w^2 = ρ N
   (ρ = `target_ess`, 0.5 by default; λ' = 1 when that already keeps ESS >= ρ N);
2. adds log mean_i w_i to log Z (the ratio Z_λ' / Z_λ);
3. unless λ' = 1: resamples (systematic) and moves every particle by
   `num_mcmc_steps` transitions of the kernel built at E_λ', which leaves π_λ' invariant.

The final stage stops at λ = 1 *without* resampling: the result holds weighted particles
(log_weights, normalised to logsumexp = 0) approximating π_1.

log Z is the log ratio of normalisers log (∫ exp(-E) dx / ∫ exp(-E0) dx) (sums for
discrete states), so for a normalised reference density exp(-E0) it is the log
normaliser of exp(-E) itself. Its standard error is the usual delta-method estimate
Var(log Z) ≈ sum over stages of (1/ESS_k - 1/N), ESS_k the effective sample size of
stage k's incremental weights (ESS_k ≈ ρ N, so about n_stages (1/ρ - 1) / N); it
assumes the moves decorrelate the particles, so with poorly mixing moves it is an
underestimate; independent runs (vmap over keys) give a direct check. The estimator
exp(log Z) is unbiased; log Z itself is biased low by about Var(log Z) / 2.

The whole run is one compiled `lax.while_loop` over stages (at most `max_stages`; the
last allowed stage jumps to λ = 1), with λ a traced field of the tempered energy, so the
kernel is compiled once for every stage.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .._checks import ArgumentError, as_key, positive_int
from .._custom_types import EnergyFn, PyTree
from ._base import Sampler, as_energy

__all__ = ["SMCResult", "TemperedEnergy", "smc"]


class TemperedEnergy(eqx.Module):
    """E_λ(x) = (1 - λ) E0(x) + λ E(x), λ in [0, 1] an array leaf (traced).

    Kernels that are not built from an energy (e.g. Gibbs samplers, whose temperature
    plays the role of 1/λ) read `lam` directly.
    """

    reference: Callable[[PyTree], Array]
    target: Callable[[PyTree], Array]
    lam: Array

    def __call__(self, x: PyTree) -> Array:
        e0, e1 = self.reference(x), self.target(x)
        # λ = 0 or 1 exactly: the other energy does not enter (it may be +inf there)
        mixed = (1.0 - self.lam) * e0 + self.lam * e1
        return jnp.where(self.lam == 0, e0, jnp.where(self.lam == 1, e1, mixed))


class SMCResult(NamedTuple):
    """The result of `smc`.

    particles: PyTree, leaves (num_particles, ...): the final particles at λ = 1.
    log_weights: (num_particles,) their normalised log-weights (logsumexp = 0).
    log_z: () log (Z_target / Z_reference), see the module docstring.
    log_z_se: () its standard error (delta method; see the module docstring).
    lambdas: (max_stages + 1,) the schedule λ_0 = 0, λ_1, ..., λ_K = 1, NaN after.
    acceptance_rate: (max_stages,) the kernel's mean acceptance at each stage's moves
        (NaN for the last stage, which has none, and after).
    ess: (max_stages,) ESS / N of each stage's incremental weights (NaN after).
    num_stages: () int, K (the number of reweighting stages).
    """

    particles: PyTree
    log_weights: Float[Array, " n"]
    log_z: Float[Array, ""]
    log_z_se: Float[Array, ""]
    lambdas: Float[Array, " s1"]
    acceptance_rate: Float[Array, " s"]
    ess: Float[Array, " s"]
    num_stages: Int[Array, ""]


class _Build(eqx.Module):
    """How to make the move kernel at a tempered energy: a factory or a template."""

    factory: Callable[[TemperedEnergy], Sampler] | None = eqx.field(static=True)
    template: Sampler | None

    def __call__(self, energy: TemperedEnergy) -> Sampler:
        if self.factory is not None:
            return self.factory(energy)
        return eqx.tree_at(lambda s: s.energy_fn, self.template, energy)


def _as_builder(kernel: Any) -> _Build:
    if isinstance(kernel, Sampler):
        if not hasattr(kernel, "energy_fn"):
            raise ArgumentError(
                "kernel",
                f"a kernel template needs an `energy_fn` field to replace; "
                f"{type(kernel).__name__} has none: pass a factory energy -> Sampler",
            )
        return _Build(None, kernel)
    if callable(kernel) and not isinstance(kernel, eqx.Module):
        return _Build(cast(Callable[[TemperedEnergy], Sampler], kernel), None)
    raise ArgumentError(
        "kernel",
        "kernel must be an idf Sampler template (e.g. idf.mala(E, 0.1), whose energy is "
        "replaced by the tempered one) or a factory energy -> Sampler "
        f"(e.g. lambda e: idf.hmc(e, 0.2, 5)), got {type(kernel).__name__}",
    )


def _ess_fraction(log_w):
    """ESS / N = (sum w)^2 / (N sum w^2), from log-weights."""
    n = log_w.shape[0]
    return jnp.exp(2.0 * logsumexp(log_w) - logsumexp(2.0 * log_w)) / n


def _next_lambda(lam, delta_e, target_ess, force):
    """λ' in (λ, 1] with ESS(exp(-(λ' - λ) ΔE)) / N = target (bisection, 50 halvings)."""

    # Particles with ΔE = +inf (outside the target's support) get weight 0 at any λ' > λ.
    def ess_at(d):
        return jnp.nan_to_num(_ess_fraction(-d * delta_e), nan=0.0)

    room = 1.0 - lam
    jump = force | (ess_at(room) >= target_ess)

    def body(_, lo_hi):
        lo, hi = lo_hi
        mid = 0.5 * (lo + hi)
        ok = ess_at(mid) >= target_ess
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    lo, _ = jax.lax.fori_loop(0, 50, body, (jnp.zeros_like(lam), room))
    # never stall: at least 1e-6 of progress per stage
    step = jnp.maximum(lo, jnp.minimum(1e-6, room))
    return jnp.where(jump, 1.0, jnp.minimum(lam + step, 1.0))


def _systematic(key, log_w):
    n = log_w.shape[0]
    w = jnp.exp(log_w - logsumexp(log_w))
    cdf = jnp.cumsum(w)
    u = (jax.random.uniform(key, (), w.dtype) + jnp.arange(n, dtype=w.dtype)) / n
    return jnp.clip(jnp.searchsorted(cdf, u * cdf[-1]), 0, n - 1)


class _Carry(NamedTuple):
    i: Array
    lam: Array
    particles: PyTree
    log_w: Array
    log_z: Array
    var: Array
    lambdas: Array
    acc: Array
    ess: Array


def _run(static, dynamic, key, init, *, num_particles, num_mcmc_steps, max_stages):
    bundle = eqx.combine(dynamic, static)
    energy_fn, reference, build, target_ess, init_arr = bundle
    k_init, k_run = jax.random.split(key)
    particles = init(k_init, num_particles) if init_arr is None else init_arr
    n = jax.tree.leaves(particles)[0].shape[0]
    dt = jnp.result_type(float)
    energies = jax.vmap(lambda x: (reference(x), energy_fn(x)))

    def stage(c: _Carry) -> _Carry:
        kc = jax.random.fold_in(k_run, c.i)
        k_res, k_mcmc = jax.random.split(kc)
        e0, e1 = energies(c.particles)
        delta = jnp.asarray(e1, dt) - jnp.asarray(e0, dt)
        delta = jnp.where(jnp.isnan(delta), jnp.inf, delta)
        lam_new = _next_lambda(c.lam, delta, target_ess, c.i + 1 >= max_stages)
        inc = jnp.where(jnp.isinf(delta) & (delta > 0), -jnp.inf, -(lam_new - c.lam) * delta)
        log_w = c.log_w + inc
        # weights are uniform at the start of a stage: log mean w = lse(inc) - log N
        log_z = c.log_z + logsumexp(inc) - math.log(n)
        ess = _ess_fraction(inc)
        var = c.var + jnp.maximum(1.0 / (ess * n) - 1.0 / n, 0.0)
        lambdas = c.lambdas.at[c.i + 1].set(lam_new)
        ess_buf = c.ess.at[c.i].set(ess)

        def move(_):
            idx = _systematic(k_res, log_w)
            xs = jax.tree.map(lambda l: l[idx], c.particles)
            kernel = build(TemperedEnergy(reference, energy_fn, lam_new.astype(dt)))
            keys = jax.random.split(jax.random.fold_in(k_mcmc, 1), n)
            state = jax.vmap(kernel.init)(xs, keys)

            def body(s, j):
                ks = jax.vmap(jax.random.fold_in, (0, None))(keys, j)
                s, info = jax.vmap(kernel.step)(ks, s)
                acc = getattr(info, "acceptance_rate", jnp.ones((n,), dt))
                return s, jnp.mean(jnp.asarray(acc, dt))

            state, accs = jax.lax.scan(body, state, jnp.arange(num_mcmc_steps))
            return state.position, jnp.full_like(log_w, -math.log(n)), jnp.mean(accs)

        def stop(_):
            return c.particles, log_w - logsumexp(log_w), jnp.asarray(jnp.nan, dt)

        xs, log_w, acc = jax.lax.cond(lam_new < 1.0, move, stop, None)
        return _Carry(
            c.i + 1, lam_new, xs, log_w, log_z, var, lambdas, c.acc.at[c.i].set(acc), ess_buf
        )

    nan = jnp.full((max_stages,), jnp.nan, dt)
    c0 = _Carry(
        jnp.zeros((), jnp.int32),
        jnp.zeros((), dt),
        particles,
        jnp.full((n,), -math.log(n), dt),
        jnp.zeros((), dt),
        jnp.zeros((), dt),
        jnp.full((max_stages + 1,), jnp.nan, dt).at[0].set(0.0),
        nan,
        nan,
    )
    c = jax.lax.while_loop(lambda c: c.lam < 1.0, stage, c0)
    return SMCResult(c.particles, c.log_w, c.log_z, jnp.sqrt(c.var), c.lambdas, c.acc, c.ess, c.i)


_run_jit = jax.jit(
    _run,
    static_argnums=(0, 3),
    static_argnames=("num_particles", "num_mcmc_steps", "max_stages"),
)


def smc(
    energy_fn: EnergyFn,
    key: PRNGKeyArray,
    init: PyTree | Callable[[PRNGKeyArray, int], PyTree],
    *,
    reference_energy: EnergyFn,
    kernel: Sampler | Callable[[TemperedEnergy], Sampler],
    num_particles: int | None = None,
    num_mcmc_steps: int = 10,
    target_ess: float = 0.5,
    max_stages: int = 200,
) -> SMCResult:
    """Adaptive tempered SMC from the reference exp(-E0) to the target exp(-E).

    See the module docstring for the algorithm and for exactly what `log_z` and
    `log_z_se` estimate.

    Args:
        energy_fn: the target energy E(x) (a function or an `eqx.Module`).
        key: PRNG key.
        init: particles drawn from the reference, a PyTree with a leading particle axis,
            or a sampler `init(key, num_particles) -> PyTree` of the reference.
        reference_energy: E0(x), the reference's energy up to a constant (its
            normaliser is what log Z is relative to); 0 for a uniform reference on a
            finite set.
        kernel: the MCMC move: a factory `kernel(energy) -> Sampler` called with the
            `TemperedEnergy` E_λ (λ traced: `energy.lam`), e.g.
            `lambda e: idf.hmc(e, 0.2, 5)`, or a Sampler template with an `energy_fn`
            field, replaced by E_λ (e.g. `idf.mala(E, 0.1)`).
        num_particles: N (needed when `init` is a sampler; else the leading axis).
        num_mcmc_steps: kernel transitions per particle after each resampling (>= 1).
        target_ess: ρ in (0, 1): each stage's incremental weights keep ESS = ρ N.
        max_stages: at most this many stages (static: it sizes the schedule arrays);
            the last one jumps to λ = 1 whatever its ESS.

    Returns:
        An `SMCResult` (particles, log_weights, log_z, log_z_se, lambdas,
        acceptance_rate, ess, num_stages).
    """
    key = as_key(key)
    energy = as_energy(energy_fn)
    reference = as_energy(reference_energy, "reference_energy")
    build = _as_builder(kernel)
    num_mcmc_steps = positive_int("num_mcmc_steps", num_mcmc_steps)
    max_stages = positive_int("max_stages", max_stages)
    if isinstance(target_ess, bool) or not isinstance(target_ess, (int, float)):
        raise ArgumentError(
            "target_ess", f"target_ess must be a float in (0, 1), got {target_ess!r}"
        )
    if not 0.0 < float(target_ess) < 1.0:
        raise ArgumentError("target_ess", f"target_ess must be in (0, 1), got {target_ess!r}")
    if callable(init) and not isinstance(init, jax.Array):
        if num_particles is None:
            raise ArgumentError(
                "num_particles", "num_particles is needed when init is a sampler of the reference"
            )
        n = positive_int("num_particles", num_particles)
        sampler_fn, init_arr = init, None
    else:
        leaves = jax.tree.leaves(init)
        if not leaves or any(jnp.ndim(l) == 0 for l in leaves):
            raise ArgumentError(
                "init", "init must be a PyTree of arrays with a leading particle axis, or a sampler"
            )
        n = int(leaves[0].shape[0])
        if any(l.shape[0] != n for l in leaves):
            raise ArgumentError("init", "every leaf of init needs the same leading particle axis")
        if num_particles is not None and positive_int("num_particles", num_particles) != n:
            raise ArgumentError(
                "num_particles", f"num_particles={num_particles} but init has {n} particles"
            )
        if n < 2:
            raise ArgumentError("init", "SMC needs at least 2 particles")
        sampler_fn, init_arr = None, init
    bundle = (energy, reference, build, jnp.asarray(float(target_ess)), init_arr)
    dynamic, static = eqx.partition(bundle, eqx.is_array)
    return _run_jit(
        static,
        dynamic,
        key,
        sampler_fn,
        num_particles=n,
        num_mcmc_steps=num_mcmc_steps,
        max_stages=max_stages,
    )
