"""Datacenter telemetry simulator: a documented lumped physical model, usable as an environment.

Physics (one row of `R` racks, telemetry step `dt` seconds, everything explicit-Euler at `dt`;
the formulas live in `idf_jax.nvp.physics`, shared with EIL's plant model and planner):

* **Workload.** Demand `d_t` (fraction of total server capacity) is a daily profile
  ``base + amp * (1 - cos(2 pi (h - 3) / 24)) / 2`` (peak at 15:00) minus a weekend dip, plus an
  AR(1) term ``a_t = phi a_{t-1} + sigma eps`` and decaying bursts ``b_t = 0.7 b_{t-1} + jump``.
  Rack `r` receives the share `w_r` (workload migration action) of the work; its utilisation is
  ``u_r = min(1, d N w_r / n_r)`` with `n_r` servers on (servers on/off action).
* **Server power** (Fan, Weber & Barroso 2007): ``P(u) = P_idle + (P_peak - P_idle)(2u - u^1.4)``
  per server that is on, 0 for servers off. A power cap throttles the dynamic part (DVFS):
  ``P = P_idle_tot + f * P_dyn``, ``f = clip((cap - P_idle_tot) / P_dyn, 0, 1)``; the served
  utilisation is ``f * u`` and the rest of the demand is reported as `unserved`.
* **Thermal RC model.** Each rack air/equipment node has heat capacity `C` (kJ/K):
  ``C (T_r' - T_r) = dt [P_r' - Q_r' + G (L T)_r - g_env (T_r - T_out')]`` with `L` the path-graph
  Laplacian along the row (conductance `G`, kW/K), envelope conductance `g_env` (kW/K) to the
  outside air, and CRAH heat removal ``Q_r' = UA (T_r - T_sup)_+`` (kW) scaled down together
  when the total exceeds the cooling capacity. Powers are interval averages (what meters report),
  temperatures are end-of-interval values, so the row total obeys the *exact* discrete balance
  ``sum_r C (T_r' - T_r) = dt [P_IT' - Q' - g_env sum_r (T_r - T_out')]`` (the conduction cancels).
* **Cooling power** from a coefficient-of-performance curve: a chiller at a fraction `eta` of the
  Carnot COP between chilled water ``T_sup - 6`` and the condenser ``T_out + 5`` (K), clipped to
  ``[1.5, cop_max]``; when ``T_out < T_sup - 4`` the economiser (free cooling) gives ``cop_free``.
  ``P_cool = Q / COP + P_fan``.
* **Outside air** ``T_out`` is the real hourly TMY3 dry-bulb temperature shipped with pvlib
  (`weather.load_tmy3`), linearly interpolated to `dt`.

`simulate` rolls the model forward with `lax.scan`; `step` is the pure environment transition
``step(params, state, action, key) -> (state, observation)`` for a decision loop (EIL)::

    params = simulator.make_params()                       # 4 racks x 40 servers, dt = 900 s
    state = simulator.init_state(params)
    act = simulator.default_action(params)._replace(setpoint=jnp.asarray(20.0),
                                                   power_cap=jnp.asarray(30.0))
    state, obs = simulator.step(params, state, act, jax.random.key(0))
    obs["power"], obs["cooling_power"], obs["pue"], obs["unserved"], obs["temps"]
    x, channels = simulator.row_telemetry(simulator.simulate(params, key, 96))  # (96, 9)

`rack_params` / `rack_telemetry` / `rack_balance_spec` give the blueprint's three-channel
one-server view ({'cpu', 'power' W, 'temp' F}); the packaged default checkpoint adds the
supply setpoint as a control input (`rack_controls`, °F; `setpoint_schedule` and
`simulate_schedule` drive the simulator with piecewise-constant setpoints;
`rack_control_balance_spec` is the balance that reads the setpoint channel).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from . import physics
from .weather import DEFAULT_TMY3, load_tmy3

ROW_CHANNELS_TEMPLATE = ("cpu", "power", "cooling", "cooling_power", "t_out")


class DatacenterParams(eqx.Module):
    """Physical and workload parameters (SI-ish units: kW, kJ/K, deg C, seconds)."""

    t_out_hourly: Float[Array, " hours"]
    num_racks: int = eqx.field(static=True, default=4)
    servers_per_rack: int = eqx.field(static=True, default=40)
    dt: float = eqx.field(static=True, default=900.0)
    p_idle_kw: float = physics.P_IDLE_KW
    p_peak_kw: float = physics.P_PEAK_KW
    heat_capacity_kj_per_k: float = 1800.0
    ua_kw_per_k: float = 1.0
    row_conductance_kw_per_k: float = 0.3
    envelope_kw_per_k: float = 0.05
    cooling_capacity_kw: float = 60.0
    cop_carnot_fraction: float = physics.COP_CARNOT_FRACTION
    cop_max: float = physics.COP_MAX
    cop_free: float = physics.COP_FREE
    fan_kw: float = 2.0
    demand_base: float = 0.30
    demand_daily_amp: float = 0.35
    weekend_dip: float = 0.08
    ar_coef: float = 0.9
    ar_sigma: float = 0.025
    burst_prob: float = 0.02
    burst_size: float = 0.15
    start_hour: float = 0.0
    base_weights: Float[Array, " racks"] | None = None


class DatacenterState(NamedTuple):
    """Simulator state: step index, rack temperatures (R,) deg C, AR and burst workload terms."""

    step: jax.Array
    temps: jax.Array
    ar: jax.Array
    burst: jax.Array


class Action(NamedTuple):
    """Controls applied over the next interval.

    setpoint: CRAH supply-air temperature (deg C); power_cap: IT power cap (kW, inf = none);
    servers_on: servers on per rack (R,) (0..servers_per_rack); weights: workload share per rack
    (R,) (migration; normalised to sum 1).
    """

    setpoint: jax.Array
    power_cap: jax.Array
    servers_on: jax.Array
    weights: jax.Array


def make_params(
    *,
    station: str = DEFAULT_TMY3,
    num_racks: int = 4,
    servers_per_rack: int = 40,
    dt: float = 900.0,
    **overrides,
) -> DatacenterParams:
    """Parameters driven by the real TMY3 outside-air temperature of `station`."""
    if num_racks < 1 or servers_per_rack < 1:
        raise ValueError("num_racks and servers_per_rack must be >= 1")
    if not dt > 0:
        raise ValueError(f"dt must be > 0 seconds, got {dt}")
    weather = load_tmy3(station)
    weights = overrides.pop("base_weights", None)
    if weights is None:
        weights = np.linspace(1.3, 0.7, num_racks)
    weights = np.asarray(weights, np.float64)
    if weights.shape != (num_racks,) or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError(f"base_weights must be {num_racks} non-negative numbers, got {weights}")
    params = DatacenterParams(
        t_out_hourly=jnp.asarray(weather.temp_air, jnp.float32),
        num_racks=num_racks,
        servers_per_rack=servers_per_rack,
        dt=float(dt),
        base_weights=jnp.asarray(weights / weights.sum(), jnp.float32),
        **overrides,
    )
    stable = (
        dt
        * (params.ua_kw_per_k + 2 * params.row_conductance_kw_per_k + params.envelope_kw_per_k)
        / params.heat_capacity_kj_per_k
    )
    if stable >= 1.0:
        raise ValueError(f"dt={dt} s too large for the thermal time constant (dt*k/C={stable:.2f})")
    return params


def default_action(params: DatacenterParams, setpoint: float = physics.SUPPLY_SETPOINT_C) -> Action:
    """No intervention: all servers on, base workload shares, no power cap."""
    r = params.num_racks
    weights = params.base_weights
    if weights is None:  # a DatacenterParams built without make_params: uniform shares
        weights = jnp.full((r,), 1.0 / r, jnp.float32)
    return Action(
        setpoint=jnp.asarray(setpoint, jnp.float32),
        power_cap=jnp.asarray(jnp.inf, jnp.float32),
        servers_on=jnp.full((r,), float(params.servers_per_rack), jnp.float32),
        weights=weights,
    )


def init_state(params: DatacenterParams, temp: float = 22.0) -> DatacenterState:
    return DatacenterState(
        step=jnp.asarray(0, jnp.int32),
        temps=jnp.full((params.num_racks,), temp, jnp.float32),
        ar=jnp.asarray(0.0, jnp.float32),
        burst=jnp.asarray(0.0, jnp.float32),
    )


def outside_temp(params: DatacenterParams, step: jax.Array) -> jax.Array:
    """TMY3 dry-bulb temperature (deg C) averaged over interval `step` (linear interpolation)."""
    hour = params.start_hour + (step.astype(jnp.float32) + 0.5) * params.dt / 3600.0
    n = params.t_out_hourly.shape[0]
    h0 = jnp.floor(hour)
    frac = hour - h0
    i0 = h0.astype(jnp.int32) % n
    return (1 - frac) * params.t_out_hourly[i0] + frac * params.t_out_hourly[(i0 + 1) % n]


def server_power(params: DatacenterParams, u: jax.Array) -> jax.Array:
    """kW of one server at utilisation u in [0, 1] (`physics.server_power`, Fan et al. 2007)."""
    return physics.server_power(u, params.p_idle_kw, params.p_peak_kw)


def cop(params: DatacenterParams, t_out: jax.Array, setpoint: jax.Array) -> jax.Array:
    """Coefficient of performance of the cooling plant (`physics.cop`)."""
    return physics.cop(t_out, setpoint, params.cop_carnot_fraction, params.cop_max, params.cop_free)


def demand_profile(params: DatacenterParams, step: jax.Array) -> jax.Array:
    hour = params.start_hour + step.astype(jnp.float32) * params.dt / 3600.0
    hod = jnp.mod(hour, 24.0)
    day = jnp.floor(hour / 24.0)
    daily = 0.5 * (1 - jnp.cos(2 * jnp.pi * (hod - 3.0) / 24.0))
    weekend = (jnp.mod(day, 7.0) >= 5.0).astype(jnp.float32)
    return params.demand_base + params.demand_daily_amp * daily - params.weekend_dip * weekend


def step(
    params: DatacenterParams, state: DatacenterState, action: Action, key: PRNGKeyArray
) -> tuple[DatacenterState, dict[str, jax.Array]]:
    """Advance one interval of `dt` seconds; returns (state, observation dict).

    Observation keys: cpu, power (kW IT), cooling (kW heat removed), cooling_power (kW
    electric), t_out (deg C), temps (R,), rack_cpu (R,), rack_power (R,), unserved (fraction of
    demand not served), pue, setpoint, demand.
    """
    k_ar, k_b, k_s = jax.random.split(key, 3)
    ar = params.ar_coef * state.ar + params.ar_sigma * jax.random.normal(k_ar)
    jump = (
        jax.random.bernoulli(k_b, params.burst_prob)
        * params.burst_size
        * (0.5 + jax.random.uniform(k_s))
    )
    burst = 0.7 * state.burst + jump
    demand = jnp.clip(demand_profile(params, state.step) + ar + burst, 0.02, 1.0)

    t_out = outside_temp(params, state.step)
    row = physics.row_interval(
        params,
        state.temps,
        demand,
        t_out,
        action.setpoint,
        action.power_cap,
        action.servers_on,
        action.weights,
    )
    p_it, p_cool = row.power_it, row.cooling_power
    obs = dict(
        cpu=row.served / jnp.maximum(jnp.sum(row.servers_on), 1e-9),
        power=p_it,
        cooling=row.heat_removed,
        cooling_power=p_cool,
        t_out=t_out,
        temps=row.new_temps,
        rack_cpu=row.rack_cpu,
        rack_power=row.rack_power,
        unserved=row.unserved,
        pue=(p_it + p_cool) / jnp.maximum(p_it, 1e-9),
        setpoint=action.setpoint,
        demand=demand,
    )
    return DatacenterState(state.step + 1, row.new_temps, ar, burst), obs


def simulate(
    params: DatacenterParams,
    key: PRNGKeyArray,
    num_steps: int,
    *,
    action: Action | None = None,
    state: DatacenterState | None = None,
    burn_in: int = 96,
) -> dict[str, np.ndarray]:
    """Roll `num_steps` intervals under a fixed `action`; returns numpy arrays per observation.

    `burn_in` steps are run first (not returned) so the thermal state starts near equilibrium.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    action = default_action(params) if action is None else action
    state = init_state(params) if state is None else state
    obs = _rollout(params, state, action, key, int(num_steps) + int(burn_in))
    return {k: np.asarray(v)[burn_in:] for k, v in obs.items()}


