"""The blueprint's enterprise facade: `EnterpriseDiffusionCapsule.optimize_infrastructure`.

It anneals the discrete placement (`search.anneal_placement`) from random placements and
from the current one, keeps the best feasible state, and reports it against the current
configuration with the constraints that bind at the optimum.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .config import parse_config, read_number
from .energy import decode_placement
from .model import DatacenterModel
from .search import anneal_placement

__all__ = ["EnterpriseDiffusionCapsule"]


def _current_placement(m: DatacenterModel, config: Mapping[str, Any]) -> np.ndarray:
    """The current placement {workload: [server, ...]} of a config as a 0/1 (W, S) array."""
    if "placement" not in config:
        raise ValueError(
            "current_config: missing field 'placement' ({workload: [server, ...]}) describing "
            "what runs now; it is needed to compute the energy saved"
        )
    pl = config["placement"]
    if not isinstance(pl, Mapping):
        raise ValueError("current_config: 'placement' must be a dict {workload: [server, ...]}")
    W, S = m.shape
    x = np.zeros((W, S), np.int32)
    unknown_w = set(pl) - set(m.workload_names)
    if unknown_w:
        raise ValueError(f"current_config placement: unknown workloads {sorted(unknown_w)}")
    for i, w in enumerate(m.workload_names):
        if w not in pl:
            raise ValueError(f"current_config placement: workload {w!r} is not placed")
        servers = [pl[w]] if isinstance(pl[w], str) else list(pl[w])
        for s in servers:
            if s not in m.server_names:
                raise ValueError(f"current_config placement: unknown server {s!r} for {w!r}")
            x[i, m.server_names.index(s)] = 1
    return x


class EnterpriseDiffusionCapsule:
    """The blueprint's enterprise facade over the datacenter capsule.

    `optimize_infrastructure` anneals the discrete placement (Metropolis, `num_chains`
    parallel chains, geometric temperature ladder over `num_steps` steps) from random
    placements and from the current one, and keeps the best feasible state.
    """

    GOALS = ("minimize_energy",)

    def __init__(self, num_chains: int = 64, num_steps: int = 4000, seed: int = 0):
        if num_chains < 1 or num_steps < 1:
            raise ValueError("num_chains and num_steps must be >= 1")
        self.num_chains, self.num_steps, self.seed = int(num_chains), int(num_steps), seed

    def optimize_infrastructure(
        self, current_config: Mapping[str, Any], goal: str = "minimize_energy"
    ) -> dict[str, Any]:
        """Find the lowest-power feasible configuration and compare it with the current one.

        Args:
            current_config: a `datacenter` config plus 'placement' ({workload: [servers]}) and
                optionally 'setpoint_c' (default: the warmest feasible grid setpoint).
            goal: 'minimize_energy'.

        Returns:
            {'optimal_config': decoded configuration (placement, active_servers, setpoint_c,
            powers, uptime, latencies), 'current_config': the same for the current state,
            'energy_saved_kw', 'energy_saved_pct' (of current facility power),
            'binding_constraints': names, 'constraints': {name: {value, limit, slack, binding}},
            'method': description}.
        """
        if goal not in self.GOALS:
            raise ValueError(f"goal must be one of {self.GOALS}, got {goal!r}")
        m = parse_config(current_config)
        x_cur = _current_placement(m, current_config)
        t_cur = current_config.get("setpoint_c")
        if t_cur is not None:
            t_cur = read_number(current_config, "setpoint_c", "current_config", positive=False)
        current = decode_placement(m, x_cur, t_cur)
        W, S = m.shape
        key = jax.random.key(self.seed)
        k0, k1 = jax.random.split(key)
        x0 = jax.random.bernoulli(k0, 0.5, (self.num_chains, W, S)).astype(jnp.int32)
        x0 = x0.at[0].set(jnp.asarray(x_cur))
        scale = float(np.mean(m.max_kw))
        temps = jnp.geomspace(
            scale, 1e-3 * max(float(np.min(m.max_kw - m.idle_kw)), 1e-3 * scale), self.num_steps
        ).astype(jnp.float32)
        bx, be, _, _ = anneal_placement(m, k1, x0, temps)
        be = np.asarray(be)
        if not np.isfinite(be).any():
            raise ValueError(
                "no feasible configuration found: check the constraints and capacities"
            )
        x_best = np.asarray(bx[int(np.argmin(be))])
        best = decode_placement(m, x_best)
        cons = _constraint_report(m, x_best, best)
        saved = current["facility_power_kw"] - best["facility_power_kw"]
        return {
            "optimal_config": best,
            "current_config": current,
            "energy_saved_kw": saved,
            "energy_saved_pct": 100.0 * saved / current["facility_power_kw"],
            "binding_constraints": [k for k, v in cons.items() if v["binding"]],
            "constraints": cons,
            "method": (
                f"simulated annealing over 0/1 placements, {self.num_chains} chains x "
                f"{self.num_steps} Metropolis steps, warmest feasible setpoint per placement"
            ),
        }


def _constraint_report(
    m: DatacenterModel, x: np.ndarray, dec: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Value, limit, slack and whether each constraint binds at the optimum.

    uptime binds when removing any single replica of a replicated workload breaks it;
    latency_max binds when some server's M/M/1 latency is within 10% of the limit;
    inlet_temperature binds when it holds the setpoint below the CRAC maximum.
    """
    q = 1.0 - float(m.availability)
    U, L, t_in = float(m.uptime), float(m.latency_max_ms), float(m.inlet_max_c)
    n = x.sum(axis=1)
    uptime = dec["uptime"]
    drop_breaks = [
        uptime / (1 - q ** n[w]) * (1 - q ** (n[w] - 1)) < U for w in range(len(n)) if n[w] >= 2
    ]
    max_lat = max(dec["latency_ms"].values()) if dec["latency_ms"] else 0.0
    t_max = float(m.setpoint_grid[-1])
    return {
        "uptime": {
            "value": uptime,
            "limit": U,
            "slack": uptime - U,
            "binding": bool(drop_breaks) and all(drop_breaks),
        },
        "latency_max": {
            "value": max_lat,
            "limit": L,
            "slack": L - max_lat,
            "binding": max_lat >= 0.9 * L,
        },
        "inlet_temperature": {
            "value": dec["max_inlet_c"],
            "limit": t_in,
            "slack": t_in - dec["max_inlet_c"],
            "binding": dec["setpoint_c"] < t_max - 1e-9,
        },
    }
