"""Hamiltonian Monte Carlo with a leapfrog (velocity Verlet) integrator."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, NamedTuple

import equinox as eqx
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
    check_positive_int,
    energy_and_grad,
    is_divergent,
    safe_log_accept,
)
from .langevin import LangevinState

__all__ = ["DIVERGENCE_THRESHOLD", "HMC", "HMCInfo", "build_hmc_kernel", "hmc", "leapfrog"]

HMCState = LangevinState


class HMCInfo(NamedTuple):
    """Per-trajectory diagnostics.

    energy_error: dH = H(x', p') - H(x, p) of the NVE trajectory (energy units), the
    integrator's violation of energy conservation; 0 for exact Hamiltonian flow.
    """

    acceptance_rate: Float[Array, ""]
    is_accepted: Bool[Array, ""]
    diverged: Bool[Array, ""]
    energy_error: Float[Array, ""]


def leapfrog(energy_fn: EnergyFn, position, momentum, grad, step_size, num_steps: int, inv_mass):
    """`num_steps` velocity-Verlet steps of dx/dt = M^-1 p, dp/dt = -grad E.

    Uses the cached gradient at the start; costs `num_steps` gradient evaluations.
    Returns (position, momentum, energy, grad) at the end.
    """

    def body(carry, _):
        x, p, _, g = carry
        p = _tree.add_scaled(p, g, -0.5 * step_size)
        x = _tree.add_scaled(x, _metric.velocity(p, inv_mass), step_size)
        e, g = energy_and_grad(energy_fn, x)
        p = _tree.add_scaled(p, g, -0.5 * step_size)
        return (x, p, e, g), None

    dtype = jnp.result_type(*jax.tree.leaves(position))
    init = (position, momentum, jnp.zeros((), dtype), grad)
    (x, p, e, g), _ = jax.lax.scan(body, init, None, length=num_steps)
    return x, p, e, g


DIVERGENCE_THRESHOLD = 1000.0
"""|dH| / T above which a trajectory counts as divergent (Stan's convention)."""


def build_hmc_kernel(
    energy_fn: EnergyFn, num_integration_steps: int
) -> Callable[..., tuple[HMCState, HMCInfo]]:
    """The HMC transition with its parameters as arguments.

    `kernel(key, state, step_size, temperature, inverse_mass) -> (state, info)`: momenta
    p ~ N(0, T M), `num_integration_steps` leapfrog steps, accepted with probability
    min(1, exp(-dH / T)). A trajectory ending at a NaN energy, a non-finite gradient or
    position, or with |dH| / T > 1000 (Stan's convention), is divergent: rejected and
    flagged.
    """

    kinetic = _metric.kinetic

    def kernel(key: PRNGKeyArray, state: HMCState, step_size, temperature, inverse_mass):
        eps, temp = cast(step_size, state.energy), cast(temperature, state.energy)
        inv_mass = cast(inverse_mass, state.energy)
        key_p, key_acc = jax.random.split(key)
        p0 = _metric.sample_momentum(key_p, state.position, inv_mass, temp)  # N(0, T M)
        x, p, energy, grad = leapfrog(
            energy_fn, state.position, p0, state.grad, eps, num_integration_steps, inv_mass
        )
        energy_error = (energy + kinetic(p, inv_mass)) - (state.energy + kinetic(p0, inv_mass))
        energy_error = jnp.where(jnp.isnan(energy_error), jnp.inf, energy_error)
        # A non-finite end position is divergent too: with E finite there (a bounded
        # energy after an overflow) dH can be finite, and the chain would be accepted
        # into an unusable state and freeze. One fused sum with the gradient's check.
        diverged = is_divergent(energy, (grad, x)) | (
            jnp.abs(energy_error) / temp > DIVERGENCE_THRESHOLD
        )
        log_ratio = jnp.where(diverged, -jnp.inf, safe_log_accept(-energy_error / temp))
        accept_prob = jnp.exp(jnp.minimum(log_ratio, 0.0))
        u = jax.random.uniform(key_acc, dtype=jnp.result_type(state.energy))
        accept = jnp.log(u) < log_ratio
        new = _tree.select(accept, HMCState(x, energy, grad), state)
        return new, HMCInfo(accept_prob, accept, diverged, energy_error)

    return kernel


class HMC(Sampler):
    """Hamiltonian Monte Carlo as a PyTree (see `hmc`)."""

    energy_fn: EnergyFn
    step_size: Array
    temperature: Array
    inverse_mass: PyTree
    num_integration_steps: int = eqx.field(static=True)
    is_adjusted: ClassVar[bool] = True

    def init(self, position: PyTree, key: PRNGKeyArray | None = None) -> HMCState:
        del key
        energy, grad = energy_and_grad(self.energy_fn, position)
        return HMCState(position, energy, grad)

    def step(self, key: PRNGKeyArray, state: HMCState):
        kernel = build_hmc_kernel(self.energy_fn, self.num_integration_steps)
        return kernel(key, state, self.step_size, self.temperature, self.inverse_mass)


def hmc(
    energy_fn: EnergyFn,
    step_size: FloatScalar,
    num_integration_steps: int,
    temperature: FloatScalar = 1.0,
    inverse_mass: FloatScalar | PyTree | None = None,
) -> HMC:
    """HMC targeting exp(-E(x)/T).

    H(x, p) = E(x) + p^T M^-1 p / 2 with p ~ N(0, T M) refreshed each step; the
    trajectory is `num_integration_steps` leapfrog steps of size `step_size`, accepted
    with probability min(1, exp(-dH / T)). `info.energy_error` records dH, the quantity
    energy-law fidelity is measured on; |dH| / T > 1000 counts as a divergence.

    Args:
        energy_fn: E(x) -> scalar (a function or an `eqx.Module`).
        step_size: leapfrog step epsilon > 0 (an array leaf).
        num_integration_steps: L >= 1 leapfrog steps per trajectory (static: it sets
            the length of the compiled loop).
        temperature: T > 0.
        inverse_mass: M^-1: None (identity), a scalar or a PyTree like x (diagonal), or
            one (D, D) symmetric positive-definite matrix, D = the size of x (dense).
    """
    check_positive("step_size", step_size)
    check_positive("temperature", temperature)
    num_integration_steps = check_positive_int("num_integration_steps", num_integration_steps)
    inv_mass = 1.0 if inverse_mass is None else inverse_mass
    _metric.check_inverse_mass(inv_mass)
    return HMC(
        as_energy(energy_fn),
        as_param(step_size),
        as_param(temperature),
        as_param(inv_mass),
        num_integration_steps,
    )
