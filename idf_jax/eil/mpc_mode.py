"""EIL's model-predictive planning mode: per-source history, inputs and the report of a plan.

`EILOptimizer(planner="mpc")` (or ``planner=MPCPlanner(...)``) decides every source with
`idf_jax.eil.mpc`: each reading feeds two `SeasonalForecaster`s (offered load, outside air)
of the source's `MPCSource`; `MPCSource.inputs` builds the traced `MPCInputs` of a decision
(forecasts, uptime headroom ``max(z sigma_h, q_h, z floor)`` from the backtested
forecast errors and the source's configured demand-noise floor, the previous plan shifted by
one interval as the warm start, temperature margins learned from the plan's own one-step
errors), and `report` turns an `MPCResult` into the decision dict `EILOptimizer.act`
returns and signs (type: the lever the first action changes most, in the candidate
vocabulary of `idf_jax.eil.candidates`).
"""

from __future__ import annotations

import collections
from typing import Any

import jax
import numpy as np

from .calibration import z_of
from .forecast import SeasonalForecaster, check_period
from .mpc import MPCInputs, MPCPlan, MPCPlanner, MPCResult
from .plant import PlantAction, PlantModel, PlantState
from .store import EnergyReading, SourceConfig

__all__ = ["MPCSource", "report"]

_ERR_EVERY = 16  # decisions between backtests of the forecast errors
_TEMP_MEMORY = 672


class MPCSource:
    """What the MPC mode keeps for one source (module doc)."""

    def __init__(
        self, cfg: SourceConfig, history: list[EnergyReading], demands: list[float | None]
    ):
        period = check_period(cfg.interval_s)
        self.cfg = cfg
        self.demand = SeasonalForecaster(period)
        self.t_out = SeasonalForecaster(period)
        self.last_ts: float | None = None
        for rec, d in zip(history, demands, strict=True):
            self.observe(rec, d)
        self.plan: MPCPlan | None = None
        self._err: tuple[np.ndarray, np.ndarray] | None = None
        self._since_err = 0
        self._pred: tuple[float, float, float] | None = None  # (ts, hot mean, hot high)
        self.resid_mean: collections.deque[float] = collections.deque(maxlen=_TEMP_MEMORY)
        self.resid_high: collections.deque[float] = collections.deque(maxlen=_TEMP_MEMORY)

    def observe(self, rec: EnergyReading, demand: float | None) -> None:
        """Feed one new reading (older or equal timestamps are ignored)."""
        if self.last_ts is not None and rec.timestamp <= self.last_ts:
            return
        self.last_ts = rec.timestamp
        if demand is not None:
            self.demand.append(demand)
        t = rec.metrics.get("outside_temp")
        if t is not None:
            self.t_out.append(t)

    def _learn_temps(self, latest: EnergyReading, num_racks: int) -> None:
        last, self._pred = self._pred, None
        if last is None or latest.timestamp <= last[0]:
            return
        temps = [latest.metrics.get(f"temp_{r}") for r in range(num_racks)]
        if any(t is None for t in temps):
            return
        hot = max(float(t) for t in temps if t is not None)
        self.resid_mean.append(hot - last[1])
        self.resid_high.append(hot - last[2])

    def temp_margins(self) -> tuple[float, float]:
        """(interval-1 margin over the high scenario, sigma of the mean forecast) [K]:
        1.1 x the largest under-prediction of the high scenario (0.2 K at least) and the
        RMS error of the mean forecast (0.3 K at least), once 8 outcomes are known. The
        later intervals are held below ``temp_max - max(margin, z_T sigma)`` (not growing
        with h: every interval is re-planned)."""
        if len(self.resid_high) < 8:
            return 0.5, 0.5
        hi = max(0.2, 1.1 * max(0.0, max(self.resid_high)))
        sd = max(0.3, float(np.sqrt(np.mean(np.square(self.resid_mean)))))
        return hi, sd

    def inputs(
        self,
        planner: MPCPlanner,
        model: PlantModel,
        latest: EnergyReading,
        state: PlantState,
        cur: PlantAction,
        goal: tuple[float, ...],
        limits: Any,
        ratio: float,
        setpoint_range: tuple[float, float],
        switch_kwh: float,
        migrate_kwh: float,
    ) -> tuple[MPCInputs, dict]:
        """The decision's `MPCInputs` (numpy float32) and what they were made of."""
        f32 = np.float32
        h, r = planner.horizon, model.num_racks
        self._learn_temps(latest, r)
        if len(self.demand):
            dem = np.clip(self.demand.forecast(h), 0.0, 1.0)
        else:
            dem = np.full((h,), float(state.demand))
        dem[0] = max(dem[0], 0.0)
        t_out = self.t_out.forecast(h) if len(self.t_out) else np.full((h,), float(state.t_out))
        if self._err is None or self._since_err >= _ERR_EVERY:
            sig, q, _ = self.demand.error_quantiles(h)
            self._err, self._since_err = (sig, q), 0
        self._since_err += 1
        sig, q = self._err
        z = z_of(float(limits.uptime))
        floor = z * float(self.cfg.demand_sigma)
        head = np.maximum(np.maximum(z * sig, q), floor)
        margin, t_sd = self.temp_margins()
        if self.plan is None:
            warm = MPCPlan(
                np.full((h,), float(cur.setpoint), f32),
                np.full((h,), float(cur.power_cap), f32),
                np.broadcast_to(np.asarray(cur.servers_on, f32), (h, r)).copy(),
                np.broadcast_to(np.asarray(cur.weights, f32), (h, r)).copy(),
            )
        else:
            warm = MPCPlan(*(np.concatenate([x[1:], x[-1:]]).astype(f32) for x in self.plan))
        inp = MPCInputs(
            temps=np.asarray(state.temps, f32),
            demand=dem.astype(f32),
            headroom=head.astype(f32),
            t_out=np.asarray(t_out, f32),
            prev=PlantAction(*(np.asarray(x, f32) for x in cur)),
            warm=warm,
            goal=np.asarray(goal, f32),
            temp_max=f32(limits.temp_max),
            temp_margin=f32(margin),
            temp_sigma=f32(t_sd),
            z_temp=f32(min(z, 3.0)),
            ratio=f32(ratio),
            sp_lo=f32(setpoint_range[0]),
            sp_hi=f32(setpoint_range[1]),
            switch_kwh=f32(switch_kwh),
            migrate_kwh=f32(migrate_kwh),
        )
        info = {
            "demand": float(dem[0]),
            "outside_temp": float(t_out[0]),
            "headroom": float(head[0]),
            "demand_sigma": float(sig[0]),
            "temp_margin": margin,
            "temp_sigma": t_sd,
        }
        return inp, info

    def remember(self, res: MPCResult, timestamp: float) -> None:
        """Keep the plan (warm start) and the interval-1 hottest-rack forecasts."""
        self.plan = MPCPlan(*(np.asarray(x, np.float32) for x in res.plan))
        self._pred = (timestamp, float(res.first["temp_max"]), float(res.temp_hi))


