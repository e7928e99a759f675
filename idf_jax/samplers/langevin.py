"""Langevin samplers: ULA, MALA (overdamped) and BAOAB underdamped Langevin.

All target p(x) ∝ exp(-E(x) / T). States cache E and grad E at the position, so each
step costs exactly one gradient evaluation.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from .. import _tree
from ._base import (
    EnergyFn,
    PyTree,
    Sampler,
    check_positive,
    energy_and_grad,
    is_divergent,
    safe_log_accept,
)

__all__ = [
    "LangevinState",
    "LangevinInfo",
    "UnderdampedState",
    "ula",
    "mala",
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


def _init(energy_fn: EnergyFn):
    def init(position: PyTree, key: PRNGKeyArray | None = None) -> LangevinState:
        del key
        energy, grad = energy_and_grad(energy_fn, position)
        return LangevinState(position, energy, grad)

    return init


def _langevin_proposal(key, state: LangevinState, step_size, temperature):
    """x' = x - eta * grad E(x) + sqrt(2 eta T) * eps."""
    noise = _tree.normal_like(key, state.position)
    drift = _tree.add_scaled(state.position, state.grad, -step_size)
    return _tree.add_scaled(drift, noise, jnp.sqrt(2.0 * step_size * temperature))


def ula(energy_fn: EnergyFn, step_size: float, temperature: float = 1.0) -> Sampler:
    """Unadjusted Langevin algorithm.

    x' = x - eta * grad E(x) + sqrt(2 eta T) * eps,  eps ~ N(0, I).

    Euler-Maruyama discretisation of the overdamped Langevin SDE
    dx = -grad E dt + sqrt(2T) dW; its stationary law differs from exp(-E/T) by O(eta)
    (for a Gaussian with precision a the variance is T / (a (1 - a eta / 2))).
    A proposal with a NaN energy or non-finite gradient is not taken and is flagged
    as diverged.

    Args:
        energy_fn: E(x) for one state (a PyTree of float arrays) -> scalar.
        step_size: eta > 0, in units of x^2 / E.
        temperature: T > 0, in units of E.
    """
    check_positive("step_size", step_size)
    check_positive("temperature", temperature)
    init = _init(energy_fn)

    def step(key: PRNGKeyArray, state: LangevinState):
        proposal = _langevin_proposal(key, state, step_size, temperature)
        energy, grad = energy_and_grad(energy_fn, proposal)
        diverged = is_divergent(energy, grad)
        accept = ~diverged & ~(energy == jnp.inf)
        new = _tree.select(accept, LangevinState(proposal, energy, grad), state)
        info = LangevinInfo(accept.astype(jnp.result_type(state.energy)), accept, diverged)
        return new, info

    return Sampler(init, step)


def mala(energy_fn: EnergyFn, step_size: float, temperature: float = 1.0) -> Sampler:
    """Metropolis-adjusted Langevin algorithm: exact target exp(-E/T).

    Proposal q(x'|x) = N(x - eta grad E(x), 2 eta T I); accepted with probability
    min(1, exp(-(E(x') - E(x))/T) q(x|x') / q(x'|x)).

    Args:
        energy_fn: E(x) for one state -> scalar.
        step_size: eta > 0.
        temperature: T > 0.
    """
    check_positive("step_size", step_size)
    check_positive("temperature", temperature)
    init = _init(energy_fn)

    def log_q(x_to, x_from, grad_from):
        # log N(x_to; x_from - eta grad_from, 2 eta T) up to a constant.
        diff = _tree.add_scaled(_tree.add_scaled(x_to, x_from, -1.0), grad_from, step_size)
        return -_tree.sq_norm(diff) / (4.0 * step_size * temperature)

    def step(key: PRNGKeyArray, state: LangevinState):
        key_prop, key_acc = jax.random.split(key)
        proposal = _langevin_proposal(key_prop, state, step_size, temperature)
        energy, grad = energy_and_grad(energy_fn, proposal)
        diverged = is_divergent(energy, grad)
        log_ratio = (
            -(energy - state.energy) / temperature
            + log_q(state.position, proposal, grad)
            - log_q(proposal, state.position, state.grad)
        )
        log_ratio = jnp.where(diverged, -jnp.inf, safe_log_accept(log_ratio))
        accept_prob = jnp.exp(jnp.minimum(log_ratio, 0.0))
        u = jax.random.uniform(key_acc, dtype=jnp.result_type(state.energy))
        accept = jnp.log(u) < log_ratio
        new = _tree.select(accept, LangevinState(proposal, energy, grad), state)
        return new, LangevinInfo(accept_prob, accept, diverged)

    return Sampler(init, step)


class UnderdampedState(NamedTuple):
    """Phase-space point (x, p) with cached E(x) and grad E(x)."""

    position: PyTree
    momentum: PyTree
    energy: Float[Array, ""]
    grad: PyTree


def underdamped_langevin(
    energy_fn: EnergyFn,
    step_size: float,
    friction: float,
    temperature: float = 1.0,
    mass: float | PyTree = 1.0,
) -> Sampler:
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
    inv_mass = jax.tree.map(lambda m: 1.0 / m, mass)

    def momentum_noise(key, position):
        # p ~ N(0, M T), leaf-wise.
        noise = _tree.normal_like(key, position)
        sd = jax.tree.map(lambda m: jnp.sqrt(m * temperature), mass)
        return _tree.mul(noise, sd)

    def init(position: PyTree, key: PRNGKeyArray | None = None) -> UnderdampedState:
        energy, grad = energy_and_grad(energy_fn, position)
        if key is None:
            momentum = jax.tree.map(jnp.zeros_like, position)
        else:
            momentum = momentum_noise(key, position)
        return UnderdampedState(position, momentum, energy, grad)

    def step(key: PRNGKeyArray, state: UnderdampedState):
        h = step_size
        c = jnp.exp(-friction * h)
        p = _tree.add_scaled(state.momentum, state.grad, -0.5 * h)
        x = _tree.add_scaled(state.position, _tree.mul(p, inv_mass), 0.5 * h)
        p = _tree.add_scaled(_tree.mul(p, c), momentum_noise(key, p), jnp.sqrt(1.0 - c * c))
        x = _tree.add_scaled(x, _tree.mul(p, inv_mass), 0.5 * h)
        energy, grad = energy_and_grad(energy_fn, x)
        p = _tree.add_scaled(p, grad, -0.5 * h)
        diverged = is_divergent(energy, grad)
        accept = ~diverged & ~(energy == jnp.inf) & _tree.all_finite(p)
        new = _tree.select(accept, UnderdampedState(x, p, energy, grad), state)
        info = LangevinInfo(accept.astype(jnp.result_type(state.energy)), accept, diverged)
        return new, info

    return Sampler(init, step)