def setpoint_schedule(
    num_steps: int,
    seed: int,
    *,
    low: float = 16.0,
    high: float = 27.0,
    mean_hold_steps: float = 72.0,
) -> np.ndarray:
    """(num_steps,) piecewise-constant supply setpoints [°C]: levels uniform in [low, high],
    each held for a geometric number of steps with mean `mean_hold_steps` (an operator or a
    controller moving the setpoint now and then; the default is 6 h at 5-minute steps)."""
    if num_steps < 1 or not low < high or not mean_hold_steps >= 1:
        raise ValueError(
            f"need num_steps >= 1, low < high and mean_hold_steps >= 1, got {num_steps}, "
            f"[{low}, {high}], {mean_hold_steps}"
        )
    rng = np.random.default_rng(seed)
    out = np.empty(int(num_steps))
    t = 0
    while t < num_steps:
        n = int(rng.geometric(1.0 / float(mean_hold_steps)))
        out[t : t + n] = rng.uniform(low, high)
        t += n
    return out


def simulate_schedule(
    params: DatacenterParams,
    key: PRNGKeyArray,
    setpoints: np.ndarray,
    *,
    burn_in: int = 96,
) -> dict[str, np.ndarray]:
    """`simulate` under a per-step supply setpoint [°C] (`setpoints`, (T,)); the other levers
    stay at `default_action`. The burn-in runs at the first setpoint. obs["setpoint"][t] is
    the setpoint applied over the interval that ended at step t."""
    sp = np.asarray(setpoints, np.float32).reshape(-1)
    if sp.size < 1 or not np.isfinite(sp).all():
        raise ValueError("setpoints must be a non-empty (T,) array of finite °C values")
    sp = np.concatenate([np.full(int(burn_in), sp[0], np.float32), sp])
    act = default_action(params)
    acts = Action(
        setpoint=jnp.asarray(sp),
        power_cap=jnp.broadcast_to(act.power_cap, sp.shape),
        servers_on=jnp.broadcast_to(act.servers_on, sp.shape + act.servers_on.shape),
        weights=jnp.broadcast_to(act.weights, sp.shape + act.weights.shape),
    )
    obs = _rollout_actions(params, init_state(params), acts, jax.random.split(key, sp.size))
    return {k: np.asarray(v)[burn_in:] for k, v in obs.items()}


