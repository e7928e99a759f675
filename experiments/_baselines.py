"""Baselines a skeptic would pick for the EIL closed loop, as pure JAX policies.

- ``rule-tuned``: uniform load shares; servers on per rack = ceil(demand_per_rack) + k spares
  (demand of the last interval, no foresight); supply setpoint s, lowered by 3 °C while the
  hottest rack is within 1.5 °C of its limit. (k, s) are chosen on *training* weeks that never
  overlap the test window: the lowest mean energy among the settings with zero violations on
  every training week (grid k = 0..16, s = 16..27 °C, all settings in one vmapped scan).
- ``mpc-oracle``: the simulator itself as the model, with perfect foresight of the demand noise
  over the horizon (the same random keys the plant will draw): at every interval each
  candidate (spares k in {0, 1, 2}, setpoint on a 1 °C grid, uniform shares, servers for the
  *true* next demand) is rolled out for H steps and the cheapest one without a violation is
  applied. An upper bound on what any forecaster-based controller can reach with these levers.

Both run the whole week inside one compiled `lax.scan`; violations are counted as in
`eil_closed_loop.py` (unserved > 1 - uptime, or any rack above the temperature limit).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from idf_jax.nvp import physics
from idf_jax.nvp import simulator as sim

K_GRID = np.arange(0, 17)
SP_GRID = np.arange(16.0, 28.0, 1.0)


def _servers(params, demand, k):
    """ceil(demand * servers per rack) + k per rack (uniform shares), within [1, n]."""
    n = float(params.servers_per_rack)
    per_rack = jnp.ceil(demand * n - 1e-6) + k
    return jnp.clip(jnp.full((params.num_racks,), per_rack), 1.0, n)


def rule_policy(params, demand_prev, hot_prev, k, sp, temp_max):
    r = params.num_racks
    setpoint = jnp.where(hot_prev > temp_max - 1.5, sp - 3.0, sp)
    return sim.Action(
        setpoint=jnp.asarray(setpoint, jnp.float32),
        power_cap=jnp.asarray(jnp.inf, jnp.float32),
        servers_on=_servers(params, demand_prev, k).astype(jnp.float32),
        weights=jnp.full((r,), 1.0 / r, jnp.float32),
    )


def _violation(obs, temp_max, uptime):
    hot = jnp.max(obs["temps"])
    return hot > temp_max, obs["unserved"] > 1.0 - uptime


@functools.partial(jax.jit, static_argnames=("burn", "steps"))
def run_rule(params, key, k, sp, temp_max, uptime, *, burn: int, steps: int):
    """One week (after `burn` steps at the default point) under the rule (k, sp): totals."""
    keys = jax.random.split(key, burn + steps)
    state = sim.init_state(params)
    act0 = sim.default_action(params)

    def warm(carry, kk):
        s, _ = carry
        s, obs = sim.step(params, s, act0, kk)
        return (s, obs), None

    _, obs0 = sim.step(params, state, act0, keys[0])
    (state, obs), _ = jax.lax.scan(warm, (state, obs0), keys[1:burn])

    def body(carry, kk):
        s, obs = carry
        a = rule_policy(params, obs["demand"], jnp.max(obs["temps"]), k, sp, temp_max)
        s, obs = sim.step(params, s, a, kk)
        bt, bu = _violation(obs, temp_max, uptime)
        e = (obs["power"] + obs["cooling_power"]) * params.dt / 3600.0
        return (s, obs), (e, bt, bu, jnp.max(obs["temps"]))

    _, (e, bt, bu, hot) = jax.lax.scan(body, (state, obs), keys[burn:])
    return window_totals(e, bt, bu, hot)


def window_totals(e, bt, bu, hot, **extra):
    """Totals of one closed-loop window from its per-interval energies (kWh), temperature
    and uptime violation flags and hottest-rack temperatures (°C); `extra` added as is."""
    return dict(
        energy_kwh=e.sum(),
        viol_temp=bt.sum(),
        viol_uptime=bu.sum(),
        violations=(bt | bu).sum(),
        max_temp=hot.max(),
        **extra,
    )


def tune_rule(station, test_start_day, test_days, seed, temp_max, uptime, *, burn=192):
    """(k, setpoint) minimising mean training-week energy with zero violations; training
    weeks: eight start days spread over the year, dropping any within 14 days of the test
    window, each with its own demand seed (never the test seed)."""
    steps = 7 * 96
    candidates = np.arange(3, 365, 45)
    lo, hi = test_start_day - 14, test_start_day + test_days + 14
    train_days = [int(d) for d in candidates if d + 7 < lo or d > hi][:6]
    kk, ss = np.meshgrid(K_GRID, SP_GRID, indexing="ij")
    kk, ss = jnp.asarray(kk.ravel(), jnp.float32), jnp.asarray(ss.ravel(), jnp.float32)
    energy = np.zeros(kk.shape[0])
    nviol = np.zeros(kk.shape[0])
    for i, day in enumerate(train_days):
        params = sim.make_params(station=station, start_hour=24.0 * day)
        key = jax.random.key(10_000 + 97 * seed + i)
        out = jax.vmap(
            lambda k, s, params=params, key=key: run_rule(
                params, key, k, s, temp_max, uptime, burn=burn, steps=steps
            )
        )(kk, ss)
        energy += np.asarray(out["energy_kwh"])
        nviol += np.asarray(out["violations"])
    # fewest violations first (zero where any setting reaches it), then least energy
    j = int(np.lexsort((energy, nviol))[0])
    return float(kk[j]), float(ss[j]), train_days


@functools.partial(jax.jit, static_argnames=("burn", "steps", "horizon"))
def run_mpc_oracle(params, key, temp_max, uptime, *, burn: int, steps: int, horizon: int = 8):
    """One week under the foresight MPC (module doc): totals."""
    keys = jax.random.split(key, burn + steps)  # the plant's keys, as in run_rule
    keys = jnp.concatenate([keys, jax.random.split(jax.random.fold_in(key, 1), horizon)])
    state = sim.init_state(params)
    act0 = sim.default_action(params)
    r = params.num_racks
    ks = jnp.asarray([0.0, 1.0, 2.0])
    sps = jnp.asarray(SP_GRID, jnp.float32)
    kg, sg = jnp.meshgrid(ks, sps, indexing="ij")
    kg, sg = kg.ravel(), sg.ravel()

    def warm(s, kk):
        s, _ = sim.step(params, s, act0, kk)
        return s, None

    state, _ = jax.lax.scan(warm, state, keys[:burn])

    def true_demand(s, kk):
        # the plant's own next demand: one step at the default point with the same key
        _, obs = sim.step(params, s, act0, kk)
        return obs["demand"]

    def rollout(s, t, k, sp):
        def one(carry, j):
            s_, e_, badc = carry
            kk = keys[t + j]
            d = true_demand(s_, kk)
            a = sim.Action(
                setpoint=sp,
                power_cap=jnp.asarray(jnp.inf, jnp.float32),
                servers_on=_servers(params, d, k).astype(jnp.float32),
                weights=jnp.full((r,), 1.0 / r, jnp.float32),
            )
            s_, obs = sim.step(params, s_, a, kk)
            bt, bu = _violation(obs, temp_max, uptime)
            e_ = e_ + (obs["power"] + obs["cooling_power"]) * params.dt / 3600.0
            return (s_, e_, badc + bt + bu), None

        (_, e, nbad), _ = jax.lax.scan(
            one, (s, jnp.float32(0.0), jnp.int32(0)), jnp.arange(horizon)
        )
        return e + 1e6 * nbad

    def body(s, t):
        costs = jax.vmap(lambda k, sp: rollout(s, t, k, sp))(kg, sg)
        j = jnp.argmin(costs)
        kk = keys[t]
        d = true_demand(s, kk)
        a = sim.Action(
            setpoint=sg[j],
            power_cap=jnp.asarray(jnp.inf, jnp.float32),
            servers_on=_servers(params, d, kg[j]).astype(jnp.float32),
            weights=jnp.full((r,), 1.0 / r, jnp.float32),
        )
        s, obs = sim.step(params, s, a, kk)
        bt, bu = _violation(obs, temp_max, uptime)
        e = (obs["power"] + obs["cooling_power"]) * params.dt / 3600.0
        return s, (e, bt, bu, jnp.max(obs["temps"]))

    _, (e, bt, bu, hot) = jax.lax.scan(body, state, jnp.arange(burn, burn + steps))
    return dict(
        energy_kwh=e.sum(),
        viol_temp=bt.sum(),
        viol_uptime=bu.sum(),
        violations=(bt | bu).sum(),
        max_temp=hot.max(),
    )


# ---------------------------------------------------------------------------------------------
# lever-oracle: the state oracle's information, every lever optimised with the simulator.

LEVER_ORACLE_DOC = """lever-oracle: a bound that separates levers from foresight. Information:
the simulator's hidden workload state after the last interval (AR term, burst level, the
daily profile, the weather), so its forecast of interval t + j is the conditional mean
E[d_{t+j} | state_{t-1}] (`expected_demand`), never the next random draw; the uptime headroom
h and a temperature margin m are tuned on the rule's training weeks (`tune_lever_oracle`).
Levers, all optimised every interval with the simulator's own physics (`physics.row_interval`)
as the model over an H-interval horizon: the supply setpoint of this interval (0.25 K grid,
16-28 °C) and of the rest of the horizon (1 K grid), the power cap (none, or 0.95 of the IT
power at the high-demand scenario), the servers (ceil((E[d] + h) N) for the row plus 0 or 2
spare servers) and how they and the load are spread over the racks (uniform, towards the
cooler racks, towards the row ends or towards its centre; shares follow the servers, so
every rack keeps the same headroom). A candidate is feasible when, at the mean forecast and
at the high scenario (E[d_t] + h in this interval, the mean after), no interval of the
horizon leaves more than 1 - uptime unserved or a rack above temp_max - m; the feasible
candidate of least energy at the mean forecast is applied (this interval only), the next
interval re-plans. With `forecast` the true demand path (h = m = 0) the same search is the
foresight bound `lever-foresight`."""

LEVER_SP0 = np.arange(16.0, 28.0 + 1e-9, 0.25)
LEVER_SP_REST = np.arange(16.0, 28.0 + 1e-9, 1.0)
LEVER_PATTERNS = ("uniform", "cool", "ends", "centre")
LEVER_EXTRA = (0.0, 2.0)
LEVER_CAPS = (np.inf, 0.95)


def workload_path(params, keys):
    """(ar, burst, demand), each (T,), of the intervals driven by `keys` (T,), drawn exactly
    as `simulator.step` draws them from the default initial state (the workload is
    exogenous: no action changes it)."""

    def body(c, xs):
        ar, b = c
        kk, t = xs
        k_ar, k_b, k_s = jax.random.split(kk, 3)
        ar = params.ar_coef * ar + params.ar_sigma * jax.random.normal(k_ar)
        jump = (
            jax.random.bernoulli(k_b, params.burst_prob)
            * params.burst_size
            * (0.5 + jax.random.uniform(k_s))
        )
        b = 0.7 * b + jump
        d = jnp.clip(sim.demand_profile(params, t) + ar + b, 0.02, 1.0)
        return (ar, b), (ar, b, d)

    s0 = sim.init_state(params)
    steps = jnp.arange(keys.shape[0], dtype=jnp.int32)
    _, (ar, b, d) = jax.lax.scan(body, (s0.ar, s0.burst), (keys, steps))
    return ar, b, d


def expected_demand(params, ar_prev, burst_prev, step, horizon: int):
    """(H,) E[d_{t+j} | state_{t-1}], j = 0..H-1, for t = `step`, with the AR term
    `ar_prev` and burst level `burst_prev` after interval t-1:
    ``profile(t+j) + phi^{j+1} a + 0.7^{j+1} b + p s (1 - 0.7^{j+1}) / 0.3`` (the jump's mean
    size is s), clipped to [0.02, 1] as the simulator clips the demand."""
    j = jnp.arange(horizon, dtype=jnp.float32)
    mean_jump = params.burst_prob * params.burst_size
    m = (
        sim.demand_profile(params, step + jnp.arange(horizon, dtype=jnp.int32))
        + params.ar_coef ** (j + 1) * ar_prev
        + 0.7 ** (j + 1) * burst_prev
        + mean_jump * (1 - 0.7 ** (j + 1)) / 0.3
    )
    return jnp.clip(m, 0.02, 1.0)


def state_forecasts(params, keys, horizon: int):
    """(T, H) the lever-oracle's forecasts (`expected_demand`) made before each interval
    driven by `keys`, from the hidden state after the interval before, and the true demand
    (T,)."""
    ar, b, d = workload_path(params, keys)
    ar_prev = jnp.concatenate([jnp.zeros((1,), ar.dtype), ar[:-1]])
    b_prev = jnp.concatenate([jnp.zeros((1,), b.dtype), b[:-1]])
    steps = jnp.arange(keys.shape[0], dtype=jnp.int32)
    f = jax.vmap(lambda a, bb, t: expected_demand(params, a, bb, t, horizon))(
        ar_prev, b_prev, steps
    )
    return f, d


def foresight_forecasts(demand, horizon: int):
    """(T, H) the true demand of intervals t..t+H-1 (the last value repeated past the end)."""
    t = demand.shape[0]
    idx = jnp.minimum(jnp.arange(t)[:, None] + jnp.arange(horizon)[None, :], t - 1)
    return demand[idx]


def spread_servers(total, w, n):
    """(R,) servers per rack: `total` servers spread in proportion to the weights `w` (R,)
    by largest remainders, each rack at most `n` (what a full rack cannot take is lost:
    the plan's uptime check then sees the shortfall)."""
    r = w.shape[0]
    q = total * w / jnp.sum(w)
    base = jnp.floor(q)
    rest = total - jnp.sum(base)
    order = jnp.argsort(-(q - base))  # largest remainder first
    rank = jnp.zeros((r,), jnp.int32).at[order].set(jnp.arange(r, dtype=jnp.int32))
    return jnp.clip(base + (rank < rest), 0.0, float(n))


def _pattern_weights(temps, r):
    """(P, R) rack weights of `LEVER_PATTERNS` for the rack temperatures `temps` (R,)."""
    pos = jnp.abs(jnp.arange(r) - (r - 1) / 2.0) / max((r - 1) / 2.0, 1.0)  # 0 centre, 1 ends
    uniform = jnp.ones((r,))
    cool = jnp.exp(-(temps - jnp.mean(temps)))  # 1/K: toward the cooler racks
    ends = 0.8 + 0.4 * pos
    centre = 1.2 - 0.4 * pos
    return jnp.stack([uniform, cool, ends, centre])


def _lever_candidates():
    """Stage-1 candidate arrays (sp0, sp_rest, pattern), the full factorial of the setpoint
    grids and the spreading patterns (no spares, no cap); stage 2 tries the spares and the
    cap on the stage-1 winner (`lever_action`)."""
    g = np.meshgrid(LEVER_SP0, LEVER_SP_REST, np.arange(len(LEVER_PATTERNS)), indexing="ij")
    return tuple(jnp.asarray(x.ravel(), jnp.float32) for x in g)


def lever_action(params, temps, fc, t_out, h, margin, temp_max, uptime, cands):
    """The lever-oracle's action for one interval (`LEVER_ORACLE_DOC`): rack temperatures
    `temps` (R,) °C, demand forecasts `fc` (H,), outside air `t_out` (H,) °C, headroom `h`
    (share of all servers), temperature margin `margin` K. Returns (Action, feasible)."""
    r, n = params.num_racks, params.servers_per_rack
    big_n = float(r * n)
    pats = _pattern_weights(temps, r)
    horizon = fc.shape[0]

    def servers(f, pat, extra):
        total = jnp.clip(jnp.ceil((f + h) * big_n - 1e-6) + extra, 1.0, big_n)
        on = spread_servers(total, pats[pat], n)
        return on, on / jnp.maximum(jnp.sum(on), 1e-9)

    def it_power(d, on, w):
        _, u = physics.utilisation(d, big_n, on, w)
        return jnp.sum(on * physics.server_power(u, params.p_idle_kw, params.p_peak_kw))

    def one(sp0, sp_rest, pat, extra, capf):
        pat = pat.astype(jnp.int32)

        def step_j(carry, j):
            t_mean, t_high, e, bad = carry
            f = fc[j]
            on, w = servers(f, pat, extra)
            sp = jnp.where(j == 0, sp0, sp_rest)
            d_high = jnp.where(j == 0, jnp.minimum(f + h, 1.0), f)
            cap = jnp.where(jnp.isfinite(capf), capf * it_power(d_high, on, w), jnp.inf)
            lo = physics.row_interval(params, t_mean, f, t_out[j], sp, cap, on, w)
            hi = physics.row_interval(params, t_high, d_high, t_out[j], sp, cap, on, w)
            e = e + (lo.power_it + lo.cooling_power) * params.dt / 3600.0
            over = jnp.maximum(jnp.max(hi.new_temps), jnp.max(lo.new_temps)) - (temp_max - margin)
            short = jnp.maximum(hi.unserved, lo.unserved) - (1.0 - uptime)
            bad = bad + jnp.maximum(over, 0.0) + 100.0 * jnp.maximum(short, 0.0)
            return (lo.new_temps, hi.new_temps, e, bad), None

        (_, _, e, bad), _ = jax.lax.scan(
            step_j, (temps, temps, jnp.float32(0.0), jnp.float32(0.0)), jnp.arange(horizon)
        )
        return e, bad

    def best(sp0, sp_rest, pat, extra, capf):
        e, bad = jax.vmap(one)(sp0, sp_rest, pat, extra, capf)
        # the cheapest feasible plan; where none is, the least infeasible one
        cost = jnp.where(bad <= 0.0, e, 1e9 + 1e4 * bad)
        return jnp.argmin(cost), cost

    # stage 1: setpoints x spreading patterns; stage 2: spares x cap on the winner
    sp0, sp_rest, pat = cands
    zeros = jnp.zeros_like(sp0)
    k1, _ = best(sp0, sp_rest, pat, zeros, jnp.full_like(sp0, jnp.inf))
    ex, cf = (jnp.asarray(x.ravel(), jnp.float32) for x in np.meshgrid(LEVER_EXTRA, LEVER_CAPS))
    m = ex.shape[0]
    sp0, sp_rest, pat = (jnp.full((m,), x[k1]) for x in (sp0, sp_rest, pat))
    extra, capf = ex, cf
    k, cost = best(sp0, sp_rest, pat, extra, capf)
    feasible = cost < 1e9
    p = pat[k].astype(jnp.int32)
    on, w = servers(fc[0], p, extra[k])
    d_high = jnp.minimum(fc[0] + h, 1.0)
    cap = jnp.where(jnp.isfinite(capf[k]), capf[k] * it_power(d_high, on, w), jnp.inf)
    act = sim.Action(
        setpoint=sp0[k].astype(jnp.float32),
        power_cap=jnp.asarray(cap, jnp.float32),
        servers_on=on.astype(jnp.float32),
        weights=w.astype(jnp.float32),
    )
    return act, feasible[k]


@functools.partial(jax.jit, static_argnames=("burn", "steps", "horizon"))
def run_lever_oracle(
    params, key, forecasts, h, margin, temp_max, uptime, *, burn: int, steps: int, horizon: int
):
    """One window (after `burn` steps at the default point) under the lever-oracle with the
    demand `forecasts` (burn + steps, horizon) (`state_forecasts` or `foresight_forecasts`
    of the same keys): totals, the mean setpoint, servers on and the levers' use."""
    keys = jax.random.split(key, burn + steps)  # the plant's keys, as in run_rule
    state = sim.init_state(params)
    act0 = sim.default_action(params)
    cands = _lever_candidates()

    def warm(s, kk):
        s, _ = sim.step(params, s, act0, kk)
        return s, None

    state, _ = jax.lax.scan(warm, state, keys[:burn])

    def body(s, t):
        t_out = sim.outside_temp(params, s.step + jnp.arange(horizon, dtype=jnp.int32))
        a, ok = lever_action(
            params, s.temps, forecasts[t], t_out, h, margin, temp_max, uptime, cands
        )
        s, obs = sim.step(params, s, a, keys[t])
        bt, bu = _violation(obs, temp_max, uptime)
        e = (obs["power"] + obs["cooling_power"]) * params.dt / 3600.0
        uneven = jnp.max(a.weights) - jnp.min(a.weights) > 1e-3
        return s, (e, bt, bu, jnp.max(obs["temps"]), a.setpoint, jnp.sum(a.servers_on),
                   jnp.isfinite(a.power_cap), uneven, ok)  # fmt: skip

    _, (e, bt, bu, hot, sp, on, capped, uneven, ok) = jax.lax.scan(
        body, state, jnp.arange(burn, burn + steps)
    )
    return window_totals(
        e,
        bt,
        bu,
        hot,
        mean_setpoint=sp.mean(),
        mean_servers_on=on.mean(),
        capped=capped.sum(),
        uneven_shares=uneven.sum(),
        infeasible=(~ok).sum(),
    )


def uptime_headroom(forecasts0, demand, n_total, uptime, grid):
    """The smallest headroom h on `grid` (ascending) under which ceil((f_t + h) N) servers
    (at most N) serve every interval's demand d_t within 1 - uptime: `forecasts0` and
    `demand` are lists of (T,) arrays (the training weeks' one-step forecasts and demand).
    Exact for every lever-oracle plan (the shares follow the servers: one utilisation)."""
    for h in grid:
        ok = True
        for f, d in zip(forecasts0, demand, strict=True):
            total = np.clip(np.ceil((f + h) * n_total - 1e-6), 1.0, n_total)
            unserved = np.clip(1.0 - total / np.maximum(d * n_total, 1e-9), 0.0, 1.0)
            ok &= bool(np.all(unserved <= 1.0 - uptime))
        if ok:
            return float(h)
    return float(grid[-1])


LEVER_MARGINS = (0.0, 0.25, 0.5, 1.0, 1.5)


def tune_lever_oracle(station, test_start_day, test_days, seed, temp_max, uptime, *,
                      burn=192, horizon=8, grid_step=0.0025):  # fmt: skip
    """(h, margin, train days) of the lever-oracle: h the smallest uptime headroom that
    serves every training interval (`uptime_headroom`), then the margin of `LEVER_MARGINS`
    with the least training energy among those with zero violations (fewest violations
    where none has zero) on the rule's training weeks (`tune_rule`'s days and seeds)."""
    steps = 7 * 96
    candidates = np.arange(3, 365, 45)
    lo, hi = test_start_day - 14, test_start_day + test_days + 14
    train_days = [int(d) for d in candidates if d + 7 < lo or d > hi][:6]
    weeks = []
    for i, day in enumerate(train_days):
        params = sim.make_params(station=station, start_hour=24.0 * day)
        key = jax.random.key(10_000 + 97 * seed + i)
        f, d = state_forecasts(params, jax.random.split(key, burn + steps), horizon)
        weeks.append((params, key, f, d))
    n_total = float(weeks[0][0].num_racks * weeks[0][0].servers_per_rack)
    h = uptime_headroom(
        [np.asarray(w[2][burn:, 0]) for w in weeks],
        [np.asarray(w[3][burn:]) for w in weeks],
        n_total,
        uptime,
        np.arange(0.0, 0.5, grid_step),
    )
    energy = np.zeros(len(LEVER_MARGINS))
    nviol = np.zeros(len(LEVER_MARGINS))
    for params, key, f, _ in weeks:
        for j, m in enumerate(LEVER_MARGINS):
            out = run_lever_oracle(
                params, key, f, h, m, temp_max, uptime, burn=burn, steps=steps, horizon=horizon
            )
            energy[j] += float(out["energy_kwh"])
            nviol[j] += int(out["violations"])
    j = int(np.lexsort((energy, nviol))[0])
    return h, float(LEVER_MARGINS[j]), train_days


LEVER_BOUND_DOC = """lever-bound: a lower bound on the energy (so an upper bound on the saving)
of ANY controller that (A1) has at most the lever-oracle's information: the hidden workload
state after the last interval, never the next random draw, so its best forecast is
f_t = E[d_t | state] (the noise, AR draw plus jump, is independent of the state); (A2) keeps
the uptime safety calibrated on the training weeks: every rack has servers for its share of
the design demand D_t = min(f_t + h, 1), on_r >= D_t N w_r (h the smallest headroom with no
training interval short of servers, `uptime_headroom`; a burst scales every rack's work, so
serving D_t needs it on every rack); (A3) switches whole servers (the simulator accepts
fractions: `energy_kwh_continuous` drops the rounding); (A4) has 0 violations in the window
(unserved <= 1 - uptime, every rack <= temp_max at the end of every interval). Whatever it
does with the setpoint, the shares, the caps and the timing of the servers:
IT: the row has at least ceil(D_t N) servers on (idle power P_idle each), every rack's
utilisation is u_r <= u_max = min(1, d_t / D_t), and the served work W = sum_r on_r f u_r
(f the cap's throttle) is at least uptime d_t N, so the dynamic power
sum_r on_r f (P_peak - P_idle)(2 u_r - u_r^1.4) = (P_peak - P_idle) sum_r W_r (2 - u_r^0.4)
>= (P_peak - P_idle) W (2 - u_max^0.4).
Cooling: the row's exact heat balance summed over the window,
sum_t Q_t dt = sum_t [P_IT,t - g_env sum_r (T_r,t - T_out,t)] dt - C sum_r (T_r,end - T_r,0),
with T_r,t <= temp_max for t >= 1 (A4) and T_r,0 the burn-in's end (the same for every
controller), bounds the heat removed from below; COP <= max(cop_free, cop_max) and the fan
always runs. The cooling part is the loose one (it grants the economiser's COP at every
interval)."""


@functools.partial(jax.jit, static_argnames=("burn", "steps"))
def lever_energy_bound(params, forecasts0, demand, temps0, h, temp_max, uptime=0.999, *,
                       burn: int, steps: int):  # fmt: skip
    """kWh lower bound of one window (`LEVER_BOUND_DOC`): the one-step forecasts
    `forecasts0` (burn + steps,) and demand (burn + steps,) of the window's keys, the rack
    temperatures `temps0` (R,) °C at the end of the burn-in, headroom `h` (share of all
    servers). Returns a dict of the bound (whole servers, A3) and its IT, cooling and fan
    parts, and the bound without A3 (`energy_kwh_continuous`), all kWh."""
    r, n = params.num_racks, params.servers_per_rack
    big_n = float(r * n)
    f = forecasts0[burn : burn + steps]
    d = demand[burn : burn + steps]
    design = jnp.minimum(f + h, 1.0)  # no rack can hold more than all its servers
    u_max = jnp.minimum(1.0, d / jnp.maximum(design, 1e-9))
    served = uptime * d * big_n
    dyn = params.p_peak_kw - params.p_idle_kw
    dyn_kw = dyn * served * (2.0 - u_max**0.4)
    t_out = sim.outside_temp(params, jnp.arange(burn, burn + steps, dtype=jnp.int32))
    # envelope leak at the start temperatures: exact in the first interval, at most
    # temp_max in every later one (negative, heat flowing in, when T_out > temp_max)
    leak_kw = params.envelope_kw_per_k * r * (temp_max - t_out)
    leak_kw = leak_kw.at[0].set(params.envelope_kw_per_k * jnp.sum(temps0 - t_out[0]))
    stored_kj = params.heat_capacity_kj_per_k * jnp.sum(temp_max - temps0)
    cop_hi = jnp.maximum(params.cop_free, params.cop_max)
    fan_kwh = params.fan_kw * steps * params.dt / 3600.0

    def parts(total):
        it_kw = params.p_idle_kw * total + dyn_kw
        heat_kj = jnp.maximum(jnp.sum(it_kw - leak_kw) * params.dt - stored_kj, 0.0)
        return jnp.sum(it_kw) * params.dt / 3600.0, heat_kj / cop_hi / 3600.0

    it_kwh, cool_kwh = parts(jnp.clip(jnp.ceil(design * big_n - 1e-6), 1.0, big_n))
    it_c, cool_c = parts(design * big_n)
    return dict(
        energy_kwh=it_kwh + cool_kwh + fan_kwh,
        it_kwh=it_kwh,
        cool_kwh=cool_kwh,
        fan_kwh=jnp.asarray(fan_kwh),
        energy_kwh_continuous=it_c + cool_c + fan_kwh,
        it_kw_t=params.p_idle_kw * jnp.clip(jnp.ceil(design * big_n - 1e-6), 1.0, big_n) + dyn_kw,
    )


LEVER_BOUND_LP_DOC = """lever-bound (LP): the same assumptions A1-A4 as `LEVER_BOUND_DOC` plus (A5) every
supply setpoint >= sp_min (16 °C: the lowest any controller of this study uses; the simulator
itself has no limit), with the cooling bounded per interval instead of at the economiser's
COP throughout. Heat is removed only from racks warmer than the supply air, and every rack
is at most temp_max when an interval starts (A4), so sp_t < temp_max wherever Q_t > 0 and
the row removes Q_t <= UA sum_r (T_r - sp_t)_+ <= R UA (temp_max - sp_t): the setpoint is at
most temp_max - Q_t / (R UA), and since the COP never falls as the setpoint rises
(`physics.cop`) the cooling electricity of the interval is at least
g_t(Q_t) = Q_t / COP(T_out,t, temp_max - Q_t / (R UA)) (the economiser only while
T_out,t < temp_max - Q_t / (R UA) - 4). The LP charges each interval the largest of a set of
lines under g_t (the lower convex hull of g_t's lower staircase on a grid of Q: g_t grows
with Q, so every such line stays under g_t). The rack
update is a convex combination of the rack, its neighbours, the supply air and the outside
air plus the server heat (dt (UA + 2G + g_env) / C < 1, checked by `make_params`), so no rack
falls below T_low = min(start temperatures, sp_min, coldest outside air of the window). The
bound is then the linear programme, over the row's heat-removal path Q_t in [0, capacity],
IT power P_t >= the analytic IT bound, and the sum of rack temperatures S_t in
[R T_low, R temp_max] with the row's exact balance
S_{t+1} = S_t + dt / C [P_t - Q_t - g_env (S_t - R T_out,t)]:
min sum_t [P_t + y_t] dt + fan, y_t above every line of interval t (HiGHS,
`scipy.optimize.linprog`). It lets heat be
stored or pre-cooled wherever that pays, within the racks' temperature range."""


def _lower_hull(x, y):
    """(slopes, intercepts) of the lower convex hull of the points (x, y), x ascending."""
    hull = []
    for p in zip(x, y, strict=True):
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1) <= 0:
                hull.pop()
            else:
                break
        hull.append(p)
    h = np.asarray(hull)
    slope = np.diff(h[:, 1]) / np.diff(h[:, 0])
    return slope, h[:-1, 1] - slope * h[:-1, 0]


