"""Replica exchange (parallel tempering) as a `Sampler` that `idf.sample` drives.

R replicas run the same base sampler at temperatures T_0 < T_1 < ... < T_{R-1}
(T_0 is the target temperature). Every step, all replicas advance in ONE vmapped call
of the base sampler's `step`; then neighbouring pairs (i, i+1) of one parity (even
pairs i = 0, 2, ... or odd pairs i = 1, 3, ...) propose to exchange configurations,
accepted with the Metropolis probability

    a_i = min(1, exp((1/T_i - 1/T_{i+1}) (E(x_i) - E(x_{i+1})))),

which leaves the product measure prod_r exp(-E(x_r)/T_r) invariant, so the cold
replica samples exp(-E/T_0) exactly (for an exact base sampler such as mala or hmc).

Two swap schemes (Syed, Bouchard-Côté, Deligiannidis & Doucet 2022, "Non-reversible
parallel tempering: a scalable highly parallel MCMC scheme", JRSS-B 84(2)):
- "seo" (stochastic even/odd, reversible): the parity is drawn at random every round;
- "deo" (deterministic even/odd, non-reversible): the parity alternates every round,
  so accepted swaps keep moving a configuration in the same direction along the ladder
  (round-trip rate O(1) in R instead of O(1/R)).

State layout (a documented decision): `position` and `energy` hold the COLD replica
only (T_0), so `idf.sample` records samples of the target and `trace.positions` has the
shape of a plain run; all replicas live in `state.replicas` (leading axis R), which
`trace.final_state` carries. `state.walker[r]` is the id of the configuration that sits
at temperature r (a permutation, for round-trip accounting).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray

from .._checks import ArgumentError, is_traced
from ._base import PyTree, Sampler, check_positive_int

__all__ = ["ReplicaExchange", "ReplicaExchangeInfo", "ReplicaExchangeState", "replica_exchange"]


class ReplicaExchangeState(NamedTuple):
    """State of one replica-exchange chain.

    position: the cold replica's position (T_0), shaped like one state.
    energy: E(position) of the cold replica.
    replicas: the base sampler's state for every replica, leaves shaped (R, ...).
    walker: (R,) int32, id of the configuration at each temperature slot.
    direction: (R,) int32 per walker id: +1 last touched the cold end, -1 the hot end,
        0 neither yet.
    round_trips: () int32, completed cold -> hot -> cold trips of all walkers.
    step_count: () int32, steps taken (drives the DEO parity and `swap_every`).
    """

    position: PyTree
    energy: Float[Array, ""]
    replicas: Any
    walker: Int[Array, " R"]
    direction: Int[Array, " R"]
    round_trips: Int[Array, ""]
    step_count: Int[Array, ""]


class ReplicaExchangeInfo(NamedTuple):
    """Per-step diagnostics (means over steps land in `trace.stats`).

    acceptance_rate, is_accepted, diverged: the base sampler's, per replica (R,).
    swap_acceptance_rate: (R-1,) Metropolis swap probability a_i of pair (i, i+1),
        evaluated every step whether or not the pair was attempted (its mean over steps
        estimates the pair's swap acceptance with lower variance than counting swaps).
    swap_attempted: (R-1,) whether pair (i, i+1) was proposed this step.
    swap_accepted: (R-1,) whether it swapped; mean(swap_accepted) / mean(swap_attempted)
        is the realised per-pair acceptance.
    """

    acceptance_rate: Float[Array, " R"]
    is_accepted: Bool[Array, " R"]
    diverged: Bool[Array, " R"]
    swap_acceptance_rate: Float[Array, " Rm1"]
    swap_attempted: Bool[Array, " Rm1"]
    swap_accepted: Bool[Array, " Rm1"]


def _check_temperatures(temperatures) -> None:
    if is_traced(temperatures):
        return
    t = np.asarray(temperatures, dtype=np.float64)
    if t.ndim != 1 or t.size < 2:
        raise ArgumentError(
            "temperatures",
            f"temperatures must be a 1-D ladder of at least 2 values, got shape {t.shape}",
        )
    if not np.all(np.isfinite(t)) or np.any(t <= 0):
        raise ArgumentError(
            "temperatures", f"temperatures must be finite and > 0, got {t.tolist()}"
        )
    if np.any(np.diff(t) <= 0):
        raise ArgumentError(
            "temperatures",
            f"temperatures must be strictly increasing (cold first), got {t.tolist()}",
        )


class _Factory(eqx.Module):
    """A `T -> Sampler` factory held static (compared by identity)."""

    fn: Callable[[Any], Sampler] = eqx.field(static=True)

    def __call__(self, temperature) -> Sampler:
        return self.fn(temperature)


class ReplicaExchange(Sampler):
    """Parallel tempering as a PyTree (see `replica_exchange`).

    `base` is a sampler with a `temperature` field (each replica is it with that field
    replaced) or a static `T -> Sampler` factory; `temperatures` is an array leaf.
    """

    base: Any
    temperatures: Array
    scheme: str = eqx.field(static=True)
    swap_every: int = eqx.field(static=True)

    @property
    def num_replicas(self) -> int:
        return int(jnp.shape(self.temperatures)[0])

    def _replica(self, temperature) -> Sampler:
        if isinstance(self.base, _Factory):
            return self.base(temperature)
        return eqx.tree_at(lambda s: s.temperature, self.base, temperature)

    def init(self, position: PyTree, key: PRNGKeyArray | None = None) -> ReplicaExchangeState:
        num_replicas = self.num_replicas
        temps = jnp.asarray(self.temperatures, dtype=_float_dtype(position))
        positions = jax.tree.map(
            lambda l: jnp.broadcast_to(l, (num_replicas, *jnp.shape(l))), position
        )

        def local_init(temperature, pos, k):
            return self._replica(temperature).init(pos, k)

        if key is None:
            replicas = jax.vmap(local_init, (0, 0, None))(temps, positions, None)
        else:
            keys = jax.random.split(key, num_replicas)
            replicas = jax.vmap(local_init)(temps, positions, keys)
        for field in ("position", "energy"):
            if not hasattr(replicas, field):
                raise ArgumentError(
                    "sampler",
                    f"the base sampler's state must have a `{field}` field for replica "
                    f"exchange, got {type(replicas).__name__}",
                )
        if jnp.shape(replicas.energy) != (num_replicas,):
            raise ArgumentError(
                "sampler",
                "the base sampler's state energy must be a scalar per replica, got shape "
                f"{jnp.shape(replicas.energy)[1:]}",
            )
        walker = jnp.arange(num_replicas, dtype=jnp.int32)
        direction = jnp.zeros((num_replicas,), jnp.int32)
        return ReplicaExchangeState(
            jax.tree.map(lambda l: l[0], replicas.position),
            replicas.energy[0],
            replicas,
            walker,
            direction,
            jnp.zeros((), jnp.int32),
            jnp.zeros((), jnp.int32),
        )

    def step(self, key: PRNGKeyArray, state: ReplicaExchangeState):
        num_replicas, swap_every = self.num_replicas, self.swap_every
        key_local, key_parity, key_swap = jax.random.split(key, 3)
        dtype = jnp.result_type(state.energy)
        temps = jnp.asarray(self.temperatures, dtype=dtype)
        keys = jax.random.split(key_local, num_replicas)

        def local_step(temperature, k, replica_state):
            return self._replica(temperature).step(k, replica_state)

        replicas, info = jax.vmap(local_step)(temps, keys, state.replicas)

        # --- one round of neighbour swaps on pairs (i, i+1) with i % 2 == parity.
        energy = replicas.energy
        betas = 1.0 / temps
        log_a = (betas[:-1] - betas[1:]) * (energy[:-1] - energy[1:])
        log_a = jnp.where(jnp.isnan(log_a), -jnp.inf, log_a)
        swap_prob = jnp.exp(jnp.minimum(log_a, 0.0))
        round_index = state.step_count // swap_every
        if self.scheme == "deo":
            parity = round_index % 2
        else:
            parity = jax.random.bernoulli(key_parity).astype(jnp.int32)
        is_round = (state.step_count + 1) % swap_every == 0
        pair = jnp.arange(num_replicas - 1)
        attempted = is_round & (pair % 2 == parity)
        u = jax.random.uniform(key_swap, (num_replicas - 1,), dtype=dtype)
        accepted = attempted & (jnp.log(u) < log_a)
        # slot i takes from i+1 when pair i swaps, slot i+1 takes from i.
        up = jnp.concatenate([accepted, jnp.zeros((1,), bool)]).astype(jnp.int32)
        down = jnp.concatenate([jnp.zeros((1,), bool), accepted]).astype(jnp.int32)
        perm = jnp.arange(num_replicas, dtype=jnp.int32) + up - down
        swapped = jax.tree.map(lambda l: jnp.take(l, perm, axis=0), replicas)
        if hasattr(swapped, "momentum"):
            scale = jnp.sqrt(temps / temps[perm])
            momentum = jax.tree.map(
                lambda p: p * jnp.reshape(scale, (-1,) + (1,) * (p.ndim - 1)).astype(p.dtype),
                swapped.momentum,
            )
            swapped = swapped._replace(momentum=momentum)

        # --- round-trip bookkeeping per walker id.
        walker = state.walker[perm]
        direction = state.direction
        cold, hot = walker[0], walker[-1]
        completed = direction[cold] == -1
        direction = direction.at[cold].set(1).at[hot].set(-1)
        round_trips = state.round_trips + completed.astype(jnp.int32)

        new_state = ReplicaExchangeState(
            jax.tree.map(lambda l: l[0], swapped.position),
            swapped.energy[0],
            swapped,
            walker,
            direction,
            round_trips,
            state.step_count + 1,
        )
        diverged = getattr(info, "diverged", None)
        if diverged is None:
            diverged = ~jnp.isfinite(energy)
        rate = getattr(info, "acceptance_rate", jnp.ones((num_replicas,), dtype))
        is_acc = getattr(info, "is_accepted", jnp.ones((num_replicas,), bool))
        out = ReplicaExchangeInfo(rate, is_acc, diverged, swap_prob, attempted, accepted)
        return new_state, out


def replica_exchange(
    sampler: Sampler | Callable[[Any], Sampler],
    temperatures: ArrayLike,
    *,
    scheme: Literal["seo", "deo"] = "seo",
    swap_every: int = 1,
) -> ReplicaExchange:
    """Parallel tempering over a ladder of temperatures.

    Args:
        sampler: the base sampler at every temperature, either
            - a sampler with a `temperature` field (`idf.mala(E, 0.05)`, `idf.hmc(...)`):
              replica r is it with `temperature = T_r` (same step size everywhere); or
            - a factory `T -> Sampler` targeting exp(-E/T), e.g.
              `lambda T: idf.mala(energy_fn, step_size=0.05 * T, temperature=T)`. It is
              called inside `vmap` with a traced scalar T, so it may scale its step size
              with T but must not branch on T's value in Python. It is held static: pass
              the same function object to reuse the compiled run.
            All replicas must share one energy function; the state must cache
            `energy` = E(x) (not E/T).
        temperatures: (R,) strictly increasing, T_0 is the target temperature (an array
            leaf: may be traced, e.g. vmapped over ladders).
        scheme: "seo" reversible (random parity each round) or "deo" non-reversible
            (alternating parity).
        swap_every: attempt a swap round after every `swap_every` local steps.

    Returns:
        A `ReplicaExchange` sampler whose `init(position, key=None)` starts every replica
        at `position` (one state, no replica axis) and whose `step(key, state)` makes one
        local step of every replica and, every `swap_every` steps, one round of neighbour
        swaps. Underdamped momenta are rescaled by sqrt(T_new / T_old) when a
        configuration changes temperature, so p stays distributed as N(0, M T).

    Example:
        >>> pt = idf.replica_exchange(idf.mala(E, 0.05), [1.0, 2.0, 4.0])
        >>> trace = idf.sample(pt, key, x0_batch, num_steps=2000)
        >>> trace.stats["swap_acceptance_rate"]  # (chains, R - 1)
    """
    _check_temperatures(temperatures)
    if scheme not in ("seo", "deo"):
        raise ArgumentError("scheme", f"scheme must be 'seo' or 'deo', got {scheme!r}")
    swap_every = check_positive_int("swap_every", swap_every)
    if isinstance(sampler, Sampler):
        if not hasattr(sampler, "temperature"):
            raise ArgumentError(
                "sampler",
                f"{type(sampler).__name__} has no `temperature` field: pass a factory "
                "T -> Sampler instead",
            )
        base: Any = sampler
    elif callable(sampler):
        base = _Factory(sampler)
    else:
        raise ArgumentError(
            "sampler",
            f"sampler must be a Sampler or a factory T -> Sampler, got {type(sampler).__name__}",
        )
    temps = temperatures if isinstance(temperatures, jax.Array) else jnp.asarray(temperatures)
    if temps.ndim != 1 or temps.shape[0] < 2:
        raise ArgumentError("temperatures", "temperatures must be a 1-D ladder of >= 2 values")
    return ReplicaExchange(base, temps, scheme, swap_every)


def _float_dtype(position) -> jnp.dtype:
    dts = [jnp.result_type(l) for l in jax.tree.leaves(position)]
    floats = [d for d in dts if jnp.issubdtype(d, jnp.floating)]
    return jnp.result_type(*floats) if floats else jnp.result_type(float)
