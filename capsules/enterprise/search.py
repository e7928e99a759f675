"""Metropolis moves over 0/1 placements, at a fixed temperature or annealed.

The move (symmetric): with probability 1/2 flip one uniformly chosen bit x_ws, else move
one replica of a uniformly chosen workload to a uniformly chosen server it is not on;
accept with min(1, exp(-(E(x') - E(x)) / T)), E the discrete energy (kW). The library has
no sampler for integer states with domain moves, so the move and its acceptance live here
as a `Sampler` (the front door's `idf.Sampler`); `idf.sample` drives every chain, both at
fixed temperature (`placement_sampler`) and through an annealing ladder
(`anneal_placement`, whose state also remembers the best feasible placement seen).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray

import idf_jax as idf
from idf_jax._checks import positive

from .energy import discrete_energy, is_feasible
from .model import DatacenterModel

__all__ = [
    "AnnealState",
    "PlacementInfo",
    "PlacementState",
    "anneal_placement",
    "annealing_sampler",
    "placement_sampler",
]


class PlacementState(NamedTuple):
    """A 0/1 placement (W, S) int32 and its discrete energy (kW)."""

    position: Int[Array, "W S"]
    energy: Float[Array, ""]


class AnnealState(NamedTuple):
    """An annealed chain: its placement and energy, the step count (which picks the
    temperature), and the lowest-energy feasible placement seen (energy inf if none)."""

    position: Int[Array, "W S"]
    energy: Float[Array, ""]
    step: Int[Array, ""]
    best_position: Int[Array, "W S"]
    best_energy: Float[Array, ""]


class PlacementInfo(NamedTuple):
    """Metropolis acceptance probability of the step's proposal and whether it was taken."""

    acceptance_rate: Float[Array, ""]
    is_accepted: Bool[Array, ""]


def _propose(m: DatacenterModel, u: Float[Array, " n"], x: Int[Array, "W S"]) -> Int[Array, "W S"]:
    """Flip one (w, s) bit, or move one replica of a workload to a server it is not on.

    `u` holds 3 + 2 S uniforms in (0, 1) (one random draw per step keeps compiles small).
    """
    W, S = m.shape
    w = jnp.minimum((u[1] * W).astype(jnp.int32), W - 1)
    s = jnp.minimum((u[2] * S).astype(jnp.int32), S - 1)
    flipped = x.at[w, s].set(1 - x[w, s])
    row = x[w]
    g1 = -jnp.log(-jnp.log(u[3 : 3 + S]))
    g2 = -jnp.log(-jnp.log(u[3 + S : 3 + 2 * S]))
    s_from = jnp.argmax(jnp.where(row == 1, g1, -jnp.inf))
    s_to = jnp.argmax(jnp.where(row == 0, g2, -jnp.inf))
    can_move = jnp.any(row == 1) & jnp.any(row == 0)
    moved = x.at[w, s_from].set(0).at[w, s_to].set(1)
    moved = jnp.where(can_move, moved, x)
    return jnp.where(u[0] < 0.5, flipped, moved)


def _metropolis(
    m: DatacenterModel,
    key: PRNGKeyArray,
    x: Int[Array, "W S"],
    e: Float[Array, ""],
    temperature: Float[ArrayLike, ""],
) -> tuple[Int[Array, "W S"], Float[Array, ""], Float[Array, ""], Bool[Array, ""]]:
    """One Metropolis step: (x, E, acceptance probability, accepted)."""
    S = m.shape[1]
    u = jax.random.uniform(key, (4 + 2 * S,), minval=1e-12, maxval=1.0)
    x_new = _propose(m, u, x)
    e_new = discrete_energy(m, x_new)
    log_a = jnp.minimum(0.0, -(e_new - e) / temperature)
    log_a = jnp.where(jnp.isnan(log_a), -jnp.inf, log_a)
    accept = jnp.log(u[-1]) < log_a
    return jnp.where(accept, x_new, x), jnp.where(accept, e_new, e), jnp.exp(log_a), accept


