"""Evolution strategies by name: evosax's algorithms, built for an encoded search space.

No strategy is reimplemented here: `make_strategy` looks the name up in
`evosax.algorithms.algorithms` (CMA_ES, Sep_CMA_ES, SNES, xNES, Open_ES, PGPE,
DifferentialEvolution, PSO, SimpleGA, ...), builds it for a flat solution of the space's
dimension, and sets the initial spread (`std_init`, in box units) where the algorithm
has one. Names match evosax's, ignoring case and underscores ("OpenES" is "Open_ES").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

from .._checks import ArgumentError

__all__ = ["available_strategies", "make_strategy", "is_population_based"]


def _registry() -> dict[str, Any]:
    try:
        from evosax.algorithms import algorithms
    except ImportError as e:  # pragma: no cover - evosax is in the `evolve` extra
        raise ImportError("idf_jax.evolve needs evosax: pip install 'idf-jax[evolve]'") from e
    return dict(algorithms)


def _norm(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()


def available_strategies() -> list[str]:
    """evosax's algorithm names, as `minimize(strategy=...)` accepts them."""
    return sorted(_registry())


def is_population_based(es: Any) -> bool:
    from evosax.algorithms.population_based.base import PopulationBasedAlgorithm

    return isinstance(es, PopulationBasedAlgorithm)


def make_strategy(
    name: str,
    population_size: int,
    dim: int,
    *,
    init_std: float,
    strategy_kwargs: Mapping[str, Any] | None = None,
    strategy_params: Mapping[str, Any] | None = None,
) -> tuple[Any, Any, str]:
    """(algorithm, its params, its evosax name) for a `dim`-dimensional box search."""
    reg = _registry()
    if not isinstance(name, str):
        raise ArgumentError("strategy", f"strategy must be a name, got {name!r}")
    by_norm = {_norm(k): k for k in reg}
    key = name if name in reg else by_norm.get(_norm(name))
    if key is None:
        raise ArgumentError(
            "strategy", f"unknown strategy {name!r}; choose one of {', '.join(sorted(reg))}"
        )
    try:
        es = reg[key](
            population_size=population_size,
            solution=jnp.zeros((dim,)),
            **dict(strategy_kwargs or {}),
        )
    except AssertionError as e:  # evosax checks sizes with assert
        raise ArgumentError("population_size", f"{key}: {e}") from e
    except TypeError as e:
        raise ArgumentError("strategy_kwargs", f"{key}: {e}") from e
    params = es.default_params
    fields = set(getattr(params, "__dataclass_fields__", {}))
    if "std_init" in fields:
        params = params.replace(std_init=jnp.asarray(init_std, jnp.float32))
    extra = dict(strategy_params or {})
    unknown = sorted(set(extra) - fields)
    if unknown:
        raise ArgumentError(
            "strategy_params",
            f"{key} has no parameter(s) {unknown}; it has {sorted(fields)}",
        )
    if extra:
        params = params.replace(**extra)
    return es, params, key
