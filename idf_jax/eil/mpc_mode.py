"""EIL's model-predictive planning mode: per-source history, inputs and the report of a plan.

`EILOptimizer(planner="mpc")` (or ``planner=MPCPlanner(...)``) decides every source with
`idf_jax.eil.mpc`: each reading feeds two `SeasonalForecaster`s (offered load, outside air)
of the source's `MPCSource`; `MPCSource.inputs` builds the traced `MPCInputs` of a decision
(forecasts, uptime headroom ``max(z sigma_h, q_h, floor)`` from the backtested
forecast errors and the source's configured demand-noise floor ``floor = z demand_sigma``,
`uptime_headroom`; ``q_h`` only with ``MPCPlanner(max_error=True)``), the previous plan shifted by
one interval as the warm start, temperature margins learned from the plan's own one-step
errors), and `report` turns an `MPCResult` into the decision dict `EILOptimizer.act`
returns and signs (type: the lever the first action changes most, in the candidate
vocabulary of `idf_jax.eil.candidates`).

Calibration. `replay_uptime` replays a demand series through the same forecaster and the
same backtest cadence as a live source and returns, per decision, the interval-1 forecast,
the learned part of the headroom and the demand that followed: the smallest floor that
would have kept every interval served (`calibrated_floor`) is then chosen on training weeks,
the way a rule's spare servers are tuned. `replay_outside_error` does the same for the
outside-air forecaster (the one exogenous input of the interval-1 temperature check besides
the demand, which the calibrated headroom covers): `calibrated_temp_margin` turns its
largest under-prediction on training weeks into the interval-1 temperature margin
(`MPCPlanner(temp_margin=...)`).
"""

from __future__ import annotations

import collections
from typing import Any

import jax
import numpy as np

from .._checks import ArgumentError
from .calibration import z_of
from .forecast import SeasonalForecaster, check_period
from .mpc import MPCInputs, MPCPlan, MPCPlanner, MPCResult
from .plant import PlantAction, PlantModel, PlantState
from .store import EnergyReading, SourceConfig

__all__ = [
    "DemandPath",
    "MPCSource",
    "calibrated_floor",
    "calibrated_temp_margin",
    "replay_outside_error",
    "replay_uptime",
    "report",
    "uptime_headroom",
]

_ERR_EVERY = 16  # decisions between backtests of the forecast errors
_TEMP_MEMORY = 672


def uptime_headroom(
    sigma: np.ndarray, q: np.ndarray, z: float, floor: float, max_error: bool
) -> np.ndarray:
    """Uptime headroom per horizon step (share of all servers): ``max(z sigma_h, floor)``,
    and the largest backtested under-prediction ``q_h`` too when `max_error`."""
    head = np.maximum(z * np.asarray(sigma, np.float64), float(floor))
    if max_error:
        head = np.maximum(head, np.asarray(q, np.float64))
    return head


