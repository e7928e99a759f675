"""The exact reference: `milp_reference` solves the datacenter model with
`scipy.optimize.milp` (HiGHS), one MILP per grid setpoint, or its LP relaxation bound."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .config import parse_config
from .model import DatacenterModel, cop

__all__ = ["milp_reference"]


def milp_reference(
    config_or_model: Mapping[str, Any] | DatacenterModel,
    relax: bool = False,
    time_limit: float | None = None,
) -> dict[str, Any]:
    """Exact optimum of the same model with `scipy.optimize.milp` (HiGHS).

    For every grid setpoint T_k: minimise P_IT subject to the linear constraints
    (x_ws <= y_s; sum_w lambda_w x_ws <= mu_s - 1/L; T_k + D P <= T_in_max;
    sum_s x_ws = sum_j j z_wj, sum_j z_wj = 1, sum_wj z_wj log(1 - (1-a)^j) >= log U, which
    is the uptime constraint exactly), then take the smallest P_IT (1 + 1/COP(T_k)).
    With relax=True the integrality is dropped: the result is a lower bound on the optimum.

    Returns {'facility_power_kw', 'setpoint_c', 'placement' (W, S) 0/1 or fractional,
    'status'}; facility_power_kw is inf when no setpoint is feasible.
    """
    from scipy.optimize import milp

    m = (
        config_or_model
        if isinstance(config_or_model, DatacenterModel)
        else parse_config(config_or_model)
    )
    W, S = m.shape
    idle, pmax, mu, lam, rec, grid = (
        np.asarray(a, np.float64)
        for a in (
            m.idle_kw,
            m.max_kw,
            m.service_rate,
            m.request_rate,
            m.recirculation,
            m.setpoint_grid,
        )
    )
    cap = mu - 1000.0 / float(m.latency_max_ms)
    nx, ny, nz = W * S, S, W * S
    n = nx + ny + nz

    def ix(w: int, s: int) -> int:
        return w * S + s

    def iy(s: int) -> int:
        return nx + s

    def iz(w: int, j: int) -> int:  # j = 1..S replicas
        return nx + ny + w * S + (j - 1)

    dyn = (pmax - idle) / mu  # kW per request/s
    c = np.zeros(n)
    for s in range(S):
        c[iy(s)] = idle[s]
        for w in range(W):
            c[ix(w, s)] = dyn[s] * lam[w]
    rows: list[np.ndarray] = []
    lo: list[float] = []
    hi: list[float] = []

    def add(coefs: list[tuple[int, float]], l: float, h: float) -> None:
        r = np.zeros(n)
        for i, v in coefs:
            r[i] += v
        rows.append(r)
        lo.append(l)
        hi.append(h)

    for w in range(W):
        for s in range(S):
            add([(ix(w, s), 1.0), (iy(s), -1.0)], -np.inf, 0.0)
    for s in range(S):
        add([(ix(w, s), lam[w]) for w in range(W)], -np.inf, cap[s])
    q = 1.0 - float(m.availability)
    logs = [math.log(1.0 - q**j) if q**j < 1 else -1e6 for j in range(1, S + 1)]
    for w in range(W):
        add(
            [(ix(w, s), 1.0) for s in range(S)] + [(iz(w, j), -float(j)) for j in range(1, S + 1)],
            0.0,
            0.0,
        )
        add([(iz(w, j), 1.0) for j in range(1, S + 1)], 1.0, 1.0)
    add(
        [(iz(w, j), logs[j - 1]) for w in range(W) for j in range(1, S + 1)],
        math.log(float(m.uptime)),
        np.inf,
    )
    # inlet rows: (D P)_r = sum_s D_rs (idle_s y_s + dyn_s sum_w lambda_w x_ws)
    inlet_rows = []
    for r in range(S):
        coefs = []
        for s in range(S):
            coefs.append((iy(s), rec[r, s] * idle[s]))
            for w in range(W):
                coefs.append((ix(w, s), rec[r, s] * dyn[s] * lam[w]))
        row = np.zeros(n)
        for i, v in coefs:
            row[i] += v
        inlet_rows.append(row)
    A_base = np.array(rows)
    integrality = np.zeros(n) if relax else np.ones(n)
    ub = np.ones(n)
    for s in range(S):
        if cap[s] <= 0:
            for w in range(W):
                ub[ix(w, s)] = 0.0
    bounds = (np.zeros(n), ub)  # milp turns (lb, ub) into `Bounds`
    best: dict[str, Any] = {
        "facility_power_kw": np.inf,
        "setpoint_c": None,
        "placement": None,
        "status": "infeasible",
    }
    for t in grid:
        A = np.vstack([A_base, np.array(inlet_rows)])
        l = np.concatenate([lo, np.full(S, -np.inf)])
        h = np.concatenate([hi, np.full(S, float(m.inlet_max_c) - t)])
        opts = {"time_limit": time_limit} if time_limit else {}
        res = milp(
            c,
            constraints=(A, l, h),  # milp turns (A, lb, ub) into a `LinearConstraint`
            integrality=integrality,
            bounds=bounds,
            options=opts,
        )
        if res.x is None:
            continue
        p_fac = float(res.fun) * (1.0 + 1.0 / float(cop(t)))
        if p_fac < best["facility_power_kw"]:
            best = {
                "facility_power_kw": p_fac,
                "setpoint_c": float(t),
                "placement": res.x[:nx].reshape(W, S),
                "status": "optimal" if res.status == 0 else res.message,
            }
    return best