def placement_sampler(model: DatacenterModel, temperature: float) -> idf.Sampler:
    """Metropolis sampler over 0/1 placements targeting exp(-E(x) / T), T in kW.

    Proposals (symmetric): with probability 1/2 flip one uniformly chosen bit x_ws, else move
    one replica of a uniformly chosen workload to a uniformly chosen server it is not on.
    The state is integer, so `idf.sample` can drive it.
    """
    if not (temperature > 0):
        raise ValueError(f"temperature must be > 0 (kW), got {temperature!r}")

    def init(position: Int[ArrayLike, "W S"], key: PRNGKeyArray | None = None) -> PlacementState:
        del key
        x = jnp.asarray(position, jnp.int32)
        return PlacementState(x, discrete_energy(model, x))

    def step(key: PRNGKeyArray, state: PlacementState) -> tuple[PlacementState, PlacementInfo]:
        x, e, acc, ok = _metropolis(model, key, state.position, state.energy, temperature)
        return PlacementState(x, e), PlacementInfo(acc, ok)

    return idf.FunctionSampler(init, step)


def annealing_sampler(
    model: DatacenterModel, temperatures: Float[ArrayLike, " steps"]
) -> idf.Sampler:
    """Simulated annealing as a `Sampler`: step k moves at temperature `temperatures[k]`
    (kW; the last one after the ladder ends) and the state keeps the best feasible
    placement seen (`AnnealState`)."""
    temps = jnp.asarray(temperatures, jnp.float32)
    if temps.ndim != 1 or temps.shape[0] < 1:
        raise ValueError(f"temperatures must be a non-empty 1-D ladder, got shape {temps.shape}")
    positive("temperatures", temps)

    def init(position: Int[ArrayLike, "W S"], key: PRNGKeyArray | None = None) -> AnnealState:
        del key
        x = jnp.asarray(position, jnp.int32)
        e = discrete_energy(model, x)
        best_e = jnp.where(is_feasible(model, x), e, jnp.inf)
        return AnnealState(x, e, jnp.zeros((), jnp.int32), x, best_e)

    def step(key: PRNGKeyArray, state: AnnealState) -> tuple[AnnealState, PlacementInfo]:
        temp = temps[jnp.minimum(state.step, temps.shape[0] - 1)]
        x, e, acc, ok = _metropolis(model, key, state.position, state.energy, temp)
        better = is_feasible(model, x) & (e < state.best_energy)
        new = AnnealState(
            x,
            e,
            state.step + 1,
            jnp.where(better, x, state.best_position),
            jnp.where(better, e, state.best_energy),
        )
        return new, PlacementInfo(acc, ok)

    return idf.FunctionSampler(init, step)


def anneal_placement(
    m: DatacenterModel,
    key: PRNGKeyArray,
    x0: Int[ArrayLike, "chains W S"],
    temperatures: Float[ArrayLike, " steps"],
) -> tuple[
    Int[np.ndarray, "chains W S"],
    Float[np.ndarray, " chains"],
    Int[np.ndarray, "chains W S"],
    Float[np.ndarray, " chains"],
]:
    """Simulated annealing of every chain through the temperature ladder (kW), one
    Metropolis step per temperature, driven by `idf.sample`.

    Returns (best feasible x (chains, W, S), its energy (chains,); inf when never feasible,
    final x, final energy).
    """
    num_steps = int(np.shape(temperatures)[0])
    sampler = annealing_sampler(m, temperatures)
    x0 = jnp.asarray(x0, jnp.int32)
    final = idf.sample(sampler, key, x0, num_steps, thin=num_steps).final_state
    return (
        np.asarray(final.best_position),
        np.asarray(final.best_energy),
        np.asarray(final.position),
        np.asarray(final.energy),
    )
