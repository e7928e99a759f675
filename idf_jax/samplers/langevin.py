"""Langevin samplers: ULA, MALA (overdamped) and BAOAB underdamped Langevin.

All target p(x) ∝ exp(-E(x) / T). States cache E and grad E at the position, so each
step costs exactly one gradient evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from .. import _tree
from .._custom_types import FloatScalar
from . import _random
from ._base import (
    EnergyFn,
    PyTree,
    Sampler,
    all_finite,
    as_energy,
    as_param,
    cast,
    check_positive,
    energy_and_grad,
    is_divergent,
    safe_log_accept,
)

__all__ = [
    "MALA",
    "ULA",
    "LangevinInfo",
    "LangevinState",
    "UnderdampedLangevin",
    "UnderdampedState",
    "build_mala_kernel",
    "build_ula_kernel",
    "build_underdamped_kernel",
    "langevin_init",
    "mala",
    "ula",
    "underdamped_langevin",
]


class LangevinState(NamedTuple):
    """Position with its cached energy E(x) and gradient grad E(x)."""

    position: PyTree
    energy: Float[Array, ""]
    grad: PyTree


class LangevinInfo(NamedTuple):
    """Per-step diagnostics.

    acceptance_rate: Metropolis acceptance probability (1 for unadjusted steps);
    is_accepted: whether the proposal was taken; diverged: the proposal had a NaN
    energy or a non-finite gradient (it was rejected).
    """

    acceptance_rate: Float[Array, ""]
    is_accepted: Bool[Array, ""]
    diverged: Bool[Array, ""]


def langevin_init(energy_fn: EnergyFn, position: PyTree) -> LangevinState:
    """The state at `position`: E(x) and grad E(x) cached (one gradient evaluation)."""
    energy, grad = energy_and_grad(energy_fn, position)
    return LangevinState(position, energy, grad)


def _langevin_proposal(key, state: LangevinState, step_size, temperature):
    """x' = x - eta * grad E(x) + sqrt(2 eta T) * eps."""
    noise = _random.normal_like(key, state.position)
    drift = _tree.add_scaled(state.position, state.grad, -step_size)
    return _tree.add_scaled(drift, noise, jnp.sqrt(2.0 * step_size * temperature))


def build_ula_kernel(energy_fn: EnergyFn) -> Callable[..., tuple[LangevinState, LangevinInfo]]:
    """The ULA transition with its parameters as arguments.

    `kernel(key, state, step_size, temperature) -> (state, info)`; the parameters may be
    traced (annealing, adaptation and tempering call it with per-step values).
    """

    def kernel(key: PRNGKeyArray, state: LangevinState, step_size, temperature):
        eta, temp = cast(step_size, state.energy), cast(temperature, state.energy)
        proposal = _langevin_proposal(key, state, eta, temp)
        energy, grad = energy_and_grad(energy_fn, proposal)
        diverged = is_divergent(energy, grad)
        accept = ~diverged & ~(energy == jnp.inf)
        new = _tree.select(accept, LangevinState(proposal, energy, grad), state)
        info = LangevinInfo(accept.astype(jnp.result_type(state.energy)), accept, diverged)
        return new, info

    return kernel


def build_mala_kernel(
    energy_fn: EnergyFn, project: Callable[[PyTree], PyTree] | None = None
) -> Callable[..., tuple[LangevinState, LangevinInfo]]:
    """The MALA transition with its parameters as arguments.

    `kernel(key, state, step_size, temperature) -> (state, info)`. Proposal
    q(x'|x) = N(x - eta grad E(x), 2 eta T I), accepted with probability
    min(1, exp(-(E(x') - E(x))/T) q(x|x') / q(x'|x)). A NaN energy or a non-finite
    gradient at the proposal is a rejection, flagged in `info.diverged`.

    With `project` (an exact map onto a feasible set) the proposal is projected before
    the Metropolis test: a projected Langevin chain, good for optimisation on manifolds
    (`sample_equilibrium` uses it), not an exact sampler of exp(-E/T) on the set.
    """

    def log_q(x_to, x_from, grad_from, eta, temp):
        # log N(x_to; x_from - eta grad_from, 2 eta T) up to a constant.
        diff = _tree.add_scaled(_tree.add_scaled(x_to, x_from, -1.0), grad_from, eta)
        return -_tree.sq_norm(diff) / (4.0 * eta * temp)

    def kernel(key: PRNGKeyArray, state: LangevinState, step_size, temperature):
        eta, temp = cast(step_size, state.energy), cast(temperature, state.energy)
        key_prop, key_acc = _random.split(key)
        proposal = _langevin_proposal(key_prop, state, eta, temp)
        if project is not None:
            proposal = project(proposal)
        energy, grad = energy_and_grad(energy_fn, proposal)
        diverged = is_divergent(energy, grad)
        log_ratio = (
            -(energy - state.energy) / temp
            + log_q(state.position, proposal, grad, eta, temp)
            - log_q(proposal, state.position, state.grad, eta, temp)
        )
        log_ratio = jnp.where(diverged, -jnp.inf, safe_log_accept(log_ratio))
        accept_prob = jnp.exp(jnp.minimum(log_ratio, 0.0))
        u = _random.uniform(key_acc, dtype=jnp.result_type(state.energy))
        accept = jnp.log(u) < log_ratio
        new = _tree.select(accept, LangevinState(proposal, energy, grad), state)
        return new, LangevinInfo(accept_prob, accept, diverged)

    return kernel