def cooling_cost_lines(params, t_out, t_cap, *, points: int = 241):
    """Lines (slope (T, K) kW/kW, intercept (T, K) kW, padded by repeating the last) under
    each interval's least cooling electricity g_t(Q) (kW; `LEVER_BOUND_LP_DOC`) for heat
    removal Q in [0, capacity]: the lower convex hull of the staircase points
    (Q_{i+1}, g_t(Q_i)) and (0, 0), which lie on or under g_t because g_t grows with Q."""
    q = np.linspace(0.0, float(params.cooling_capacity_kw), points)
    r_ua = params.num_racks * float(params.ua_kw_per_k)
    out = []
    for to, tc in zip(np.asarray(t_out), np.asarray(t_cap), strict=True):
        sp = tc - q[1:] / r_ua
        c = np.asarray(
            physics.cop(jnp.asarray(to), jnp.asarray(sp), params.cop_carnot_fraction,
                        params.cop_max, params.cop_free),
            np.float64,
        )  # fmt: skip
        g = q[1:] / c  # g at the grid points (increasing in Q)
        xs = np.concatenate([[0.0], q[1:]])
        ys = np.concatenate([[0.0], np.concatenate([[0.0], g[:-1]])])  # g(Q_i) at Q_{i+1}
        out.append(_lower_hull(xs, ys))
    k = max(len(a) for a, _ in out)
    slope = np.stack([np.pad(a, (0, k - len(a)), mode="edge") for a, _ in out])
    icpt = np.stack([np.pad(b, (0, k - len(b)), mode="edge") for _, b in out])
    return slope, icpt