@jax.jit
def _rollout_actions(params, state, actions, keys):
    def body(s, xs):
        a, k = xs
        return step(params, s, a, k)

    _, obs = jax.lax.scan(body, state, (actions, keys))
    return obs


@functools.partial(jax.jit, static_argnums=4)
def _rollout(params, state, action, key, n):
    def body(s, k):
        return step(params, s, action, k)

    _, obs = jax.lax.scan(body, state, jax.random.split(key, n))
    return obs


def row_telemetry(obs: dict[str, np.ndarray]) -> tuple[np.ndarray, tuple[str, ...]]:
    """(T, C) telemetry matrix and channel names of the row preset: cpu, power, cooling,
    cooling_power, t_out, temp_0..temp_{R-1}."""
    temps = obs["temps"]
    names = ROW_CHANNELS_TEMPLATE + tuple(f"temp_{r}" for r in range(temps.shape[1]))
    cols = [obs[c] for c in ROW_CHANNELS_TEMPLATE] + [temps[:, r] for r in range(temps.shape[1])]
    return np.stack(cols, axis=1).astype(np.float64), names


def row_balance_spec(params: DatacenterParams) -> dict:
    """Energy balance of the row preset, in the channel units of `row_telemetry`.

    ``sum_r C (temp_r' - temp_r) = dt [power' - cooling' - g_env sum_r (temp_r - t_out')]``
    (kJ = s * kW). Valid while no rack is below the supply setpoint (the CRAH term is then
    the observed `cooling` channel itself, so it holds exactly whatever the setpoint).
    """
    r = params.num_racks
    c = float(params.heat_capacity_kj_per_k)
    return dict(
        dt=float(params.dt),
        storage={f"temp_{i}": c for i in range(r)},
        inflow={"power": 1.0},
        outflow={"cooling": 1.0},
        leaks=[
            dict(hot=f"temp_{i}", cold="t_out", g=float(params.envelope_kw_per_k)) for i in range(r)
        ],
        util_channels=["cpu"],
        layout=[f"temp_{i}" for i in range(r)],
        # CRAH coil: heat flows from the rack air to chilled water at ~ setpoint - 6 = 12 C.
        heat_flows=[
            dict(
                flow="cooling",
                hot=[f"temp_{i}" for i in range(r)],
                cold_value=physics.CHILLED_WATER_C,
                offset_k=physics.KELVIN,
            )
        ],
        unit_energy="kJ",
    )