def _lever(chosen: PlantAction, cur: PlantAction) -> tuple[str, dict]:
    """The candidate type of the lever `chosen` changes most, with its parameters."""
    d_on = float(np.sum(np.abs(np.asarray(chosen.servers_on) - np.asarray(cur.servers_on))))
    d_w = float(np.sum(np.abs(np.asarray(chosen.weights) - np.asarray(cur.weights))))
    d_sp = abs(float(chosen.setpoint) - float(cur.setpoint))
    c_new, c_old = float(chosen.power_cap), float(cur.power_cap)
    d_cap = c_new != c_old and not (np.isinf(c_new) and np.isinf(c_old))
    if d_on >= 0.5:
        return "server_on_off", {"servers_on": np.asarray(chosen.servers_on).tolist()}
    if d_sp >= 0.05:
        return "cooling_setpoint", {"setpoint_c": float(chosen.setpoint)}
    if d_w >= 0.02:
        return "workload_migration", {"weights": np.asarray(chosen.weights).tolist()}
    if d_cap:
        return "power_capping", {"power_cap_kw": c_new}
    return "no_op", {}


def report(
    res: MPCResult, cur: PlantAction, predicted_keys: tuple[str, ...], info: dict
) -> dict[str, Any]:
    """The `EILOptimizer.act` ingredients of an MPC decision (numpy `res`)."""
    res = jax.tree.map(np.asarray, res)
    chosen = PlantAction(*(np.asarray(x, np.float32) for x in res.action))
    kind, params = _lever(chosen, cur)
    first = {k: float(v) for k, v in res.first.items() if np.ndim(v) == 0}
    plan = {
        "setpoint": np.round(res.plan.setpoint, 2).tolist(),
        "servers_on": np.round(np.sum(res.plan.servers_on, axis=-1), 1).tolist(),
    }
    return dict(
        chosen=chosen,
        type=kind,
        params=dict(params, plan=plan),
        cost=float(res.cost),
        feasible=bool(res.feasible),
        predicted={k: first[k] for k in predicted_keys},
        e_noop=float(res.noop_energy),
        savings_h=float(res.cost_start - res.cost),
        k=1,
        n_feasible=int(bool(res.feasible)),
        fc_info=dict(
            info,
            method="mpc",
            scorer="plant-mpc",
            temp_hi=float(res.temp_hi),
            acceptance=float(res.acceptance),
        ),
    )