class ULA(Sampler):
    """Unadjusted Langevin algorithm as a PyTree (see `ula`)."""

    energy_fn: EnergyFn
    step_size: Array
    temperature: Array
    is_adjusted: ClassVar[bool] = False

    def init(self, position: PyTree, key: PRNGKeyArray | None = None) -> LangevinState:
        del key
        return langevin_init(self.energy_fn, position)

    def step(self, key: PRNGKeyArray, state: LangevinState):
        return build_ula_kernel(self.energy_fn)(key, state, self.step_size, self.temperature)


class MALA(Sampler):
    """Metropolis-adjusted Langevin algorithm as a PyTree (see `mala`)."""

    energy_fn: EnergyFn
    step_size: Array
    temperature: Array
    is_adjusted: ClassVar[bool] = True

    def init(self, position: PyTree, key: PRNGKeyArray | None = None) -> LangevinState:
        del key
        return langevin_init(self.energy_fn, position)

    def step(self, key: PRNGKeyArray, state: LangevinState):
        return build_mala_kernel(self.energy_fn)(key, state, self.step_size, self.temperature)


def ula(energy_fn: EnergyFn, step_size: FloatScalar, temperature: FloatScalar = 1.0) -> ULA:
    """Unadjusted Langevin algorithm.

    x' = x - eta * grad E(x) + sqrt(2 eta T) * eps,  eps ~ N(0, I).

    Euler-Maruyama discretisation of the overdamped Langevin SDE
    dx = -grad E dt + sqrt(2T) dW; its stationary law differs from exp(-E/T) by O(eta)
    (for a Gaussian with precision a the variance is T / (a (1 - a eta / 2))).
    A proposal with a NaN energy or non-finite gradient is not taken and is flagged
    as diverged.

    Args:
        energy_fn: E(x) for one state (a PyTree of float arrays) -> scalar; a function
            or an `eqx.Module` energy.
        step_size: eta > 0, in units of x^2 / E (an array leaf: may be traced).
        temperature: T > 0, in units of E.
    """
    check_positive("step_size", step_size)
    check_positive("temperature", temperature)
    return ULA(as_energy(energy_fn), as_param(step_size), as_param(temperature))


def mala(energy_fn: EnergyFn, step_size: FloatScalar, temperature: FloatScalar = 1.0) -> MALA:
    """Metropolis-adjusted Langevin algorithm: exact target exp(-E/T).

    Proposal q(x'|x) = N(x - eta grad E(x), 2 eta T I); accepted with probability
    min(1, exp(-(E(x') - E(x))/T) q(x|x') / q(x'|x)). One gradient per step.

    Args:
        energy_fn: E(x) for one state -> scalar (a function or an `eqx.Module`).
        step_size: eta > 0 (an array leaf: a new value reuses the compiled run).
        temperature: T > 0.

    Example:
        >>> sampler = idf.mala(energy_fn, step_size=1e-2, temperature=1.0)
        >>> state = sampler.init(x0)
        >>> state, info = sampler.step(jax.random.key(0), state)
    """
    check_positive("step_size", step_size)
    check_positive("temperature", temperature)
    return MALA(as_energy(energy_fn), as_param(step_size), as_param(temperature))


class UnderdampedState(NamedTuple):
    """Phase-space point (x, p) with cached E(x) and grad E(x)."""

    position: PyTree
    momentum: PyTree
    energy: Float[Array, ""]
    grad: PyTree


