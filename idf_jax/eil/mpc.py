"""Stochastic model-predictive planning for EIL: an action sequence as an energy, annealed.

Over a horizon of ``H`` intervals the planner chooses an action SEQUENCE over every lever
(supply setpoint, IT power cap, servers on per rack, workload shares) for the plant model
(`idf_jax.eil.plant`, the simulator's documented physics) driven by exogenous forecasts
(offered load ``d_h`` and outside air ``T_out,h`` from history, `idf_jax.eil.forecast`).
The cost of a sequence ``a = (a_1..a_H)`` is an energy over actions [kWh]:

    C(a) = w1 E(a) + w2 X(a) + w3 I(a) + rho_u U(a) + rho_T Th(a)

- ``E``: facility energy ``sum_h (P_IT,h + P_cool,h) dt`` (scaled by the online
  calibration ratio) plus the heat left stored in the racks ``C sum_r (T_r,H - T_r,0) /
  COP_1`` (it must be removed later);
- ``X``: exergy destroyed by the cooling plant ``sum_h T_out,h S_gen,h``;
- ``I``: irreversibility, ``e_switch sum |on_h - on_{h-1}| + e_migrate sum |work moved|``;
- chance constraints as penalties (squared plus absolute hinge, so the minimiser sits on
  the boundary): uptime ``f on_h,r >= (d_h + m_h) N w_h,r`` with ``m_h`` the demand
  headroom at the uptime quantile (learned forecast error, `SeasonalForecaster`), and
  temperature: the hottest rack after interval 1 in the high-demand scenario ``d_1 + m_1``
  plus ``temp_margin``, and after every later interval at the mean forecast plus
  ``max(temp_margin, z_T sigma_T)``, at most ``temp_max``. Later intervals are not held
  to the high-demand scenario and their margin does not grow with h: the plan is
  recomputed every interval (receding horizon), so a burst is met by the next decision.

Optimisation (`plan`, ONE jitted call): the sequence is relaxed to a box (setpoint and
servers as shares of their ranges, cap as a share of the fleet's peak power, shares as
logits); ``K`` chains of annealed MALA (`idf_jax.samplers.langevin.build_mala_kernel`,
projected on the box; temperature geometric from ``t_hot`` to ``t_cold`` kWh, per-chain
step size adapted towards acceptance 0.5) start from the previous plan shifted by one
interval and from capacity heuristics; the lowest-cost state any chain visited is polished
by projected Adam (optax). The first action is then made executable: servers rounded up
to whole servers and raised to the uptime requirement, a cap that would throttle the
required service dropped, and the setpoint lowered on a 0.25 K grid until interval 1
meets the temperature constraint. Rounding is done for the whole row (``pool = 1``): the
row needs ``S = ceil((d_1 + m_1) N)`` servers, they are spread over the racks in
proportion to the plan's servers (largest remainders) and the shares are set to
``on_r / S`` (every rack at the same utilisation, so each keeps the headroom); with
``pool = 0`` every rack is rounded up on its own (``ceil((d_1 + m_1) N w_r)``), up to one
spare server per rack more. Everything that varies between decisions (state,
forecasts, headroom, weights, limits, key) is a traced array of `MPCInputs`: one
compilation per (horizon, racks, chains, steps).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import ArgumentError, as_key, is_traced, positive_int
from ..nvp import physics
from ..nvp.physics import KELVIN
from ..samplers.langevin import build_mala_kernel, langevin_init
from ..thermo.schedules import geometric
from .plant import PlantAction, PlantModel, PlantState, predict

__all__ = ["MPCInputs", "MPCPlan", "MPCResult", "MPCPlanner", "plan", "plan_impl", "sequence_cost"]

_SP_GRID = 0.25  # K: setpoint repair step

Scalar = Float[Array, ""] | np.ndarray | np.floating | float
"""A float scalar: a JAX array (traced or not), numpy, or Python."""


class MPCPlan(NamedTuple):
    """An action sequence (physical units): setpoint (H,) °C, power_cap (H,) kW (inf:
    none), servers_on (H, R), weights (H, R)."""

    setpoint: Float[Array, " H"] | np.ndarray
    power_cap: Float[Array, " H"] | np.ndarray
    servers_on: Float[Array, "H R"] | np.ndarray
    weights: Float[Array, "H R"] | np.ndarray


class MPCInputs(NamedTuple):
    """Everything one decision depends on (arrays; module doc).

    temps (R,) °C now; demand (H,) forecast offered load (share of all servers);
    headroom (H,) uptime headroom m_h (same unit); t_out (H,) °C forecast; prev: the
    operating point now (`PlantAction`); warm: a starting sequence (`MPCPlan`, e.g. the
    previous plan shifted by one interval); goal (3,) weights (w1, w2, w3); temp_max °C;
    temp_margin K (interval 1, high scenario); temp_sigma K (one-step model error of the
    hottest rack); z_temp (quantile of the later intervals' temperature check); ratio
    (measured / modelled facility power); sp_lo, sp_hi °C; switch_kwh, migrate_kwh;
    pool (1: round the servers for the whole row, shares follow; 0: per rack, module doc);
    stored_weight (weight of the stored-heat term of E, 1 by default).
    """

    temps: Float[Array, " R"] | np.ndarray
    demand: Float[Array, " H"] | np.ndarray
    headroom: Float[Array, " H"] | np.ndarray
    t_out: Float[Array, " H"] | np.ndarray
    prev: PlantAction
    warm: MPCPlan
    goal: Float[Array, " 3"] | np.ndarray
    temp_max: Scalar
    temp_margin: Scalar
    temp_sigma: Scalar
    z_temp: Scalar
    ratio: Scalar
    sp_lo: Scalar
    sp_hi: Scalar
    switch_kwh: Scalar
    migrate_kwh: Scalar
    pool: Scalar = np.float32(1.0)
    stored_weight: Scalar = np.float32(1.0)


class MPCResult(NamedTuple):
    """One decision: `action` (the executable first action), `plan` (the optimised
    sequence, relaxed), `cost` (C of the plan, kWh), `cost_start` (the best starting
    sequence's C), `energy_kwh` (E of the plan), `feasible` (the first action meets
    uptime and the interval-1 temperature check), `temp_hi` (°C, hottest rack after
    interval 1 in the high scenario), `first` (plant forecast of interval 1 for the
    applied action at the mean demand: `plant.predict` keys, power scaled by ratio),
    `noop_energy` (kJ, the present operating point over interval 1, scaled), `acceptance`
    (mean MALA acceptance)."""

    action: PlantAction
    plan: MPCPlan
    cost: Array
    cost_start: Array
    energy_kwh: Array
    feasible: Array
    temp_hi: Array
    first: dict
    noop_energy: Array
    acceptance: Array


# penalty weights [kWh per server-equivalent or K, and per their squares]
_RHO_U = 5.0
_RHO_T = 5.0
_CAP_SPAN = 1.25  # the cap's box: [0, 1.25] x fleet peak power (>= 1: never throttles)


def _decode(model: PlantModel, inp: MPCInputs, x: dict) -> MPCPlan:
    n = model.servers_per_rack
    sp = inp.sp_lo + (inp.sp_hi - inp.sp_lo) * x["sp"]
    cap = x["cap"] * (model.num_servers * model.p_peak_kw)
    return MPCPlan(sp, cap, n * x["on"], jax.nn.softmax(x["logit"], axis=-1))


def _encode(model: PlantModel, inp: MPCInputs, p: MPCPlan) -> dict:
    n = model.servers_per_rack
    span = jnp.maximum(inp.sp_hi - inp.sp_lo, 1e-6)
    fleet = model.num_servers * model.p_peak_kw
    cap = jnp.where(jnp.isfinite(p.power_cap), p.power_cap / fleet, _CAP_SPAN)
    w = jnp.clip(jnp.asarray(p.weights), 1e-4, 1.0)
    return dict(
        sp=jnp.clip((jnp.asarray(p.setpoint) - inp.sp_lo) / span, 0.0, 1.0),
        cap=jnp.clip(cap, 0.0, _CAP_SPAN),
        on=jnp.clip(jnp.asarray(p.servers_on) / n, 0.0, 1.0),
        logit=jnp.log(w) - jnp.mean(jnp.log(w), axis=-1, keepdims=True),
    )


def _project(x: Any) -> dict:
    return dict(
        sp=jnp.clip(x["sp"], 0.0, 1.0),
        cap=jnp.clip(x["cap"], 0.0, _CAP_SPAN),
        on=jnp.clip(x["on"], 0.0, 1.0),
        logit=jnp.clip(x["logit"], -8.0, 8.0),
    )


def _smooth_abs(v):
    return jnp.sqrt(v * v + 1e-4) - 1e-2


def _hinge(v):
    r = jax.nn.relu(v)
    return r * r + r


def sequence_cost(model: PlantModel, inp: MPCInputs, p: MPCPlan) -> dict[str, Array]:
    """C(a) of a sequence and its parts (kWh; module doc): ``cost``, ``energy``,
    ``exergy``, ``irreversibility``, ``uptime_pen``, ``temp_pen``, ``temp_hi`` (°C)."""
    dt = model.dt
    n_all = model.num_servers
    temps0 = jnp.asarray(inp.temps)
    h_idx = jnp.arange(jnp.shape(inp.demand)[0])

    def step(temps, xs):
        d, m, t_out, sp, cap, on, w, h = xs
        row = physics.row_interval(model, temps, d, t_out, sp, cap, on, w)
        t_out_k = t_out + KELVIN
        e = (row.power_it + row.cooling_power) * dt * inp.ratio / 3600.0
        s = dt * physics.entropy_generation_rate(
            row.heat_removed, row.cooling_power, t_out_k, jnp.mean(temps) + KELVIN
        )
        deficit = jax.nn.relu((d + m) * n_all * row.shares - row.throttle * row.servers_on)
        allowed = inp.temp_max - jnp.maximum(inp.temp_margin, inp.z_temp * inp.temp_sigma)
        excess = jnp.where(h > 0, row.new_temps - allowed, 0.0)
        out = dict(
            energy=e,
            exergy=t_out_k * s / 3600.0,
            uptime_pen=jnp.sum(_hinge(deficit)),
            temp_pen=jnp.sum(_hinge(excess)),
            q=row.heat_removed,
            p_it=row.power_it,
            p_cool=row.cooling_power,
            work=row.work,
        )
        return row.new_temps, out

    xs = (
        jnp.asarray(inp.demand),
        jnp.asarray(inp.headroom),
        jnp.asarray(inp.t_out),
        jnp.asarray(p.setpoint),
        jnp.asarray(p.power_cap),
        jnp.asarray(p.servers_on),
        jnp.asarray(p.weights),
        h_idx.astype(jnp.float32),
    )
    temps_h, o = jax.lax.scan(step, temps0, xs)
    # interval 1 in the high-demand scenario: a burst may arrive before the next decision
    hi = physics.row_interval(
        model,
        temps0,
        inp.demand[0] + inp.headroom[0],
        inp.t_out[0],
        p.setpoint[0],
        p.power_cap[0],
        p.servers_on[0],
        p.weights[0],
    )
    temp_hi = jnp.max(hi.new_temps)
    pen_t = jnp.sum(o["temp_pen"]) + jnp.sum(
        _hinge(hi.new_temps - (inp.temp_max - inp.temp_margin))
    )
    cop_now = jnp.clip(o["q"][0] / jnp.maximum(o["p_cool"][0] - model.fan_kw, 1e-6), 1.0, 20.0)
    stored = model.heat_capacity_kj_per_k * jnp.sum(temps_h - temps0) / cop_now / 3600.0
    energy = jnp.sum(o["energy"]) + inp.stored_weight * inp.ratio * stored
    on_all = jnp.concatenate([jnp.asarray(inp.prev.servers_on)[None], jnp.asarray(p.servers_on)])
    prev_w = physics.shares(jnp.asarray(inp.prev.weights))
    w_all = jnp.concatenate([prev_w[None], jnp.asarray(p.weights)])
    d_all = jnp.asarray(inp.demand) * n_all
    irr = inp.switch_kwh * jnp.sum(
        _smooth_abs(jnp.diff(on_all, axis=0))
    ) + 0.5 * inp.migrate_kwh * jnp.sum(d_all[:, None] * _smooth_abs(jnp.diff(w_all, axis=0)))
    exergy = jnp.sum(o["exergy"])
    g = jnp.asarray(inp.goal)
    up = jnp.sum(o["uptime_pen"])
    cost = g[0] * energy + g[1] * exergy + g[2] * irr + _RHO_U * up + _RHO_T * pen_t
    parts = dict(
        cost=cost,
        energy=energy,
        exergy=exergy,
        irreversibility=irr,
        uptime_pen=up,
        temp_pen=pen_t,
        temp_hi=temp_hi,
    )
    return {k: jnp.asarray(v) for k, v in parts.items()}


def _heuristic(model: PlantModel, inp: MPCInputs, sp_shift) -> MPCPlan:
    """Servers for the headroomed demand on uniform shares, the present setpoint shifted."""
    r = model.num_racks
    n = model.servers_per_rack
    h = jnp.shape(inp.demand)[0]
    need = (jnp.asarray(inp.demand) + jnp.asarray(inp.headroom)) * model.num_servers / r + 0.5
    on = jnp.clip(jnp.broadcast_to(need[:, None], (h, r)), 0.0, n)
    sp = jnp.clip(inp.prev.setpoint + sp_shift, inp.sp_lo, inp.sp_hi)
    return MPCPlan(
        jnp.full((h,), sp),
        jnp.full((h,), jnp.inf),
        on,
        jnp.full((h, r), 1.0 / r),
    )


def _pooled(model: PlantModel, target: Array) -> Array:
    """Whole servers per rack for the row: ``S = ceil(sum target)`` spread in proportion to
    `target` (R,) by largest remainders, at most `servers_per_rack` each."""
    n = model.servers_per_rack
    total = jnp.clip(jnp.ceil(jnp.sum(target) - 1e-4), 0.0, model.num_servers)
    x = target * total / jnp.maximum(jnp.sum(target), 1e-9)
    base = jnp.floor(x)
    frac = x - base
    rank = jnp.argsort(jnp.argsort(-frac))
    extra = rank < (total - jnp.sum(base))
    return jnp.clip(base + extra, 0.0, n)


def _make_executable(
    model: PlantModel, inp: MPCInputs, p: MPCPlan
) -> tuple[PlantAction, Array, Array]:
    """The first action rounded and repaired (module doc): (action, feasible, temp_hi)."""
    n = model.servers_per_rack
    n_all = model.num_servers
    fleet = n_all * model.p_peak_kw
    d_hi = inp.demand[0] + inp.headroom[0]
    w_plan = physics.shares(jnp.asarray(p.weights[0]))
    req = d_hi * n_all * w_plan
    plan_on = jnp.asarray(p.servers_on[0])
    # per rack: every rack rounded up on its own
    on_rack = jnp.clip(jnp.maximum(jnp.ceil(plan_on - 1e-3), jnp.ceil(req - 1e-4)), 0.0, n)
    # pooled: the row's servers rounded once, shares follow the servers
    on_pool = _pooled(model, jnp.clip(jnp.maximum(plan_on, req), 0.0, n))
    w_pool = physics.shares(on_pool)
    pooled = inp.pool > 0.5
    on = jnp.where(pooled, on_pool, on_rack)
    w = jnp.where(pooled, w_pool, w_plan)
    need = jnp.ceil(d_hi * n_all * w - 1e-4)
    cap = jnp.where(p.power_cap[0] >= fleet, jnp.inf, p.power_cap[0])
    thr = physics.row_interval(
        model, jnp.asarray(inp.temps), d_hi, inp.t_out[0], p.setpoint[0], cap, on, w
    )
    cap = jnp.where(thr.throttle < 1.0, jnp.inf, cap)  # a cap that throttles the service
    grid = jnp.clip(p.setpoint[0] - _SP_GRID * jnp.arange(64.0), inp.sp_lo, inp.sp_hi)

    def hot(sp):
        row = physics.row_interval(
            model, jnp.asarray(inp.temps), d_hi, inp.t_out[0], sp, cap, on, w
        )
        return jnp.max(row.new_temps)

    hots = jax.vmap(hot)(grid)
    ok = hots <= inp.temp_max - inp.temp_margin
    j = jnp.where(jnp.any(ok), jnp.argmax(ok), grid.shape[0] - 1)
    sp = grid[j]
    served = jnp.all(on >= need - 1e-6) | jnp.all(on >= n)
    action = PlantAction(sp, cap, on, w)
    return action, served & ok[j], hots[j]


def plan_impl(
    model: PlantModel,
    inp: MPCInputs,
    key: PRNGKeyArray,
    *,
    chains: int = 4,
    steps: int = 120,
    polish: int = 40,
    hold: bool = False,
) -> MPCResult:
    """One receding-horizon decision (module doc; `plan` is this function jitted). With
    ``hold=True`` the sequence is one action held over the horizon (for comparisons)."""
    h = jnp.shape(inp.demand)[0]

    def expand(x):
        if not hold:
            return x
        return {k: jnp.broadcast_to(v[:1], (h,) + v.shape[1:]) for k, v in x.items()}

    def energy(x):
        return sequence_cost(model, inp, _decode(model, inp, expand(x)))["cost"]

    def shrink(x):
        return {k: v[:1] for k, v in x.items()} if hold else x

    starts = [_encode(model, inp, inp.warm)] + [
        _encode(model, inp, _heuristic(model, inp, s)) for s in (0.0, 1.0, -1.0, 2.0)
    ]
    starts = (starts * ((chains + len(starts) - 1) // len(starts)))[:chains]
    x0 = jax.tree.map(lambda *v: jnp.stack(v), *[shrink(s) for s in starts])
    kernel = build_mala_kernel(energy, project=_project)
    schedule = geometric(3e-2, 1e-5, steps)
    states = jax.vmap(lambda x: langevin_init(energy, x))(x0)
    cost_start = jnp.min(states.energy)

    def anneal(carry, i):
        st, log_eta, best_x, best_e, k = carry
        k, sub = jax.random.split(k)
        temp = schedule(i, steps)
        st, info = jax.vmap(kernel, in_axes=(0, 0, 0, None))(
            jax.random.split(sub, chains), st, jnp.exp(log_eta), temp
        )
        log_eta = jnp.clip(log_eta + 0.3 * (info.acceptance_rate - 0.5), -16.0, -2.0)
        better = st.energy < best_e
        best_x = jax.tree.map(
            lambda b, x: jnp.where(better.reshape((-1,) + (1,) * (x.ndim - 1)), x, b),
            best_x,
            st.position,
        )
        best_e = jnp.where(better, st.energy, best_e)
        return (st, log_eta, best_x, best_e, k), info.acceptance_rate

    carry0 = (states, jnp.full((chains,), -6.0), states.position, states.energy, key)
    (_, _, best_x, best_e, _), acc = jax.lax.scan(anneal, carry0, jnp.arange(steps))
    i = jnp.argmin(best_e)
    x = jax.tree.map(lambda v: v[i], best_x)

    if polish > 0:
        opt = optax.adam(1e-2)

        def polish_step(carry, _):
            x, s, bx, be = carry
            e, g = jax.value_and_grad(energy)(x)
            better = e < be
            bx = jax.tree.map(lambda a, b: jnp.where(better, a, b), x, bx)
            be = jnp.where(better, e, be)
            upd, s = opt.update(g, s, x)
            return (_project(optax.apply_updates(x, upd)), s, bx, be), None

        init = (x, opt.init(x), x, best_e[i])
        (_, _, x, _), _ = jax.lax.scan(polish_step, init, None, length=polish)
    p = _decode(model, inp, expand(x))
    parts = sequence_cost(model, inp, p)
    action, feasible, temp_hi = _make_executable(model, inp, p)
    state = PlantState(jnp.asarray(inp.temps), inp.demand[0], inp.t_out[0])
    first = predict(model, state, action)
    for k in ("energy", "entropy", "power", "power_it", "cooling_power"):
        first[k] = first[k] * inp.ratio
    noop = predict(model, state, inp.prev)["energy"] * inp.ratio
    return MPCResult(
        action=action,
        plan=p,
        cost=parts["cost"],
        cost_start=cost_start,
        energy_kwh=parts["energy"],
        feasible=feasible,
        temp_hi=temp_hi,
        first=first,
        noop_energy=noop,
        acceptance=jnp.mean(acc),
    )


plan = jax.jit(plan_impl, static_argnames=("chains", "steps", "polish", "hold"))
"""`plan_impl` jitted (the static settings are its only static arguments)."""


class MPCPlanner(eqx.Module):
    """`plan` with its static settings checked once: `horizon` intervals, `chains` MALA
    chains of `steps` annealing steps, `polish` Adam steps. `decide(model, inputs, key)`
    checks the inputs' shapes (ArgumentError naming the argument) and runs one jitted
    decision.

    How EIL's MPC mode (`idf_jax.eil.mpc_mode`) builds the inputs: `max_error` (the uptime
    headroom also covers the largest backtested under-prediction of the demand, not only
    ``max(z sigma_h, floor)``), `pool` (round servers for the whole row, `MPCInputs.pool`),
    `stored` (count the stored-heat term), `temp_margin` (a fixed interval-1 temperature
    margin [K], e.g. calibrated on training weeks, `mpc_mode.calibrated_temp_margin`; None:
    learned online from the plan's own errors) and `temp_z` (the quantile ``z_T`` of the
    later intervals' check ``temp_max - max(temp_margin, z_T sigma_T)``; None:
    ``min(z_uptime, 3)``; 0 holds them at the mean forecast with the margin alone, as the
    lever-oracle does). These become traced inputs: changing them does not recompile."""

    horizon: int = eqx.field(static=True)
    chains: int = eqx.field(static=True)
    steps: int = eqx.field(static=True)
    polish: int = eqx.field(static=True)
    max_error: bool = eqx.field(static=True)
    pool: bool = eqx.field(static=True)
    stored: bool = eqx.field(static=True)
    temp_margin: float | None = eqx.field(static=True)
    temp_z: float | None = eqx.field(static=True)

    def __init__(
        self,
        horizon: int = 12,
        *,
        chains: int = 4,
        steps: int = 60,
        polish: int = 20,
        max_error: bool = True,
        pool: bool = True,
        stored: bool = True,
        temp_margin: float | None = None,
        temp_z: float | None = None,
    ):
        self.horizon = positive_int("horizon", horizon)
        self.chains = positive_int("chains", chains)
        self.steps = positive_int("steps", steps)
        if isinstance(polish, bool) or not isinstance(polish, int | np.integer) or polish < 0:
            raise ArgumentError("polish", f"polish must be an integer >= 0, got {polish!r}")
        self.polish = int(polish)
        for name, v in (("max_error", max_error), ("pool", pool), ("stored", stored)):
            if not isinstance(v, bool | np.bool_):
                raise ArgumentError(name, f"{name} must be True or False, got {v!r}")
        self.max_error, self.pool, self.stored = bool(max_error), bool(pool), bool(stored)
        for name, v in (("temp_margin", temp_margin), ("temp_z", temp_z)):
            ok = v is None or (
                isinstance(v, int | float | np.floating | np.integer)
                and not isinstance(v, bool)
                and np.isfinite(v)
                and v >= 0
            )
            if not ok:
                raise ArgumentError(name, f"{name} must be None or a finite number >= 0, got {v!r}")
        self.temp_margin = None if temp_margin is None else float(temp_margin)
        self.temp_z = None if temp_z is None else float(temp_z)

    def check(self, model: PlantModel, inputs: MPCInputs) -> None:
        """ArgumentError unless every array of `inputs` has the shape this planner and
        `model` need (and concrete values are finite where they must be)."""
        if not isinstance(model, PlantModel):
            raise ArgumentError("model", f"model must be a PlantModel, got {type(model).__name__}")
        if not isinstance(inputs, MPCInputs):
            raise ArgumentError("inputs", f"inputs must be MPCInputs, got {type(inputs).__name__}")
        h, r = self.horizon, model.num_racks
        want = {
            "temps": (r,),
            "demand": (h,),
            "headroom": (h,),
            "t_out": (h,),
            "goal": (3,),
        }
        for name, shape in want.items():
            got = tuple(np.shape(getattr(inputs, name)))
            if got != shape:
                raise ArgumentError(name, f"{name} must have shape {shape}, got {got}")
        for name, shape in (("servers_on", (r,)), ("weights", (r,))):
            got = tuple(np.shape(getattr(inputs.prev, name)))
            if got != shape:
                raise ArgumentError(
                    f"prev.{name}", f"prev.{name} must have shape {shape}, got {got}"
                )
        for name, shape in (
            ("setpoint", (h,)),
            ("power_cap", (h,)),
            ("servers_on", (h, r)),
            ("weights", (h, r)),
        ):
            got = tuple(np.shape(getattr(inputs.warm, name)))
            if got != shape:
                raise ArgumentError(
                    f"warm.{name}", f"warm.{name} must have shape {shape}, got {got}"
                )
        for name in ("temps", "demand", "headroom", "t_out", "goal"):
            v = getattr(inputs, name)
            if not is_traced(v) and not np.all(np.isfinite(np.asarray(v, np.float64))):
                raise ArgumentError(name, f"{name} must be finite, got {np.asarray(v)}")
        if not is_traced(inputs.headroom) and np.any(np.asarray(inputs.headroom) < 0):
            raise ArgumentError("headroom", "headroom must be >= 0 (a share of all servers)")
        lo, hi = inputs.sp_lo, inputs.sp_hi
        if not is_traced((lo, hi)) and not float(lo) < float(hi):
            raise ArgumentError(
                "sp_lo", f"sp_lo must be below sp_hi, got {float(lo)} >= {float(hi)}"
            )

    def decide(
        self, model: PlantModel, inputs: MPCInputs, key: PRNGKeyArray, *, hold: bool = False
    ) -> MPCResult:
        """One decision (`plan`): checked inputs, one jitted call."""
        self.check(model, inputs)
        return plan(
            model,
            inputs,
            as_key(key),
            chains=self.chains,
            steps=self.steps,
            polish=self.polish,
            hold=bool(hold),
        )
