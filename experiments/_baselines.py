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
    return dict(
        energy_kwh=e.sum(),
        viol_temp=bt.sum(),
        viol_uptime=bu.sum(),
        violations=(bt | bu).sum(),
        max_temp=hot.max(),
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