def lever_energy_bound_lp(params, it_kw, temps0, temp_max, *, burn: int, sp_min: float = 16.0):
    """kWh lower bound of one window (`LEVER_BOUND_LP_DOC`) from the per-interval IT power
    bound `it_kw` (T,) kW (`lever_energy_bound(...)["it_kw_t"]`), the rack temperatures
    `temps0` (R,) °C after the burn-in, the window starting at simulator step `burn`.
    Returns a dict (kWh) with the bound, its IT, cooling and fan parts, and T_low (°C)."""
    from scipy import sparse
    from scipy.optimize import linprog

    p_lb = np.asarray(it_kw, np.float64)
    t = p_lb.shape[0]
    r = params.num_racks
    temps0 = np.asarray(temps0, np.float64)
    dt, c = float(params.dt), float(params.heat_capacity_kj_per_k)
    g_env = float(params.envelope_kw_per_k)
    t_out = np.asarray(
        sim.outside_temp(params, jnp.arange(burn, burn + t, dtype=jnp.int32)), np.float64
    )
    t_cap = np.full((t,), float(temp_max))
    t_cap[0] = max(float(temp_max), float(np.max(temps0)))
    slope, icpt = cooling_cost_lines(params, t_out, t_cap)
    k = slope.shape[1]
    t_low = min(float(np.min(temps0)), float(sp_min), float(np.min(t_out)))
    # variables: P_0..P_{T-1}, Q_0..Q_{T-1}, S_1..S_T (sum of rack temps), y_0..y_{T-1}
    a = dt / c
    rows, cols, vals = [], [], []
    b = np.zeros(t)
    for i in range(t):
        # S_{i+1} - (1 - a g) S_i - a P_i + a Q_i = a g R T_out,i  (S_0 known)
        rows += [i, i, i]
        cols += [i, t + i, 2 * t + i]
        vals += [-a, a, 1.0]
        b[i] = a * g_env * r * t_out[i]
        if i == 0:
            b[i] += (1.0 - a * g_env) * float(np.sum(temps0))
        else:
            rows.append(i)
            cols.append(2 * t + i - 1)
            vals.append(-(1.0 - a * g_env))
    a_eq = sparse.csr_matrix((vals, (rows, cols)), shape=(t, 4 * t))
    # y_i >= slope_ik Q_i + icpt_ik  <=>  slope_ik Q_i - y_i <= -icpt_ik
    ii = np.repeat(np.arange(t), k)
    ub_rows = np.arange(t * k)
    a_ub = sparse.csr_matrix(
        (
            np.concatenate([slope.ravel(), -np.ones(t * k)]),
            (np.concatenate([ub_rows, ub_rows]), np.concatenate([t + ii, 3 * t + ii])),
        ),
        shape=(t * k, 4 * t),
    )
    cost = np.concatenate([np.full(t, dt / 3600.0), np.zeros(2 * t), np.full(t, dt / 3600.0)])
    bounds = (
        [(float(x), None) for x in p_lb]
        + [(0.0, float(params.cooling_capacity_kw))] * t
        + [(r * t_low, r * float(temp_max))] * t
        + [(0.0, None)] * t
    )
    res = linprog(
        cost, A_ub=a_ub, b_ub=-icpt.ravel(), A_eq=a_eq, b_eq=b, bounds=bounds, method="highs"
    )
    fan_kwh = float(params.fan_kw) * t * dt / 3600.0
    if res.status != 0:
        nan = float("nan")
        return dict(energy_kwh=nan, it_kwh=nan, cool_kwh=nan, fan_kwh=fan_kwh, t_low=t_low)
    x = res.x
    it_kwh = float(np.sum(x[:t]) * dt / 3600.0)
    cool_kwh = float(np.sum(x[3 * t :]) * dt / 3600.0)
    return dict(
        energy_kwh=it_kwh + cool_kwh + fan_kwh,
        it_kwh=it_kwh,
        cool_kwh=cool_kwh,
        fan_kwh=fan_kwh,
        t_low=t_low,
    )


def burn_in_temps(params, keys):
    """(R,) rack temperatures after the burn-in steps driven by `keys` at the default
    operating point (the closed loop's burn-in: pass its first `burn` keys)."""
    act = sim.default_action(params)
    acts = jax.tree.map(lambda x: jnp.broadcast_to(x, (keys.shape[0],) + x.shape), act)
    obs = sim._rollout_actions(params, sim.init_state(params), acts, keys)
    return obs["temps"][-1]