# ---------------------------------------------------------------------------------------------
# The blueprint's three-channel preset: one server enclosure, telemetry {cpu, power (W), temp (F)}.


def rack_params(*, dt: float = 300.0, station: str = DEFAULT_TMY3, **overrides) -> DatacenterParams:
    """One server (P_idle 400 W, P_peak 1000 W) whose enclosure air node is cooled by supply air
    at the setpoint with UA = 0.2 kW/K (equilibrium ~ setpoint + P/UA), no envelope leak."""
    base = dict(
        p_idle_kw=0.40,
        p_peak_kw=1.00,
        heat_capacity_kj_per_k=180.0,
        ua_kw_per_k=0.2,
        row_conductance_kw_per_k=0.0,
        envelope_kw_per_k=0.0,
        cooling_capacity_kw=1e6,
        fan_kw=0.0,
        demand_base=0.35,
        demand_daily_amp=0.45,
        ar_sigma=0.03,
    )
    base.update(overrides)
    return make_params(station=station, num_racks=1, servers_per_rack=1, dt=dt, **base)


# units of `rack_telemetry` (for `idf_jax.nvp.metadata.SeriesMeta`)
RACK_UNITS = {"cpu": "fraction", "power": "W", "temp": "degF"}
# the rack preset's control input and its unit (`rack_controls`)
RACK_CONTROLS = ("setpoint",)
RACK_CONTROL_UNITS = {"setpoint": "degF"}


