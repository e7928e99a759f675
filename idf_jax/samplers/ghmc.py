"""Generalised HMC (Horowitz 1991) with a persistent, non-reversible slice variable.

One leapfrog step per transition; the momentum is partially refreshed,
p <- sqrt(1 - alpha) p + sqrt(alpha) xi, xi ~ N(0, T M), and the accept test uses a
slice variable u in [-1, 1] that drifts by delta each transition (Neal 2020):
accept when |u| < exp(-dH / T), then u <- u exp(dH / T); a rejection negates the
momentum. This is the kernel MEADS tunes (Hoffman & Sountsov 2022; BlackJAX `ghmc`).
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from .. import _tree
from .._custom_types import FloatScalar
from . import _metric
from ._base import (
    EnergyFn,
    PyTree,
    Sampler,
    as_energy,
    as_param,
    cast,
    check_positive,
    energy_and_grad,
    is_divergent,
    safe_log_accept,
)
from .hmc import DIVERGENCE_THRESHOLD

__all__ = ["GHMC", "GHMCInfo", "GHMCState", "build_ghmc_kernel", "ghmc"]


class GHMCState(NamedTuple):
    """Position, momentum, cached E and grad E, and the slice variable u in [-1, 1]."""

    position: PyTree
    momentum: PyTree
    energy: Float[Array, ""]
    grad: PyTree
    slice: Float[Array, ""]


class GHMCInfo(NamedTuple):
    """Per-transition diagnostics (energy_error: dH of the one leapfrog step)."""

    acceptance_rate: Float[Array, ""]
    is_accepted: Bool[Array, ""]
    diverged: Bool[Array, ""]
    energy_error: Float[Array, ""]
    num_grad_evals: Float[Array, ""]


def build_ghmc_kernel(energy_fn: EnergyFn):
    """`kernel(key, state, step_size, alpha, delta, temperature, inverse_mass)`."""

    def kernel(
        key: PRNGKeyArray, state: GHMCState, step_size, alpha, delta, temperature, inverse_mass
    ):
        eps, temp = cast(step_size, state.energy), cast(temperature, state.energy)
        a, dl = cast(alpha, state.energy), cast(delta, state.energy)
        inv_mass = cast(inverse_mass, state.energy)
        xi = _metric.sample_momentum(key, state.position, inv_mass, temp)
        p0 = _tree.add_scaled(_tree.mul(state.momentum, jnp.sqrt(1.0 - a)), xi, jnp.sqrt(a))
        p = _tree.add_scaled(p0, state.grad, -0.5 * eps)
        x = _tree.add_scaled(state.position, _metric.velocity(p, inv_mass), eps)
        e, g = energy_and_grad(energy_fn, x)
        p = _tree.add_scaled(p, g, -0.5 * eps)

        def kinetic(q):
            return _metric.kinetic(q, inv_mass)

        d_h = (e + kinetic(p)) - (state.energy + kinetic(p0))
        d_h = jnp.where(jnp.isnan(d_h), jnp.inf, d_h)
        diverged = is_divergent(e, g) | (jnp.abs(d_h) / temp > DIVERGENCE_THRESHOLD)
        log_ratio = jnp.where(diverged, -jnp.inf, safe_log_accept(-d_h / temp))
        u = jnp.mod(state.slice + 1.0 + dl, 2.0) - 1.0
        accept = jnp.log(jnp.abs(u)) < log_ratio
        slice_next = jnp.where(accept, u * jnp.exp(jnp.clip(d_h / temp, -50.0, 50.0)), u)
        accepted = GHMCState(x, p, e, g, slice_next)
        rejected = state._replace(momentum=_tree.mul(p0, -1.0), slice=u)
        new = _tree.select(accept, accepted, rejected)
        acc = jnp.exp(jnp.minimum(log_ratio, 0.0))
        return new, GHMCInfo(acc, accept, diverged, d_h, jnp.float32(1.0))

    return kernel


class GHMC(Sampler):
    """Generalised HMC as a PyTree (see `ghmc`)."""

    energy_fn: EnergyFn
    step_size: Array
    alpha: Array
    delta: Array
    temperature: Array
    inverse_mass: PyTree
    is_adjusted: ClassVar[bool] = True

    def init(self, position: PyTree, key: PRNGKeyArray | None = None) -> GHMCState:
        energy, grad = energy_and_grad(self.energy_fn, position)
        if key is None:
            momentum = jax.tree.map(jnp.zeros_like, position)
            u = jnp.zeros_like(energy)
        else:
            k_p, k_u = jax.random.split(key)
            temp = cast(self.temperature, energy)
            inv_mass = cast(self.inverse_mass, energy)
            momentum = _metric.sample_momentum(k_p, position, inv_mass, temp)
            u = jax.random.uniform(k_u, (), jnp.result_type(energy), -1.0, 1.0)
        return GHMCState(position, momentum, energy, grad, u)

    def step(self, key: PRNGKeyArray, state: GHMCState):
        kernel = build_ghmc_kernel(self.energy_fn)
        return kernel(
            key, state, self.step_size, self.alpha, self.delta, self.temperature, self.inverse_mass
        )


def ghmc(
    energy_fn: EnergyFn,
    step_size: FloatScalar,
    alpha: FloatScalar = 0.1,
    delta: FloatScalar = 0.05,
    temperature: FloatScalar = 1.0,
    inverse_mass: FloatScalar | PyTree | None = None,
) -> GHMC:
    """Generalised HMC targeting exp(-E(x)/T) (one leapfrog step per transition).

    Args:
        energy_fn: E(x) -> scalar.
        step_size: leapfrog step epsilon > 0.
        alpha: momentum refresh fraction in (0, 1] (1 = full refresh, i.e. MALA-like).
        delta: slice-variable drift per transition, > 0 (MEADS uses alpha / 2).
        temperature: T > 0.
        inverse_mass: M^-1: None (identity), a scalar or a PyTree like x (diagonal), or a
            (D, D) symmetric positive-definite matrix (dense).

    Tune with `idf.adapt(sampler, ..., method="meads")`.
    """
    check_positive("step_size", step_size)
    check_positive("alpha", alpha)
    check_positive("delta", delta)
    check_positive("temperature", temperature)
    inv_mass = 1.0 if inverse_mass is None else inverse_mass
    _metric.check_inverse_mass(inv_mass)
    return GHMC(
        as_energy(energy_fn),
        as_param(step_size),
        as_param(alpha),
        as_param(delta),
        as_param(temperature),
        as_param(inv_mass),
    )
