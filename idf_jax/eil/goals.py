"""What `EILOptimizer.act` is asked: the goal's weights and the constraint limits (validated).

``C(a) = w1 dE(a) + w2 dS(a) + w3 I(a)`` [kWh] (`idf_jax.eil.decision`); a goal names the
weights ``(w1 energy, w2 exergy, w3 irreversibility)``. Constraints: ``uptime`` (target
probability, default 0.999), ``temp_max`` (°C, default the source's), ``power_max`` (kW,
default none) and ``unserved_max`` (share of demand, default 1 - uptime).
"""

from __future__ import annotations

import math
from typing import Any

from .decision import Limits

__all__ = ["GOALS", "CONSTRAINT_KEYS", "as_float", "goal_weights", "limits_of"]

GOALS = {
    "minimize_energy": (1.0, 0.1, 1.0),
    "minimize_entropy": (0.1, 1.0, 1.0),
    "balanced": (1.0, 1.0, 1.0),
}
CONSTRAINT_KEYS = ("uptime", "temp_max", "power_max", "unserved_max")


def as_float(name: str, v: Any) -> float:
    """`v` as a finite float, or ValueError naming `name` (booleans and strings refused)."""
    if isinstance(v, bool) or isinstance(v, str | bytes) or not hasattr(v, "__float__"):
        raise ValueError(f"{name} must be a number, got {v!r}")
    x = float(v)
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite, got {x}")
    return x


def goal_weights(goal: str, weights: Any = None) -> tuple[float, ...]:
    """The weights of `goal` (one of `GOALS`), or the explicit `weights` (three numbers >= 0)."""
    if goal not in GOALS:
        raise ValueError(f"unknown goal {goal!r}; known: {sorted(GOALS)}")
    w = GOALS[goal] if weights is None else tuple(as_float("weight", x) for x in weights)
    if len(w) != 3 or min(w) < 0:
        raise ValueError("weights must be three non-negative numbers (w1, w2, w3)")
    return w


def limits_of(constraints: Any, temp_max: float) -> Limits:
    """The `Limits` of a constraints dict (keys `CONSTRAINT_KEYS`; None: the defaults, with
    `temp_max` °C the source's limit)."""
    if constraints is None:
        constraints = {}
    if not isinstance(constraints, dict):
        raise ValueError("constraints must be a dict")
    unknown = set(constraints) - set(CONSTRAINT_KEYS)
    if unknown:
        raise ValueError(f"unknown constraints {sorted(unknown)}; known: {CONSTRAINT_KEYS}")
    c = {k: as_float(f"constraint {k!r}", v) for k, v in constraints.items()}
    up = c.get("uptime", 0.999)
    if not (0 < up < 1):
        raise ValueError(f"uptime must be in (0, 1), got {up}")
    tmax = c.get("temp_max", temp_max)
    pmax = c.get("power_max", 1e9)
    umax = c.get("unserved_max", 1.0 - up)
    if pmax <= 0 or not (0 <= umax <= 1):
        raise ValueError("power_max must be > 0 and unserved_max in [0, 1]")
    return Limits(up, tmax, pmax, umax)