def build_underdamped_kernel(
    energy_fn: EnergyFn,
) -> Callable[..., tuple[UnderdampedState, LangevinInfo]]:
    """One BAOAB step with its parameters as arguments.

    `kernel(key, state, step_size, friction, temperature, mass) -> (state, info)`; `mass`
    is a scalar or a PyTree like the position (diagonal M).
    """

    def kernel(key: PRNGKeyArray, state: UnderdampedState, step_size, friction, temperature, mass):
        h = cast(step_size, state.energy)
        gamma, temp = cast(friction, state.energy), cast(temperature, state.energy)
        mass = cast(mass, state.energy)
        inv_mass = jax.tree.map(lambda m: 1.0 / m, mass)
        c = jnp.exp(-gamma * h)
        p = _tree.add_scaled(state.momentum, state.grad, -0.5 * h)
        x = _tree.add_scaled(state.position, _tree.mul(p, inv_mass), 0.5 * h)
        noise = _momentum_noise(key, p, mass, temp)
        p = _tree.add_scaled(_tree.mul(p, c), noise, jnp.sqrt(1.0 - c * c))
        x = _tree.add_scaled(x, _tree.mul(p, inv_mass), 0.5 * h)
        energy, grad = energy_and_grad(energy_fn, x)
        p = _tree.add_scaled(p, grad, -0.5 * h)
        diverged = is_divergent(energy, grad)
        accept = ~diverged & ~(energy == jnp.inf) & all_finite(p)
        new = _tree.select(accept, UnderdampedState(x, p, energy, grad), state)
        info = LangevinInfo(accept.astype(jnp.result_type(state.energy)), accept, diverged)
        return new, info

    return kernel


def _momentum_noise(key, position, mass, temperature):
    """p ~ N(0, M T), leaf-wise."""
    noise = _random.normal_like(key, position)
    sd = jax.tree.map(lambda m: jnp.sqrt(m * temperature), mass)
    return _tree.mul(noise, sd)


class UnderdampedLangevin(Sampler):
    """BAOAB underdamped Langevin dynamics as a PyTree (see `underdamped_langevin`)."""

    energy_fn: EnergyFn
    step_size: Array
    friction: Array
    temperature: Array
    mass: PyTree
    is_adjusted: ClassVar[bool] = False

    def init(self, position: PyTree, key: PRNGKeyArray | None = None) -> UnderdampedState:
        energy, grad = energy_and_grad(self.energy_fn, position)
        if key is None:
            momentum = jax.tree.map(jnp.zeros_like, position)
        else:
            mass, temp = cast(self.mass, energy), cast(self.temperature, energy)
            momentum = _momentum_noise(key, position, mass, temp)
        return UnderdampedState(position, momentum, energy, grad)

    def step(self, key: PRNGKeyArray, state: UnderdampedState):
        kernel = build_underdamped_kernel(self.energy_fn)
        return kernel(key, state, self.step_size, self.friction, self.temperature, self.mass)


def underdamped_langevin(
    energy_fn: EnergyFn,
    step_size: FloatScalar,
    friction: FloatScalar,
    temperature: FloatScalar = 1.0,
    mass: FloatScalar | PyTree = 1.0,
) -> UnderdampedLangevin:
    """Underdamped (kinetic) Langevin dynamics with the BAOAB splitting.

    dx = M^-1 p dt,  dp = -grad E dt - gamma p dt + sqrt(2 gamma M T) dW.

    One step of size h (Leimkuhler & Matthews 2013):
    B: p -= h/2 grad E(x);  A: x += h/2 M^-1 p;
    O: p = c p + sqrt((1 - c^2) M T) xi,  c = exp(-gamma h);
    A: x += h/2 M^-1 p;     B: p -= h/2 grad E(x').
    The O step draws momenta from N(0, M T): masses enter the thermostat, so the
    configurational marginal is exp(-E/T) (up to O(h^2) BAOAB bias) for any mass.
    The Hamiltonian is not conserved (the heat bath exchanges energy): no energy-law
    claim applies. One gradient evaluation per step.

    Args:
        energy_fn: E(x) -> scalar.
        step_size: h > 0, time units.
        friction: gamma > 0, 1 / time units.
        temperature: T > 0.
        mass: M > 0, a scalar or a PyTree like the position (diagonal mass).
    """
    check_positive("step_size", step_size)
    check_positive("friction", friction)
    check_positive("temperature", temperature)
    check_positive("mass", mass)
    return UnderdampedLangevin(
        as_energy(energy_fn),
        as_param(step_size),
        as_param(friction),
        as_param(temperature),
        as_param(mass),
    )
