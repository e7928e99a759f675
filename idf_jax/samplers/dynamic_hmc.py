"""HMC with a traced, jittered trajectory length (the kernel ChEES tunes).

Each transition runs n = ceil(U * trajectory_length / step_size) leapfrog steps, U ~
Uniform(0, 1] (Hoffman, Radul & Sountsov 2021), so the trajectory length is an array
leaf: tuning it never recompiles. Momenta p ~ N(0, T M), accepted with min(1, exp(-dH/T)).
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
from .langevin import LangevinState

__all__ = ["DynamicHMC", "DynamicHMCInfo", "dynamic_hmc", "dynamic_hmc_proposal"]


class DynamicHMCInfo(NamedTuple):
    """Per-trajectory diagnostics: as `HMCInfo`, plus the steps and gradients used."""

    acceptance_rate: Float[Array, ""]
    is_accepted: Bool[Array, ""]
    diverged: Bool[Array, ""]
    energy_error: Float[Array, ""]
    num_integration_steps: Float[Array, ""]
    num_grad_evals: Float[Array, ""]


def dynamic_hmc_proposal(
    energy_fn: EnergyFn, key, state: LangevinState, step_size, length, temperature, inverse_mass
):
    """One jittered trajectory, before the accept step.

    Returns (end_position, end_momentum, end_energy, end_grad, accept_log_ratio, diverged,
    energy_error, num_steps, jitter) with jitter = U in (0, 1].
    """
    eps, temp = cast(step_size, state.energy), cast(temperature, state.energy)
    t_len, inv_mass = cast(length, state.energy), cast(inverse_mass, state.energy)
    k_p, k_u = jax.random.split(key)
    jitter = 1.0 - jax.random.uniform(k_u, dtype=jnp.result_type(state.energy))
    n = jnp.clip(jnp.ceil(jitter * t_len / eps), 1, 2**30).astype(jnp.int32)
    p0 = _metric.sample_momentum(k_p, state.position, inv_mass, temp)

    def body(_, c):
        x, p, e, g = c
        p = _tree.add_scaled(p, g, -0.5 * eps)
        x = _tree.add_scaled(x, _metric.velocity(p, inv_mass), eps)
        e, g = energy_and_grad(energy_fn, x)
        p = _tree.add_scaled(p, g, -0.5 * eps)
        return x, p, e, g

    x, p, e, g = jax.lax.fori_loop(0, n, body, (state.position, p0, state.energy, state.grad))

    def kinetic(q):
        return _metric.kinetic(q, inv_mass)

    d_h = (e + kinetic(p)) - (state.energy + kinetic(p0))
    d_h = jnp.where(jnp.isnan(d_h), jnp.inf, d_h)
    diverged = is_divergent(e, g) | (jnp.abs(d_h) / temp > DIVERGENCE_THRESHOLD)
    log_ratio = jnp.where(diverged, -jnp.inf, safe_log_accept(-d_h / temp))
    return x, p, e, g, log_ratio, diverged, d_h, n, jitter


class DynamicHMC(Sampler):
    """Jittered-length HMC as a PyTree (see `dynamic_hmc`)."""

    energy_fn: EnergyFn
    step_size: Array
    trajectory_length: Array
    temperature: Array
    inverse_mass: PyTree
    is_adjusted: ClassVar[bool] = True

    def init(self, position: PyTree, key: PRNGKeyArray | None = None) -> LangevinState:
        del key
        energy, grad = energy_and_grad(self.energy_fn, position)
        return LangevinState(position, energy, grad)

    def step(self, key: PRNGKeyArray, state: LangevinState):
        k_prop, k_acc = jax.random.split(key)
        x, _, e, g, log_ratio, diverged, d_h, n, _ = dynamic_hmc_proposal(
            self.energy_fn,
            k_prop,
            state,
            self.step_size,
            self.trajectory_length,
            self.temperature,
            self.inverse_mass,
        )
        u = jax.random.uniform(k_acc, dtype=jnp.result_type(state.energy))
        accept = jnp.log(u) < log_ratio
        new = _tree.select(accept, LangevinState(x, e, g), state)
        nf = n.astype(jnp.float32)
        acc = jnp.exp(jnp.minimum(log_ratio, 0.0))
        return new, DynamicHMCInfo(acc, accept, diverged, d_h, nf, nf)


def dynamic_hmc(
    energy_fn: EnergyFn,
    step_size: FloatScalar,
    trajectory_length: FloatScalar,
    temperature: FloatScalar = 1.0,
    inverse_mass: FloatScalar | PyTree | None = None,
) -> DynamicHMC:
    """HMC whose trajectory length (not its step count) is a parameter, jittered uniformly.

    Args:
        energy_fn: E(x) -> scalar (a function or an `eqx.Module`).
        step_size: leapfrog step epsilon > 0 (an array leaf).
        trajectory_length: the longest trajectory, t > 0 (an array leaf); each transition
            runs ceil(U t / epsilon) steps, U ~ Uniform(0, 1].
        temperature: T > 0.
        inverse_mass: M^-1: None (identity), a scalar or a PyTree like x (diagonal), or a
            (D, D) symmetric positive-definite matrix (dense).

    Tune both with `idf.adapt(sampler, ..., method="chees")`.
    """
    check_positive("step_size", step_size)
    check_positive("trajectory_length", trajectory_length)
    check_positive("temperature", temperature)
    inv_mass = 1.0 if inverse_mass is None else inverse_mass
    _metric.check_inverse_mass(inv_mass)
    return DynamicHMC(
        as_energy(energy_fn),
        as_param(step_size),
        as_param(trajectory_length),
        as_param(temperature),
        as_param(inv_mass),
    )
