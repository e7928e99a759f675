"""From stored readings to the forecasters' inputs: the operating point, the NVP window and
the exogenous forecast (host side, numpy).

- `operating_point`: the plant state (rack temperatures, offered load, outside temperature)
  and the operating point (setpoint, cap, servers on per rack, load shares) implied by the
  latest reading and the action applied before it;
- `nvp_window`: the action-conditioned NVP's window of state channels and controls;
- `exogenous_forecast`: next interval's load and outside temperature for the plant model
  (persistence, or a plain NVP predictor's one-step forecast).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .planner import NVPPlanner
from .plant import PlantAction, PlantModel, PlantState
from .store import EnergyReading, SourceConfig

__all__ = ["demand_of", "operating_point", "nvp_window", "exogenous_forecast"]


def demand_of(metrics: Mapping[str, float], num_servers: float) -> float | None:
    """Offered load as a share of all servers: the 'demand' channel, else cpu * servers_on
    / N; None when the reading has neither."""
    if "demand" in metrics:
        return metrics["demand"]
    if "servers_on" in metrics:
        return metrics["cpu"] * metrics["servers_on"] / float(num_servers)
    return None


def _cap_kw(
    metrics: Mapping[str, float], num_servers: float, peak_kw: float, default: float
) -> float:
    """The reported per-server cap (a fraction < 1) as fleet kW, else `default`."""
    cap = metrics.get("power_cap")
    if cap is not None and cap < 1.0:
        return cap * num_servers * peak_kw
    return default


def operating_point(
    rec: EnergyReading, cfg: SourceConfig, model: PlantModel, prev: PlantAction | None
) -> tuple[PlantState, PlantAction]:
    """Plant state and operating point implied by reading `rec` (float32 numpy). `prev`:
    the action applied before it (this optimizer's last decision), which fills what the
    reading does not report (per-rack servers, shares, cap)."""
    m = rec.metrics
    r_n, n_r = model.num_racks, float(model.servers_per_rack)
    rack_t = [m.get(f"temp_{i}") for i in range(r_n)]
    temps = np.array([t if t is not None else m["temp"] for t in rack_t], np.float32)
    servers = m.get("servers_on")
    if servers is None:
        on = prev.servers_on if prev is not None else np.full((r_n,), n_r)
    else:
        if prev is not None and abs(float(np.sum(prev.servers_on)) - servers) < 0.5:
            on = prev.servers_on
        else:
            on = np.full((r_n,), servers / r_n)
    on = np.asarray(on, np.float32)
    if "demand" in m:
        demand = m["demand"]
    else:
        demand = m["cpu"] * float(np.sum(on)) / (r_n * n_r)
    weights = prev.weights if prev is not None else np.full((r_n,), 1.0 / r_n)
    n_all, peak = r_n * n_r, float(model.p_peak_kw)
    cap_kw = _cap_kw(m, n_all, peak, float(prev.power_cap) if prev is not None else math.inf)
    f32 = np.float32
    sp = m.get("setpoint", float(prev.setpoint) if prev is not None else cfg.setpoint)
    action = PlantAction(
        setpoint=np.asarray(sp, f32),
        power_cap=np.asarray(cap_kw, f32),
        servers_on=on,
        weights=np.asarray(weights, f32),
    )
    state = PlantState(
        temps=np.asarray(temps, f32),
        demand=np.asarray(demand, f32),
        t_out=np.asarray(m.get("outside_temp", cfg.outside_temp), f32),
    )
    return state, action


def nvp_window(
    hist: Sequence[EnergyReading],
    planner: NVPPlanner,
    cfg: SourceConfig,
    model: PlantModel,
    ctrl_log: Mapping[float, np.ndarray],
    num_servers: float,
) -> tuple[np.ndarray | None, np.ndarray | None, str | None]:
    """(y (L, C), mask (L,), None) for the NVP from the last readings `hist`, or (None, None,
    reason).

    Row i: the state channels of reading i and the controls applied after it (`ctrl_log`:
    this optimizer's own decision by reading timestamp when it made one, else the operating
    point the next reading reports: setpoint, servers_on split evenly, power_cap, uniform
    shares). The last row's controls are placeholders that each candidate's overwrite.
    `num_servers`: the source's servers (float).
    """
    spec = planner.spec
    n_all = num_servers
    rows: list[tuple[EnergyReading, list[float]]] = []
    for h in hist:
        m = h.metrics
        it = m.get("it_power")
        if it is None and "cooling_power" in m:
            it = m["power"] - m["cooling_power"]
        vals: dict[str, float | None] = {
            "demand": demand_of(m, n_all),
            "it_power": it,
            "cooling_load": m.get("cooling_load"),
            "cooling_power": m.get("cooling_power"),
            "outside_temp": m.get("outside_temp"),
        }
        for r in range(spec.num_racks):
            vals[f"temp_{r}"] = m.get(f"temp_{r}", m.get("temp"))
        values = [vals.get(k) for k in spec.state]
        missing = [k for k, v in zip(spec.state, values) if v is None]
        if missing:
            rows = []  # only the contiguous complete tail counts
            if h is hist[-1]:
                return None, None, f"latest reading lacks channels {missing}"
            continue
        rows.append((h, [float(v) for v in values if v is not None]))
    if not rows:
        return None, None, "no complete reading"
    rows = rows[-planner.window :]
    r_n = spec.num_racks
    out = []
    for j, (h, st) in enumerate(rows):
        ctrl = ctrl_log.get(h.timestamp)
        if ctrl is None:
            nxt = rows[j + 1][0].metrics if j + 1 < len(rows) else h.metrics
            on = nxt.get("servers_on", n_all)
            ctrl = planner.encode(
                nxt.get("setpoint", cfg.setpoint),
                _cap_kw(nxt, n_all, float(model.p_peak_kw), math.inf),
                np.full(r_n, on / r_n),
                np.full(r_n, 1.0 / r_n),
            )
        out.append(np.concatenate([np.asarray(st, np.float32), ctrl]))
    y, mask = planner.nvp.pad(np.stack(out))
    return y, mask, None


PREDICTOR_CONTROLS = {"setpoint": "degC"}
"""The control inputs EIL gives a predictor, and their units: the supply setpoint of the
action a forecast is made for."""


def exogenous_forecast(
    predictor: Any,
    hist: Sequence[EnergyReading],
    source: str,
    state: PlantState,
    cur: PlantAction,
    model: PlantModel,
) -> tuple[PlantState, dict[str, Any]]:
    """Next-interval demand / outside temperature for planning with the plant model.

    Without a predictor: persistence (the last reading). With one (an
    `idf_jax.nvp.NVPPredictor` trained on this source's channels, same units): its one-step
    forecast from the recent history `hist` replaces the last values of 'demand' (or 'cpu'
    -> demand = cpu * servers_on / N) and 'outside_temp'. A predictor with the setpoint as
    a control input (`PREDICTOR_CONTROLS`) is given the setpoint of the action the forecast
    is made for, `cur` (°C; the history's own setpoints too when the source reports them).
    """
    if predictor is None:
        return state, {"method": "persistence"}
    chans = tuple(predictor.channels)
    missing = [c for c in chans if c not in hist[-1].metrics]
    if missing:
        raise ValueError(
            f"predictor needs channels {missing} that source {source!r} does not report"
        )
    ctrls: tuple[str, ...] = tuple(getattr(predictor, "controls", None) or ())
    unknown = [c for c in ctrls if c not in PREDICTOR_CONTROLS]
    if unknown:
        raise ValueError(f"predictor needs control inputs {unknown} that EIL does not set")
    if ctrls and all(c in h.metrics for h in hist for c in ctrls):
        chans = chans + ctrls  # the setpoints in force over the history's intervals
    records = [{c: h.metrics[c] for c in chans} for h in hist if all(c in h.metrics for c in chans)]
    min_h = int(getattr(predictor, "min_history", 1))
    if len(records) < min_h:
        return state, {
            "method": "persistence",
            "reason": f"history {len(records)} < predictor minimum {min_h}",
        }
    if ctrls:
        p = predictor.predict_next(
            telemetry_history=records, controls={"setpoint": float(np.asarray(cur.setpoint))}
        )
    else:
        p = predictor.predict_next(telemetry_history=records)
    demand: Any = state.demand
    if "demand" in chans:
        demand = float(np.clip(p["demand"], 0.0, 2.0))
    elif "cpu" in chans:
        on = float(np.sum(cur.servers_on))
        demand = float(np.clip(p["cpu"], 0.0, 1.0)) * on / float(model.num_servers)
    t_out = float(p["outside_temp"]) if "outside_temp" in chans else state.t_out
    state = state._replace(
        demand=np.asarray(demand, np.float32), t_out=np.asarray(t_out, np.float32)
    )
    return state, {
        "method": "nvp",
        "confidence": float(p.get("confidence", float("nan"))),
        "demand": float(demand),
        "outside_temp": float(t_out),
    }
