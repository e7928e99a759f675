"""Candidate generation: the typed action space around the current operating point (host side).

Each candidate changes one lever of the current operating point (so sequential decisions move
coordinate by coordinate):

- ``no_op``: keep everything (always candidate 0, the baseline of the costs);
- ``cooling_setpoint``: ``{'setpoint_c': °C}``, a grid over [setpoint_min, setpoint_max]
  (continuous: the decision refines the best one);
- ``power_capping``: ``{'power_cap_kw': kW}``, shares of the uncapped IT power (continuous;
  ``inf`` removes the cap);
- ``server_on_off``: ``{'servers_on': [per rack]}`` from the servers the load needs to all
  (discrete);
- ``workload_migration``: ``{'weights': [per rack]}``, a few load-share patterns (discrete).

The server power curve (`idf_jax.nvp.physics`) sizes the cap levels; switching servers and
moving work carry an irreversibility cost ``I(a) = e_switch |servers toggled| + e_migrate
|work moved|`` [kWh]. Everything here is numpy: no device round trip on the decision path.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from ..nvp import physics
from .decision import Candidates
from .plant import PlantAction, PlantModel, PlantState

__all__ = [
    "ACTION_TYPES",
    "CandidateSet",
    "generate",
    "with_cooler_supply",
    "for_decision",
    "uncapped_it_power",
    "same_point",
]

ACTION_TYPES = ("no_op", "cooling_setpoint", "power_capping", "server_on_off", "workload_migration")
N_SETPOINTS = 12
CAP_SHARES = (0.85, 0.9, 0.95, 0.98, math.inf)
N_SERVERS = 12
N_WEIGHTS = 4


class CandidateSet(NamedTuple):
    """K candidates: `actions` (a `PlantAction` of numpy arrays stacked along axis 0), their
    `types` and `params` (as reported by `EILOptimizer.act`), and `irrev` I(a) (K,) kWh."""

    actions: PlantAction
    types: list[str]
    params: list[dict[str, Any]]
    irrev: np.ndarray


def uncapped_it_power(model: PlantModel, state: PlantState, action: PlantAction) -> float:
    """IT power [kW] of `action` at the load of `state` without a cap (numpy, float64; the
    formulas of `physics.row_interval`)."""
    n_r = float(model.servers_per_rack)
    on = np.clip(np.asarray(action.servers_on, np.float64), 0.0, n_r)
    w = physics.shares(np.asarray(action.weights, np.float64), xp=np)
    _, u = physics.utilisation(float(state.demand), model.num_racks * n_r, on, w, xp=np)
    idle, peak = float(model.p_idle_kw), float(model.p_peak_kw)
    return float(np.sum(on * physics.server_power(u, idle, peak, xp=np)))


def generate(
    model: PlantModel,
    state: PlantState,
    cur: PlantAction,
    *,
    setpoint_range: tuple[float, float],
    switch_kwh: float,
    migrate_kwh: float,
) -> CandidateSet:
    """All candidates around the current operating point `cur` at `state` (module doc)."""
    r_n, n_r = model.num_racks, float(model.servers_per_rack)
    n_all = r_n * n_r
    lo, hi = setpoint_range
    c_sp = float(cur.setpoint)
    c_cap = float(cur.power_cap)
    c_on = np.asarray(cur.servers_on, np.float64)
    w = np.asarray(cur.weights, np.float64)
    w = w / w.sum()
    sp: list[float] = [c_sp]
    cap: list[float] = [c_cap]
    on: list[np.ndarray] = [c_on]
    wt: list[np.ndarray] = [w]
    types, params, irrev = ["no_op"], [{}], [0.0]

    def add(kind, param, irr=0.0, *, s=c_sp, c=c_cap, o=c_on, ws=w):
        sp.append(s)
        cap.append(c)
        on.append(o)
        wt.append(ws)
        types.append(kind)
        params.append(param)
        irrev.append(irr)

    for x in np.linspace(lo, hi, N_SETPOINTS):
        add("cooling_setpoint", {"setpoint_c": float(x)}, s=float(x))
    uncapped = uncapped_it_power(model, state, cur)
    for frac in CAP_SHARES:
        x = frac * uncapped
        add("power_capping", {"power_cap_kw": x}, c=x)
    d = float(state.demand)
    need = min(n_all, d * n_all)
    for tot in np.linspace(need, n_all, N_SERVERS):
        x = np.minimum(np.ceil(tot * w), n_r)
        moved = switch_kwh * float(np.abs(x - c_on).sum())
        add("server_on_off", {"servers_on": [int(v) for v in x]}, moved, o=x)
    temps = np.asarray(state.temps, np.float64)
    variants = [
        np.full(r_n, 1.0 / r_n),
        c_on / max(c_on.sum(), 1e-9),
        np.maximum(temps.max() + 1.0 - temps, 1e-3),
        np.maximum(c_on - d * n_all * w, 0.0) + 1e-3,
    ]
    for v in variants[:N_WEIGHTS]:
        v = v / v.sum()
        moved = 0.5 * float(np.abs(v - w).sum()) * d * n_all
        add("workload_migration", {"weights": [float(x) for x in v]}, migrate_kwh * moved, ws=v)
    f32 = np.float32
    stacked = PlantAction(
        np.asarray(sp, f32),
        np.asarray(cap, f32),
        np.stack(on).astype(f32),
        np.stack(wt).astype(f32),
    )
    return CandidateSet(stacked, types, params, np.asarray(irrev, f32))


def with_cooler_supply(
    cset: CandidateSet, cur: PlantAction, setpoint_min: float, drop: float = 2.0
) -> CandidateSet:
    """Every `server_on_off` candidate also comes with the supply setpoint `drop` K lower
    (clipped to `setpoint_min`; same type, params gain 'setpoint_c'). Switching servers on
    adds heat; when the racks already run at the temperature limit, neither lever alone may
    be feasible. A fixed number of extra candidates, so the jitted scoring keeps one shape."""
    idx = [i for i, t in enumerate(cset.types) if t == "server_on_off"]
    if not idx:
        return cset
    new_sp = max(float(cur.setpoint) - drop, setpoint_min)
    a = cset.actions
    f32 = np.float32
    actions = PlantAction(
        np.concatenate([a.setpoint, np.full(len(idx), new_sp, f32)]),
        np.concatenate([a.power_cap, a.power_cap[idx]]),
        np.concatenate([a.servers_on, a.servers_on[idx]]),
        np.concatenate([a.weights, a.weights[idx]]),
    )
    types = list(cset.types) + ["server_on_off"] * len(idx)
    params = list(cset.params) + [dict(cset.params[i], setpoint_c=new_sp) for i in idx]
    irrev = np.concatenate([cset.irrev, cset.irrev[idx]]).astype(f32)
    return CandidateSet(actions, types, params, irrev)


def for_decision(
    cset: CandidateSet,
    setpoint_range: tuple[float, float],
    cap_hi: float,
    lr_setpoint: float,
    lr_cap: float,
) -> Candidates:
    """The decision procedure's bundle: which continuous parameter refinement may move per
    candidate (setpoint in `setpoint_range` °C, rate `lr_setpoint`; cap in [cap_hi / 2,
    cap_hi] kW, rate `lr_cap` as a share of cap_hi), float32 / int32 numpy."""
    sp_lo, sp_hi = setpoint_range
    kinds = {
        "cooling_setpoint": (0, sp_lo, sp_hi, lr_setpoint),
        "power_capping": (1, 0.5 * cap_hi, cap_hi, lr_cap),
    }
    which, lo, hi, lr = np.asarray(
        [kinds.get(t, (-1, 0.0, 1.0, 0.0)) for t in cset.types], np.float64
    ).T
    f32 = np.float32
    return Candidates(
        actions=cset.actions,
        irrev=np.asarray(cset.irrev, f32),
        which=which.astype(np.int32),
        lo=lo.astype(f32),
        hi=hi.astype(f32),
        lr=lr.astype(f32),
    )


def same_point(a: PlantAction, b: PlantAction) -> bool:
    """Whether two operating points are the same (setpoint within 1e-4 °C, cap within
    1e-4 kW or both uncapped, servers equal, shares within 1e-6)."""
    ca, cb = float(a.power_cap), float(b.power_cap)
    caps = (math.isinf(ca) and math.isinf(cb)) or abs(ca - cb) <= 1e-4
    wa, wb = np.asarray(a.weights, np.float64), np.asarray(b.weights, np.float64)
    wa, wb = wa / max(wa.sum(), 1e-12), wb / max(wb.sum(), 1e-12)
    return (
        caps
        and abs(float(a.setpoint) - float(b.setpoint)) <= 1e-4
        and np.array_equal(np.asarray(a.servers_on), np.asarray(b.servers_on))
        and float(np.max(np.abs(wa - wb))) <= 1e-6
    )
