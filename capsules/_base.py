"""The capsule contract and the registry every domain module registers into."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

PyTree = Any


@dataclasses.dataclass(frozen=True)
class Capsule:
    """A domain energy as a pure closure.

    Attributes:
        name: registry name, "<domain>.<factory>" (e.g. "molecular.lennard_jones_cluster").
        energy_fn: E(x) -> scalar for one state x (a PyTree of float arrays); pure,
            jit / vmap / grad safe.
        init: init(key, num_chains) -> x0_batch with a leading chain axis.
        decode: decode(x) -> a domain object a person can use (one state).
        constraints: tuple of `idf_jax.thermo.constraints` objects the state must satisfy.
        params: the parameters the capsule was built with (JSON-friendly).
        description: one line.
        project: optional map x -> x onto the feasible set kept exactly (e.g. a sphere);
            samplers and annealing apply it after each step when given.
    """

    name: str
    energy_fn: Callable[[PyTree], Any]
    init: Callable[[Any, int], PyTree]
    decode: Callable[[PyTree], Any]
    constraints: tuple = ()
    params: dict = dataclasses.field(default_factory=dict)
    description: str = ""
    project: Callable[[PyTree], PyTree] | None = None


@dataclasses.dataclass(frozen=True)
class CapsuleInfo:
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
