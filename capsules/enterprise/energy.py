"""The datacenter physics and energies: power, M/M/1 load, inlet temperatures, uptime,
the constraint penalties, the discrete energy of a 0/1 placement and its decoding.

All functions take the `DatacenterModel` first and a placement x of shape (W, S) (0/1, or
fractional for the relaxed capsule energy); see the package docstring for the equations.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from .model import DatacenterModel, cop

__all__ = [
    "best_setpoint",
    "decode_placement",
    "discrete_energy",
    "facility_energy",
    "is_feasible",
    "physics",
    "violations",
]


def physics(
    m: DatacenterModel, x: Float[ArrayLike, "W S"], setpoint: Float[ArrayLike, ""]
) -> dict[str, Array]:
    """Power, queueing and thermal quantities of (possibly fractional) placement x (W, S):
    load, on, util, p_server (S,); p_it, p_cool, uptime (); inlet (S,); n_rep (W,)."""
    lam, mu = m.request_rate, m.service_rate
    x, setpoint = jnp.asarray(x), jnp.asarray(setpoint)
    load = lam @ x  # (S,) requests/s per server
    on = 1.0 - jnp.prod(1.0 - x, axis=0)  # (S,) 1 when the server hosts anything
    util = load / mu
    p_server = on * m.idle_kw + (m.max_kw - m.idle_kw) * util
    p_it = jnp.sum(p_server)
    p_cool = p_it / cop(setpoint)
    inlet = setpoint + m.recirculation @ p_server
    n_rep = jnp.sum(x, axis=1)  # (W,)
    q = 1.0 - m.availability
    uptime = jnp.prod(1.0 - q**n_rep)
    return dict(
        load=load,
        on=on,
        util=util,
        p_server=p_server,
        p_it=p_it,
        p_cool=p_cool,
        inlet=inlet,
        uptime=uptime,
        n_rep=n_rep,
    )


def violations(m: DatacenterModel, ph: dict[str, Any]) -> tuple[Array, Array, Array]:
    """Normalised violations (uptime (), latency (S,), inlet temperature (S,)), all >= 0."""
    cap, mu = m.capacity, m.service_rate
    v_up = jnp.maximum(m.uptime - ph["uptime"], 0.0) / (1.0 - m.uptime)
    v_lat = jnp.maximum(ph["load"] - cap, 0.0) / mu
    v_temp = jnp.maximum(ph["inlet"] - m.inlet_max_c, 0.0)
    return v_up, v_lat, v_temp


def _penalty(m: DatacenterModel, ph: dict[str, Array]) -> Array:
    v_up, v_lat, v_temp = violations(m, ph)
    total = (v_up + v_up**2) + jnp.sum(v_lat + v_lat**2) + jnp.sum(v_temp + v_temp**2)
    return m.penalty_kw * total


def facility_energy(
    m: DatacenterModel, x: Float[ArrayLike, "W S"], setpoint: Float[ArrayLike, ""]
) -> Float[Array, ""]:
    """P_fac(x, T) + penalties, kW, for a (possibly fractional) placement at setpoint T."""
    ph = physics(m, x, setpoint)
    return ph["p_it"] + ph["p_cool"] + _penalty(m, ph)


def best_setpoint(m: DatacenterModel, x: Float[ArrayLike, "W S"]) -> Float[Array, ""]:
    """Warmest grid setpoint keeping every inlet <= inlet_max for placement x (W, S) in {0,1}.

    The inlet rise D P does not depend on the setpoint, so T* = max{T_k <= T_in_max - max(D P)};
    when even the coolest grid value is too warm, the coolest is returned (and violates).
    """
    ph = physics(m, x, 0.0)
    headroom = m.inlet_max_c - jnp.max(ph["inlet"])  # inlet at setpoint 0 is the rise D P
    grid = m.setpoint_grid
    step = grid[1] - grid[0] if grid.shape[0] > 1 else 1.0
    k = jnp.floor((headroom - grid[0]) / step + 1e-4).astype(jnp.int32)
    k = jnp.clip(k, 0, grid.shape[0] - 1)
    return grid[k]


def discrete_energy(m: DatacenterModel, x: Int[ArrayLike, "W S"]) -> Float[Array, ""]:
    """E(x) = P_fac(x, T*(x)) + penalties, kW, for a 0/1 placement at its best grid setpoint."""
    xf = jnp.asarray(x, jnp.float32)
    return facility_energy(m, xf, best_setpoint(m, xf))


def is_feasible(m: DatacenterModel, x: Int[ArrayLike, "W S"]) -> Bool[Array, ""]:
    """True when the 0/1 placement meets every constraint at its best grid setpoint."""
    xf = jnp.asarray(x, jnp.float32)
    ph = physics(m, xf, best_setpoint(m, xf))
    v_up, v_lat, v_temp = violations(m, ph)
    return (v_up <= 0) & jnp.all(v_lat <= 0) & jnp.all(v_temp <= 0)


def decode_placement(
    m: DatacenterModel, x: ArrayLike, setpoint: float | None = None
) -> dict[str, Any]:
    """A 0/1 placement (W, S) -> configuration dict with power, latency, uptime, slacks.

    `setpoint` (degC) defaults to the warmest feasible grid setpoint `best_setpoint`.
    """
    x = np.asarray(x) > 0.5
    xf = jnp.asarray(x, jnp.float32)
    t = float(best_setpoint(m, xf)) if setpoint is None else float(setpoint)
    ph = jax.tree.map(np.asarray, physics(m, xf, t))
    v_up, v_lat, v_temp = (np.asarray(v) for v in violations(m, ph))
    on = ph["on"] > 0.5
    lat_ms = np.where(on, 1000.0 / np.maximum(m.service_rate - ph["load"], 1e-12), 0.0)
    lat_ms = np.where(on & (ph["load"] >= m.service_rate), np.inf, lat_ms)
    p_fac = float(ph["p_it"] + ph["p_cool"])
    return {
        "placement": {
            w: [m.server_names[s] for s in np.nonzero(x[i])[0]]
            for i, w in enumerate(m.workload_names)
        },
        "active_servers": [m.server_names[s] for s in np.nonzero(on)[0]],
        "setpoint_c": t,
        "it_power_kw": float(ph["p_it"]),
        "cooling_power_kw": float(ph["p_cool"]),
        "facility_power_kw": p_fac,
        "pue": p_fac / float(ph["p_it"]) if ph["p_it"] > 0 else float("nan"),
        "cop": float(cop(t)),
        "uptime": float(ph["uptime"]),
        "latency_ms": {m.server_names[s]: float(lat_ms[s]) for s in np.nonzero(on)[0]},
        "utilisation": {m.server_names[s]: float(ph["util"][s]) for s in np.nonzero(on)[0]},
        "max_inlet_c": float(np.max(ph["inlet"])),
        "feasible": bool(v_up <= 0 and np.all(v_lat <= 0) and np.all(v_temp <= 0)),
        "violations": {
            "uptime": float(v_up),
            "latency_max": float(np.sum(v_lat)),
            "inlet_temperature": float(np.sum(v_temp)),
        },
    }