class DemandPath:
    """The offered-load forecaster of a source and its backtested errors, refreshed every
    `_ERR_EVERY` decisions (`SeasonalForecaster`)."""

    def __init__(self, period: int):
        self.series = SeasonalForecaster(period)
        self._err: tuple[np.ndarray, np.ndarray] | None = None
        self._since = 0

    def __len__(self) -> int:
        return len(self.series)

    def append(self, value: float) -> None:
        self.series.append(value)

    def next(self, horizon: int, fallback: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(forecast (H,) clipped to [0, 1], sigma_h, q_h) for the next decision."""
        if len(self.series):
            dem = np.clip(self.series.forecast(horizon), 0.0, 1.0)
        else:
            dem = np.full((horizon,), float(fallback))
        if self._err is None or self._since >= _ERR_EVERY:
            sig, q, _ = self.series.error_quantiles(horizon)
            self._err, self._since = (sig, q), 0
        self._since += 1
        return dem, self._err[0], self._err[1]


def replay_uptime(
    demands: np.ndarray, burn: int, horizon: int, z: float, *, max_error: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(forecast_1, learned headroom_1, actual) (T - burn,) per decision of a live source
    whose sensed offered loads are `demands` (T,): decision t has seen ``demands[:burn + t]``
    and serves ``demands[burn + t]`` (module doc). The learned headroom has no floor."""
    d = np.asarray(demands, np.float64)
    path = DemandPath(96)
    for v in d[:burn]:
        path.append(float(v))
    n = d.shape[0] - burn
    fc, learned = np.zeros(n), np.zeros(n)
    for t in range(n):
        dem, sig, q = path.next(horizon, d[burn + t - 1])
        fc[t] = dem[0]
        learned[t] = uptime_headroom(sig, q, z, 0.0, max_error)[0]
        path.append(float(d[burn + t]))
    return fc, learned, d[burn:].copy()


def calibrated_floor(
    replays: list[tuple[np.ndarray, np.ndarray, np.ndarray]], grid: float
) -> float:
    """The smallest floor (a multiple of `grid`, share of all servers) under which every
    decision of every replay (`replay_uptime`) would have had servers for the demand that
    followed: ``forecast_1 + max(learned_1, floor) >= actual``."""
    need = 0.0
    for fc, learned, actual in replays:
        short = actual - fc
        uncovered = short > learned
        if np.any(uncovered):
            need = max(need, float(np.max(short[uncovered])))
    return float(np.ceil(need / grid - 1e-9) * grid)


def replay_outside_error(t_out: np.ndarray, burn: int, period: int = 96) -> np.ndarray:
    """(T - burn,) one-step errors ``actual - forecast`` [K] of the outside-air forecaster of
    a live source (`SeasonalForecaster`, as `MPCSource` keeps it) whose sensed outside
    temperatures are `t_out` (T,): decision t has seen ``t_out[:burn + t]``."""
    x = np.asarray(t_out, np.float64)
    if x.ndim != 1 or not 0 < burn < x.shape[0]:
        raise ArgumentError("burn", f"need a (T,) series and 0 < burn < T, got {x.shape}, {burn}")
    fc = SeasonalForecaster(period)
    for v in x[:burn]:
        fc.append(float(v))
    err = np.zeros(x.shape[0] - burn)
    for t in range(err.shape[0]):
        err[t] = x[burn + t] - float(fc.forecast(1)[0])
        fc.append(float(x[burn + t]))
    return err


def calibrated_temp_margin(
    errors: list[np.ndarray], gain_k_per_k: float, *, floor: float = 0.1, factor: float = 1.1
) -> float:
    """Interval-1 temperature margin [K] from training weeks' outside-air forecast errors
    (`replay_outside_error`): ``max(floor, factor * gain * max(0, largest error))``, with
    ``gain = g_env dt / C`` (K of rack temperature per K of outside air over one interval:
    a warmer outside leaks less heat out, `physics.rack_temperatures`); `factor` as the
    online margin's 1.1."""
    if not np.isfinite(gain_k_per_k) or gain_k_per_k < 0:
        raise ArgumentError("gain_k_per_k", f"gain_k_per_k must be >= 0, got {gain_k_per_k}")
    worst = max((float(np.max(e)) for e in errors if np.size(e)), default=0.0)
    return float(max(floor, factor * gain_k_per_k * max(0.0, worst)))


class MPCSource:
    """What the MPC mode keeps for one source (module doc)."""

    def __init__(
        self, cfg: SourceConfig, history: list[EnergyReading], demands: list[float | None]
    ):
        period = check_period(cfg.interval_s)
        self.cfg = cfg
        self.demand = DemandPath(period)
        self.t_out = SeasonalForecaster(period)
        self.last_ts: float | None = None
        for rec, d in zip(history, demands, strict=True):
            self.observe(rec, d)
        self.plan: MPCPlan | None = None
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
        dem, sig, q = self.demand.next(h, float(state.demand))
        t_out = self.t_out.forecast(h) if len(self.t_out) else np.full((h,), float(state.t_out))
        z = z_of(float(limits.uptime))
        floor = z * float(self.cfg.demand_sigma)
        head = uptime_headroom(sig, q, z, floor, planner.max_error)
        margin, t_sd = self.temp_margins()
        if planner.temp_margin is not None:
            margin = planner.temp_margin
        z_t = min(z, 3.0) if planner.temp_z is None else planner.temp_z
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
            z_temp=f32(z_t),
            ratio=f32(ratio),
            sp_lo=f32(setpoint_range[0]),
            sp_hi=f32(setpoint_range[1]),
            switch_kwh=f32(switch_kwh),
            migrate_kwh=f32(migrate_kwh),
            pool=f32(planner.pool),
            stored_weight=f32(planner.stored),
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