def rack_telemetry(obs: dict[str, np.ndarray]) -> tuple[np.ndarray, tuple[str, ...]]:
    """(T, 3) telemetry of the rack preset: cpu (0..1), power (W), temp (deg F)."""
    temp_f = obs["temps"][:, 0] * 9.0 / 5.0 + 32.0
    x = np.stack([obs["cpu"], obs["power"] * 1000.0, temp_f], axis=1).astype(np.float64)
    return x, ("cpu", "power", "temp")


def c_to_f(t_c):
    """°C -> °F."""
    return np.asarray(t_c, np.float64) * 9.0 / 5.0 + 32.0


def rack_controls(obs: dict[str, np.ndarray]) -> np.ndarray:
    """(T, 1) control input of the rack preset: the supply setpoint (°F) applied over the
    interval that ended at each step (`RACK_CONTROLS`)."""
    sp = np.broadcast_to(np.asarray(obs["setpoint"], np.float64), obs["cpu"].shape)
    return c_to_f(sp)[:, None]


def rack_control_balance_spec(params: DatacenterParams) -> dict:
    """`rack_balance_spec` for the channels cpu, power, temp, setpoint (°F) in the lead layout
    of `idf_jax.nvp.control_inputs` (row t holds the setpoint applied over [t, t+1)): the
    supply side of the heat removal is the setpoint channel of the last observed row,
    ``C_F (temp' - temp) = dt [power' - UA_F max(temp - setpoint, 0)]`` (the CRAH idles when
    the setpoint is raised above the air temperature): exact whatever the setpoint."""
    spec = rack_balance_spec(params)
    leak = dict(spec["leaks"][0])
    leak.pop("cold_value")
    leak.update(cold="setpoint", cold_at="last", positive=True)
    spec["leaks"] = [leak]
    return spec


def rack_balance_spec(params: DatacenterParams, setpoint_c: float = 18.0) -> dict:
    """Balance of the rack preset in its units (J, W, deg F):
    ``C_F (temp' - temp) = dt [power' - UA_F (temp - setpoint_F)]`` with C_F = C*1000*5/9 J/F,
    UA_F = UA*1000*5/9 W/F (exact while temp >= setpoint)."""
    to_f = 1000.0 * 5.0 / 9.0
    return dict(
        dt=float(params.dt),
        storage={"temp": float(params.heat_capacity_kj_per_k) * to_f},
        inflow={"power": 1.0},
        outflow={},
        leaks=[
            dict(
                hot="temp",
                cold=None,
                cold_value=setpoint_c * 9.0 / 5.0 + 32.0,
                g=float(params.ua_kw_per_k) * to_f,
            )
        ],
        util_channels=["cpu"],
        layout=[],
        heat_flows=[],
        unit_energy="J",
    )
