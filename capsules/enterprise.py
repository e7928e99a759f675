"""Enterprise capsule: energy-optimal datacenter configuration.

Physical model (all powers in kW, temperatures in degrees C, rates in requests/s):

- Server s, when on, draws  P_s = P_idle_s + (P_max_s - P_idle_s) * u_s  (the linear
  utilisation model of Fan, Weber & Barroso, "Power provisioning for a warehouse-sized
  computer", ISCA 2007); an off server draws nothing. A server is on exactly when it hosts
  at least one workload replica (an idle powered server only costs energy).
- Each server is an M/M/1 queue with service rate mu_s. Workload w brings a Poisson stream
  of lambda_w requests/s and runs as n_w >= 1 replicas on distinct servers; every replica
  processes the full stream (hot standby / state-machine replication), so server s sees
  lambda_s = sum_w lambda_w x_ws, utilisation u_s = lambda_s / mu_s, and mean response time
  R_s = 1 / (mu_s - lambda_s)  (M/M/1). `latency_max` requires R_s <= L_max, i.e. the linear
  capacity  lambda_s <= mu_s - 1 / L_max.
- Uptime: servers fail independently with availability a; a workload is up while one of its
  replicas is, so  uptime = prod_w (1 - (1 - a)^{n_w}).  `uptime` requires uptime >= U.
- Cooling: a CRAC unit supplies air at setpoint T_sup; its coefficient of performance is
  the HP Labs curve  COP(T) = 0.0068 T^2 + 0.0008 T + 0.458  (Moore, Chase, Ranganathan &
  Sharma, "Making scheduling 'cool'", USENIX ATC 2005), so P_cool = P_IT / COP(T_sup) and the
  facility draws  P_fac = P_IT (1 + 1 / COP(T_sup)).
- Inlet temperatures follow the abstract heat-flow (recirculation) model of Tang, Gupta &
  Varsamopoulos (IEEE TPDS 2008):  T_in = T_sup + D P  with D (degC/kW) the
  heat-recirculation matrix. Every inlet must stay <= T_in_max (ASHRAE A1: 27 degC).
- The setpoint moves on the CRAC's grid [T_min, T_max] in steps of `setpoint_step_c`. COP
  rises with T, so for a given placement the best setpoint is the warmest grid value that
  keeps every inlet below its limit; the discrete energy uses exactly that setpoint.

Discrete choices. The placement x in {0,1}^{W x S} is discrete. The capsule's `energy_fn`
is a continuous relaxation (x_ws = sigmoid(logit_ws), server on-probability
1 - prod_w (1 - x_ws), a continuous setpoint), usable by any Langevin sampler; at 0/1 values
and a grid setpoint it equals the discrete energy. The optimiser
(`EnterpriseDiffusionCapsule.optimize_infrastructure`) samples the discrete space itself:
Metropolis moves (flip one replica on/off a server, or move one replica to another server)
under a geometric annealing schedule, many chains in parallel (`placement_sampler` is the
same move as a `Sampler` that `idf.sample` can drive at fixed temperature), and keeps the best
*feasible* state seen. `milp_reference` solves the same model exactly with
`scipy.optimize.milp` (one MILP per grid setpoint), and with `relax=True` gives the LP
relaxation lower bound used for large instances.

Energy = facility power + penalty_kw * sum_c (v_c + v_c^2) with v_c >= 0 the normalised
violation of each constraint: uptime (U - uptime) / (1 - U), latency (lambda_s - cap_s) / mu_s,
inlet temperature (T_in_s - T_in_max) / 1 degC.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from idf_jax.samplers import FunctionSampler, Sampler

from ._base import Capsule, register

__all__ = [
    "DatacenterModel",
    "EnterpriseDiffusionCapsule",
    "cop",
    "datacenter",
    "milp_reference",
    "parse_config",
    "placement_sampler",
]

_KNOWN_CONSTRAINTS = ("uptime", "latency_max")
_DEFAULT_CONSTRAINTS = {"uptime": 0.999, "latency_max": 100.0}


def cop(setpoint_c):
    """CRAC coefficient of performance at supply temperature T (degC), Moore et al. 2005:
    COP(T) = 0.0068 T^2 + 0.0008 T + 0.458 (dimensionless: heat removed / work)."""
    t = setpoint_c
    return 0.0068 * t * t + 0.0008 * t + 0.458


class DatacenterModel(eqx.Module):
    """A parsed, validated datacenter (see the module docstring); a PyTree whose arrays are
    leaves (float32) and whose names are static, so jitted code is reused across models of
    the same shape."""

    server_names: tuple = eqx.field(static=True)
    workload_names: tuple = eqx.field(static=True)
    idle_kw: Array  # (S,) kW
    max_kw: Array  # (S,) kW
    service_rate: Array  # (S,) requests/s
    request_rate: Array  # (W,) requests/s
    availability: Array  # scalar
    recirculation: Array  # (S, S) degC / kW
    inlet_max_c: Array  # scalar
    setpoint_grid: Array  # (K,) degC, ascending
    uptime: Array  # scalar
    latency_max_ms: Array  # scalar
    penalty_kw: Array  # scalar

    @property
    def capacity(self) -> np.ndarray:
        """Largest request rate per server meeting the latency limit: mu - 1 / L_max."""
        return self.service_rate - 1000.0 / self.latency_max_ms

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.workload_names), len(self.server_names)


# --------------------------------------------------------------------------- config


def _num(d, key, where, positive=True, default=None):
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


def _names(items, kind):
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


def _expand(items, key, kind, positive=True):
    out = []
    for i, it in enumerate(items):
        v = _num(it, key, f"{kind}[{i}]", positive)
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
    known = {
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
    unknown = set(config) - known
    if unknown:
        raise ValueError(f"config: unknown fields {sorted(unknown)}; known fields: {sorted(known)}")
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
    a = _num(config, "server_availability", "config", default=0.99)
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
    t_in = _num(config, "inlet_max_c", "config", positive=False, default=27.0)
    t_lo = _num(config, "setpoint_min_c", "config", positive=False, default=15.0)
    t_hi = _num(config, "setpoint_max_c", "config", positive=False, default=27.0)
    step = _num(config, "setpoint_step_c", "config", default=0.5)
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
    U = _num(cons, "uptime", "constraints")
    if U >= 1.0:
        raise ValueError(f"constraints: uptime must be in (0, 1), got {U}")
    L = _num(cons, "latency_max", "constraints")
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
    pen = _num(config, "penalty_kw", "config", default=10.0 * float(pmax.sum()))
    f = lambda v: jnp.asarray(v, jnp.float32)
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


# --------------------------------------------------------------------------- physics


def _physics(m: DatacenterModel, x, setpoint):
    """Power, queueing and thermal quantities of (possibly fractional) placement x (W, S)."""
    lam, mu = m.request_rate, m.service_rate
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


def _violations(m: DatacenterModel, ph):
    cap, mu = m.capacity, m.service_rate
    v_up = jnp.maximum(m.uptime - ph["uptime"], 0.0) / (1.0 - m.uptime)
    v_lat = jnp.maximum(ph["load"] - cap, 0.0) / mu
    v_temp = jnp.maximum(ph["inlet"] - m.inlet_max_c, 0.0)
    return v_up, v_lat, v_temp


def _penalty(m, ph):
    v_up, v_lat, v_temp = _violations(m, ph)
    total = (v_up + v_up**2) + jnp.sum(v_lat + v_lat**2) + jnp.sum(v_temp + v_temp**2)
    return m.penalty_kw * total


def best_setpoint(m: DatacenterModel, x):
    """Warmest grid setpoint keeping every inlet <= inlet_max for placement x (W, S) in {0,1}.

    The inlet rise D P does not depend on the setpoint, so T* = max{T_k <= T_in_max - max(D P)};
    when even the coolest grid value is too warm, the coolest is returned (and violates).
    """
    ph = _physics(m, x, 0.0)
    headroom = m.inlet_max_c - jnp.max(ph["inlet"])  # inlet at setpoint 0 is the rise D P
    grid = m.setpoint_grid
    step = grid[1] - grid[0] if grid.shape[0] > 1 else 1.0
    k = jnp.floor((headroom - grid[0]) / step + 1e-4).astype(jnp.int32)
    k = jnp.clip(k, 0, grid.shape[0] - 1)
    return grid[k]


def discrete_energy(m: DatacenterModel, x: Int[Array, "W S"]) -> Float[Array, ""]:
    """E(x) = P_fac(x, T*(x)) + penalties, kW, for a 0/1 placement at its best grid setpoint."""
    xf = jnp.asarray(x, jnp.float32)
    t = best_setpoint(m, xf)
    ph = _physics(m, xf, t)
    return ph["p_it"] + ph["p_cool"] + _penalty(m, ph)


def _is_feasible(m, x):
    xf = jnp.asarray(x, jnp.float32)
    ph = _physics(m, xf, best_setpoint(m, xf))
    v_up, v_lat, v_temp = _violations(m, ph)
    return (v_up <= 0) & jnp.all(v_lat <= 0) & jnp.all(v_temp <= 0)


# --------------------------------------------------------------------------- capsule


def _relaxed(m: DatacenterModel, state):
    x = jax.nn.sigmoid(state["logits"])
    t_lo, t_hi = m.setpoint_grid[0], m.setpoint_grid[-1]
    t = t_lo + (t_hi - t_lo) * jax.nn.sigmoid(state["setpoint"])
    return x, t


def decode_placement(m: DatacenterModel, x, setpoint=None) -> dict:
    """A 0/1 placement (W, S) -> configuration dict with power, latency, uptime, slacks."""
    x = np.asarray(x) > 0.5
    xf = jnp.asarray(x, jnp.float32)
    t = float(best_setpoint(m, xf)) if setpoint is None else float(setpoint)
    ph = jax.tree.map(np.asarray, _physics(m, xf, t))
    v_up, v_lat, v_temp = (np.asarray(v) for v in _violations(m, ph))
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


@register(
    "enterprise.datacenter",
    "Datacenter facility power (servers + CRAC cooling) over workload placement and setpoint, "
    "with uptime, latency and inlet-temperature penalties",
)
def datacenter(config: Mapping[str, Any]) -> Capsule:
    """Datacenter capsule: energy = facility power (kW) + constraint penalties.

    The state is {'logits': (W, S), 'setpoint': ()}: x_ws = sigmoid(logit) is the relaxed
    placement of a replica of workload w on server s and the setpoint is
    T_min + (T_max - T_min) sigmoid(s). At x in {0,1} and a grid setpoint the energy equals
    the discrete model (see the module docstring). `decode` rounds x at 0.5, picks the
    warmest feasible grid setpoint and returns the configuration dict.
    """
    m = parse_config(config)
    W, S = m.shape

    def energy_fn(state):
        x, t = _relaxed(m, state)
        ph = _physics(m, x, t)
        return ph["p_it"] + ph["p_cool"] + _penalty(m, ph)

    def init(key, num_chains):
        k1, k2 = jax.random.split(key)
        return {
            "logits": jax.random.normal(k1, (num_chains, W, S)),
            "setpoint": jax.random.normal(k2, (num_chains,)),
        }

    def decode(state):
        x, _ = _relaxed(m, state)
        return decode_placement(m, np.asarray(x) > 0.5)

    return Capsule(
        name="enterprise.datacenter",
        energy_fn=energy_fn,
        init=init,
        decode=decode,
        params={"config": dict(config), "model": m},
        description="datacenter facility power with uptime / latency / inlet penalties",
    )


# --------------------------------------------------------------------------- discrete sampler


class PlacementState(NamedTuple):
    position: Int[Array, "W S"]
    energy: Float[Array, ""]


class PlacementInfo(NamedTuple):
    acceptance_rate: Float[Array, ""]
    is_accepted: Array


def _propose(m: DatacenterModel, u, x):
    """Flip one (w, s) bit, or move one replica of a workload to a server it is not on.

    `u` holds 3 + 2 S uniforms in (0, 1) (one random draw per step keeps compiles small).
    """
    W, S = m.shape
    w = jnp.minimum((u[1] * W).astype(jnp.int32), W - 1)
    s = jnp.minimum((u[2] * S).astype(jnp.int32), S - 1)
    flipped = x.at[w, s].set(1 - x[w, s])
    row = x[w]
    g1 = -jnp.log(-jnp.log(u[3 : 3 + S]))
    g2 = -jnp.log(-jnp.log(u[3 + S : 3 + 2 * S]))
    s_from = jnp.argmax(jnp.where(row == 1, g1, -jnp.inf))
    s_to = jnp.argmax(jnp.where(row == 0, g2, -jnp.inf))
    can_move = jnp.any(row == 1) & jnp.any(row == 0)
    moved = x.at[w, s_from].set(0).at[w, s_to].set(1)
    moved = jnp.where(can_move, moved, x)
    return jnp.where(u[0] < 0.5, flipped, moved)


def _metropolis(m, key, x, e, temperature):
    S = m.shape[1]
    u = jax.random.uniform(key, (4 + 2 * S,), minval=1e-12, maxval=1.0)
    x_new = _propose(m, u, x)
    e_new = discrete_energy(m, x_new)
    log_a = jnp.minimum(0.0, -(e_new - e) / temperature)
    log_a = jnp.where(jnp.isnan(log_a), -jnp.inf, log_a)
    accept = jnp.log(u[-1]) < log_a
    return jnp.where(accept, x_new, x), jnp.where(accept, e_new, e), jnp.exp(log_a), accept


def placement_sampler(model: DatacenterModel, temperature: float) -> Sampler:
    """Metropolis sampler over 0/1 placements targeting exp(-E(x) / T), T in kW.

    Proposals (symmetric): with probability 1/2 flip one uniformly chosen bit x_ws, else move
    one replica of a uniformly chosen workload to a uniformly chosen server it is not on.
    The state is integer, so `idf.sample` can drive it.
    """
    if not (temperature > 0):
        raise ValueError(f"temperature must be > 0 (kW), got {temperature!r}")

    def init(position, key=None):
        x = jnp.asarray(position, jnp.int32)
        return PlacementState(x, discrete_energy(model, x))

    def step(key, state):
        x, e, acc, ok = _metropolis(model, key, state.position, state.energy, temperature)
        return PlacementState(x, e), PlacementInfo(acc, ok)

    return FunctionSampler(init, step)


@eqx.filter_jit
def anneal_placement(
    m: DatacenterModel,
    key: PRNGKeyArray,
    x0: Int[Array, "chains W S"],
    temperatures: Float[Array, " steps"],
):
    """Simulated annealing of every chain through the temperature ladder (kW).

    Returns (best feasible x (chains, W, S), its energy (chains,); inf when never feasible,
    final x, final energy).
    """

    def one_chain(key, x):
        e = discrete_energy(m, x)
        feas = _is_feasible(m, x)
        best_e = jnp.where(feas, e, jnp.inf)

        def body(carry, inp):
            x, e, bx, be = carry
            k, temp = inp
            x, e, _, _ = _metropolis(m, k, x, e, temp)
            better = _is_feasible(m, x) & (e < be)
            return (x, e, jnp.where(better, x, bx), jnp.where(better, e, be)), None

        keys = jax.random.split(key, temperatures.shape[0])
        (x, e, bx, be), _ = jax.lax.scan(body, (x, e, x, best_e), (keys, temperatures))
        return bx, be, x, e

    keys = jax.random.split(key, x0.shape[0])
    return jax.vmap(one_chain)(keys, jnp.asarray(x0, jnp.int32))


# --------------------------------------------------------------------------- exact reference


def milp_reference(config_or_model, relax: bool = False, time_limit: float | None = None) -> dict:
    """Exact optimum of the same model with `scipy.optimize.milp` (HiGHS).

    For every grid setpoint T_k: minimise P_IT subject to the linear constraints
    (x_ws <= y_s; sum_w lambda_w x_ws <= mu_s - 1/L; T_k + D P <= T_in_max;
    sum_s x_ws = sum_j j z_wj, sum_j z_wj = 1, sum_wj z_wj log(1 - (1-a)^j) >= log U, which
    is the uptime constraint exactly), then take the smallest P_IT (1 + 1/COP(T_k)).
    With relax=True the integrality is dropped: the result is a lower bound on the optimum.

    Returns {'facility_power_kw', 'setpoint_c', 'placement' (W, S) 0/1 or fractional,
    'status'}; facility_power_kw is inf when no setpoint is feasible.
    """
    from scipy.optimize import Bounds, LinearConstraint, milp

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
    ix = lambda w, s: w * S + s
    iy = lambda s: nx + s
    iz = lambda w, j: nx + ny + w * S + (j - 1)  # j = 1..S replicas
    dyn = (pmax - idle) / mu  # kW per request/s
    c = np.zeros(n)
    for s in range(S):
        c[iy(s)] = idle[s]
        for w in range(W):
            c[ix(w, s)] = dyn[s] * lam[w]
    rows, lo, hi = [], [], []

    def add(coefs, l, h):
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
    bounds = Bounds(np.zeros(n), ub)
    best = {
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
            constraints=LinearConstraint(A, l, h),
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


# --------------------------------------------------------------------------- blueprint facade


def _current_placement(m: DatacenterModel, config) -> np.ndarray:
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
    ) -> dict:
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
            t_cur = _num(current_config, "setpoint_c", "current_config", positive=False)
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


def _constraint_report(m: DatacenterModel, x, dec) -> dict:
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
