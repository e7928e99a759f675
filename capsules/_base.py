"""The capsule contract and the registry every domain module registers into."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any, Literal, get_args

import equinox as eqx

from idf_jax._custom_types import EnergyFn, Key, PyTree
from idf_jax.thermo.constraints import Constraint

__all__ = ["Capsule", "CapsuleInfo", "Moves", "StateKind", "register"]

StateKind = Literal["continuous", "spins"]
"""What a state is made of, so a runtime can pick a sampler that fits: "continuous"
(float PyTrees; gradient samplers such as `idf.mala`) or "spins" (integer lattices; the
checkerboard sampler `idf.block_gibbs`)."""

Moves = Callable[[Key, PyTree, Any], PyTree]
"""`moves(key, x, scale) -> x'`: a domain move proposal for one state, pure JAX, for
global search (`idf.sample_equilibrium`'s basin hopping: a surface-atom move, a pivot,
a rotation on the sphere); `scale` is the chain's adapted step size."""


@dataclasses.dataclass(frozen=True)
class Capsule:
    """A domain energy as a pure closure.

    Attributes:
        name: registry name, "<domain>.<factory>" (e.g. "molecular.lennard_jones_cluster").
        energy_fn: E(x) -> scalar for one state x (a PyTree of arrays); pure,
            jit / vmap / grad safe.
        init: init(key, num_chains) -> x0_batch with a leading chain axis.
        decode: decode(x) -> a domain object a person can use (one state).
        constraints: tuple of `idf_jax.thermo.constraints` objects the state must satisfy.
        params: the parameters the capsule was built with (JSON-friendly).
        description: one line.
        project: optional map x -> x onto the feasible set kept exactly (e.g. a sphere);
            samplers and annealing apply it after each step when given.
        model: the domain model the energy is built from, where the domain has one (a
            parsed datacenter, a trained score network), as an `equinox.Module`.
        state_kind: "continuous" (float states) or "spins" (integer spin lattices).
        moves: optional domain move proposal `moves(key, x, scale) -> x'` for global
            search (pass it as `sample_equilibrium(..., moves=capsule.moves)`).
    """

    name: str
    energy_fn: EnergyFn
    init: Callable[[Key, int], PyTree]
    decode: Callable[[PyTree], Any]
    constraints: tuple[Constraint, ...] = ()
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    description: str = ""
    project: Callable[[PyTree], PyTree] | None = None
    model: eqx.Module | None = None
    state_kind: StateKind = "continuous"
    moves: Moves | None = None

    def __post_init__(self) -> None:
        kinds = get_args(StateKind)
        if self.state_kind not in kinds:
            raise ValueError(f"state_kind must be one of {kinds}, got {self.state_kind!r}")


@dataclasses.dataclass(frozen=True)
class CapsuleInfo:
    """A registry entry: the factory and what `capsules.available()` shows about it."""

    name: str
    description: str
    factory: Callable[..., Capsule]
    parameters: dict[str, str]


_REGISTRY: dict[str, CapsuleInfo] = {}


def register(name: str, description: str):
    """Decorator: register a capsule factory under "<domain>.<name>" with a one-line description."""
    if "." not in name:
        raise ValueError(f"capsule names are '<domain>.<name>', got {name!r}")

    def deco(factory):
        sig = inspect.signature(factory)
        params = {
            p.name: ("required" if p.default is inspect.Parameter.empty else repr(p.default))
            for p in sig.parameters.values()
        }
        _REGISTRY[name] = CapsuleInfo(name, description, factory, params)
        return factory

    return deco
