"""Datacenter configs: validation and parsing into a `DatacenterModel`.

Every malformed, missing or impossible field raises a `ValueError` that names it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from .model import DatacenterModel

__all__ = ["parse_config", "read_number"]

_KNOWN_CONSTRAINTS = ("uptime", "latency_max")
_DEFAULT_CONSTRAINTS = {"uptime": 0.999, "latency_max": 100.0}
_KNOWN_FIELDS = {
    "servers",
    "workloads",
    "server_availability",
    "recirculation",
    "inlet_max_c",
    "setpoint_min_c",
    "setpoint_max_c",
    "setpoint_step_c",
    "constraints",
    "penalty_kw",
    "placement",
    "setpoint_c",
}


def read_number(
    d: Mapping[str, Any],
    key: str,
    where: str,
    positive: bool = True,
    default: float | None = None,
) -> float:
    """`d[key]` as a finite float (> 0, or >= 0 when `positive` is False); `default` when
    the field is missing and a default is given. `where` names the place in messages."""
    if key not in d:
        if default is not None:
            return float(default)
        raise ValueError(f"{where}: missing field {key!r}")
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise ValueError(f"{where}: field {key!r} must be a number, got {v!r}")
    v = float(v)
    if not math.isfinite(v) or (positive and v <= 0) or (not positive and v < 0):
        raise ValueError(f"{where}: field {key!r} must be {'> 0' if positive else '>= 0'}, got {v}")
    return v


def _names(items: Sequence[Any], kind: str) -> list[str]:
    names = []
    for i, it in enumerate(items):
        if not isinstance(it, Mapping):
            raise ValueError(f"{kind}[{i}] must be a dict, got {type(it).__name__}")
        count = it.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
            raise ValueError(f"{kind}[{i}]: 'count' must be an integer >= 1, got {count!r}")
        base = str(it.get("name", f"{kind[:-1]}{i}"))
        names += [base] if count == 1 else [f"{base}-{j}" for j in range(count)]
    if len(set(names)) != len(names):
        raise ValueError(f"{kind}: names must be unique, got {names}")
    return names


def _expand(items: Sequence[Mapping[str, Any]], key: str, kind: str, positive=True) -> np.ndarray:
    out = []
    for i, it in enumerate(items):
        v = read_number(it, key, f"{kind}[{i}]", positive)
        out += [v] * int(it.get("count", 1))
    return np.asarray(out, dtype=np.float64)


def parse_config(config: Mapping[str, Any]) -> DatacenterModel:
    """Validate a datacenter config and return a `DatacenterModel`.

    Config fields:
        servers: list of {name, idle_power_kw, max_power_kw, service_rate (req/s), count=1}.
        workloads: list of {name, request_rate (req/s), count=1}.
        server_availability: a in (0, 1], default 0.99.
        recirculation: D in degC/kW, a scalar r (D = r * ones, well-mixed room) or an S x S
            matrix; default 0.3.
        inlet_max_c: 27.0; setpoint_min_c: 15.0; setpoint_max_c: 27.0; setpoint_step_c: 0.5.
        constraints: {'uptime': U in (0, 1), 'latency_max': ms}; defaults 0.999 and 100.
        penalty_kw: weight of the constraint penalties; default 10 x sum of max powers.

    Raises:
        ValueError naming the field for missing, malformed or impossible configurations
        (a workload faster than any server can serve within the latency limit, total load
        above total capacity, an uptime no replication can reach).
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"config must be a dict, got {type(config).__name__}")
    unknown = set(config) - _KNOWN_FIELDS
    if unknown:
        raise ValueError(
            f"config: unknown fields {sorted(unknown)}; known fields: {sorted(_KNOWN_FIELDS)}"
        )
    for field in ("servers", "workloads"):
        if field not in config:
            raise ValueError(f"config: missing field {field!r}")
        if not isinstance(config[field], (list, tuple)) or not config[field]:
            raise ValueError(f"config: {field!r} must be a non-empty list of dicts")
    servers, workloads = config["servers"], config["workloads"]
    snames = _names(servers, "servers")
    wnames = _names(workloads, "workloads")
    idle = _expand(servers, "idle_power_kw", "servers", positive=False)
    pmax = _expand(servers, "max_power_kw", "servers")
    mu = _expand(servers, "service_rate", "servers")
    lam = _expand(workloads, "request_rate", "workloads")
    if np.any(pmax < idle):
        bad = [snames[i] for i in np.nonzero(pmax < idle)[0]]
        raise ValueError(f"servers {bad}: max_power_kw must be >= idle_power_kw")
    a = read_number(config, "server_availability", "config", default=0.99)
    if a > 1.0:
        raise ValueError(f"config: server_availability must be in (0, 1], got {a}")
    S = len(snames)
    rec = config.get("recirculation", 0.3)
    rec = np.asarray(rec, dtype=np.float64)
    if rec.ndim == 0:
        rec = np.full((S, S), float(rec))
    if rec.shape != (S, S) or not np.all(np.isfinite(rec)) or np.any(rec < 0):
        raise ValueError(
            f"config: 'recirculation' must be a scalar or a {S}x{S} matrix of finite values "
            f">= 0 (degC/kW), got shape {rec.shape}"
        )
    t_in = read_number(config, "inlet_max_c", "config", positive=False, default=27.0)
    t_lo = read_number(config, "setpoint_min_c", "config", positive=False, default=15.0)
    t_hi = read_number(config, "setpoint_max_c", "config", positive=False, default=27.0)
    step = read_number(config, "setpoint_step_c", "config", default=0.5)
    if t_hi < t_lo:
        raise ValueError(f"config: setpoint_max_c ({t_hi}) < setpoint_min_c ({t_lo})")
    if t_lo > t_in:
        raise ValueError(f"config: setpoint_min_c ({t_lo}) is above inlet_max_c ({t_in})")
    grid = t_lo + step * np.arange(int(math.floor((t_hi - t_lo) / step + 1e-9)) + 1)
    cons = config.get("constraints", {})
    if not isinstance(cons, Mapping):
        raise ValueError(
            "config: 'constraints' must be a dict like {'uptime': 0.999, 'latency_max': 100}"
        )
    bad = set(cons) - set(_KNOWN_CONSTRAINTS)
    if bad:
        raise ValueError(
            f"config: unknown constraints {sorted(bad)}; known: {list(_KNOWN_CONSTRAINTS)}"
        )
    cons = {**_DEFAULT_CONSTRAINTS, **cons}
    U = read_number(cons, "uptime", "constraints")
    if U >= 1.0:
        raise ValueError(f"constraints: uptime must be in (0, 1), got {U}")
    L = read_number(cons, "latency_max", "constraints")
    cap = mu - 1000.0 / L
    if np.all(cap <= 0):
        raise ValueError(
            f"constraints: latency_max = {L} ms is below every server's bare service time "
            f"1/mu = {1000.0 / mu.max():.3g} ms"
        )
    too_big = [wnames[i] for i in np.nonzero(lam > cap.max())[0]]
    if too_big:
        raise ValueError(
            f"workloads {too_big}: request_rate exceeds the largest server capacity "
            f"mu - 1/latency_max = {cap.max():.4g} req/s"
        )
    if lam.sum() > np.clip(cap, 0, None).sum():
        raise ValueError(
            f"total request rate {lam.sum():.4g} req/s exceeds the total capacity "
            f"{np.clip(cap, 0, None).sum():.4g} req/s within latency_max"
        )
    q = 1.0 - a
    best_uptime = (1.0 - q**S) ** len(wnames)
    if best_uptime < U:
        raise ValueError(
            f"constraints: uptime {U} is unreachable: even with every workload replicated on "
            f"all {S} servers it is {best_uptime:.6g}"
        )
    pen = read_number(config, "penalty_kw", "config", default=10.0 * float(pmax.sum()))

    def f(v):
        return jnp.asarray(v, jnp.float32)

    return DatacenterModel(
        tuple(snames),
        tuple(wnames),
        f(idle),
        f(pmax),
        f(mu),
        f(lam),
        f(a),
        f(rec),
        f(t_in),
        f(grid),
        f(U),
        f(L),
        f(pen),
    )
