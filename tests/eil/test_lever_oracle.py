"""The lever-oracle bound of experiments/_baselines.py on small deterministic cases: the
hidden workload path, the conditional-mean forecast, the server spreading, the headroom
calibration by hand, and the oracle's plans on a noise-free plant (constraints held, the
cap never chosen, energy at or below the tuned rule's and above the analytic bound)."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "experiments"))
import _baselines as B  # noqa: E402

from idf_jax.nvp import simulator as sim  # noqa: E402

BURN, STEPS, H = 16, 32, 4


@pytest.fixture(scope="module")
def quiet():
    """No AR noise, no bursts: the demand is the daily profile (a deterministic plant)."""
    return sim.make_params(start_hour=24.0 * 180 + 8.0, ar_sigma=0.0, burst_prob=0.0)


def test_workload_path_is_the_simulators():
    params = sim.make_params(start_hour=24.0 * 100)
    key = jax.random.key(3)
    keys = jax.random.split(key, 40)
    _, _, d = B.workload_path(params, keys)
    acts = jax.tree.map(lambda x: jnp.broadcast_to(x, (40,) + x.shape), sim.default_action(params))
    obs = sim._rollout_actions(params, sim.init_state(params), acts, keys)
    np.testing.assert_allclose(np.asarray(d), np.asarray(obs["demand"]), atol=1e-6)


def test_expected_demand_by_hand():
    params = sim.make_params(start_hour=0.0)
    f = np.asarray(B.expected_demand(params, jnp.float32(0.1), jnp.float32(0.2), 0, 3))
    prof = np.asarray(sim.demand_profile(params, jnp.arange(3)))
    j = np.arange(3)
    want = prof + 0.9 ** (j + 1) * 0.1 + 0.7 ** (j + 1) * 0.2 + 0.003 * (1 - 0.7 ** (j + 1)) / 0.3
    np.testing.assert_allclose(f, want, rtol=1e-5)


def test_state_forecast_is_exact_without_noise(quiet):
    keys = jax.random.split(jax.random.key(0), 50)
    f, d = B.state_forecasts(quiet, keys, H)
    true = np.asarray(B.foresight_forecasts(d, H))
    n = 50 - H + 1  # the rows whose horizon stays inside the path
    np.testing.assert_allclose(np.asarray(f)[:n], true[:n], atol=1e-6)


def test_spread_servers_by_hand():
    got = B.spread_servers(jnp.float32(10.0), jnp.asarray([2.0, 1.0, 1.0, 0.0]), 40)
    np.testing.assert_array_equal(np.asarray(got), [5.0, 3.0, 2.0, 0.0])  # 5, 2.5, 2.5, 0
    got = B.spread_servers(jnp.float32(150.0), jnp.asarray([3.0, 1.0, 0.0, 0.0]), 40)
    # 112.5, 37.5 -> 113, 37 (tie: the first rack); the full rack keeps 40, the rest is lost
    np.testing.assert_array_equal(np.asarray(got), [40.0, 37.0, 0.0, 0.0])


def test_uptime_headroom_by_hand():
    # 160 servers: f = 0.5 and d = 0.6 need ceil((0.5 + h) 160) >= 0.999 * 96, i.e. 96 servers,
    # so (0.5 + h) 160 > 95: h = 0.095 on the 0.0025 grid (0.0925 gives 95: 1 % unserved)
    grid = np.arange(0.0, 0.5, 0.0025)
    f, d = [np.array([0.5, 0.5])], [np.array([0.5, 0.6])]
    assert B.uptime_headroom(f, d, 160.0, 0.999, grid) == pytest.approx(0.095)
    assert B.uptime_headroom([np.array([0.5])], [np.array([0.5])], 160.0, 0.999, grid) == 0.0


def test_lever_oracle_on_a_noise_free_plant(quiet):
    key = jax.random.key(1)
    kw = dict(burn=BURN, steps=STEPS)
    keys = jax.random.split(key, BURN + STEPS)
    f, d = B.state_forecasts(quiet, keys, H)
    out = B.run_lever_oracle(quiet, key, f, 0.0, 0.0, 32.0, 0.999, horizon=H, **kw)
    assert int(out["violations"]) == 0 and float(out["max_temp"]) <= 32.0
    assert int(out["infeasible"]) == 0
    assert int(out["capped"]) == 0  # a binding cap breaks uptime: never feasible
    # at least as good as the best rule on this plant (one spare per rack covers the
    # profile's rise over one interval; the rule sees the last demand)
    rules = [
        B.run_rule(quiet, key, k, sp, 32.0, 0.999, **kw)
        for k in (1.0, 2.0)
        for sp in (20.0, 22.0, 24.0, 26.0)
    ]
    best = min(float(r["energy_kwh"]) for r in rules if int(r["violations"]) == 0)
    assert float(out["energy_kwh"]) <= best + 1e-3
    # and never below the analytic bound of the same information and headroom
    temps0 = B.burn_in_temps(quiet, keys[:BURN])
    bound = B.lever_energy_bound(quiet, f[:, 0], d, temps0, 0.0, 32.0, **kw)
    assert float(bound["energy_kwh"]) <= float(out["energy_kwh"])
    assert float(bound["energy_kwh"]) > 0.8 * float(out["energy_kwh"])


def test_lever_oracle_lowers_the_setpoint_when_hot():
    # a heavily loaded plant: a rule holding 27 °C overheats; the oracle keeps the limit
    hot = sim.make_params(
        start_hour=24.0 * 180 + 10.0, ar_sigma=0.0, burst_prob=0.0, demand_base=0.55
    )
    key = jax.random.key(2)
    kw = dict(burn=BURN, steps=STEPS)
    f, _ = B.state_forecasts(hot, jax.random.split(key, BURN + STEPS), H)
    out = B.run_lever_oracle(hot, key, f, 0.05, 0.0, 32.0, 0.999, horizon=H, **kw)
    rule = B.run_rule(hot, key, 2.0, 27.0, 32.0, 0.999, **kw)
    assert int(rule["viol_temp"]) > 0
    assert int(out["violations"]) == 0 and float(out["mean_setpoint"]) < 27.0


def test_bound_holds_when_the_design_demand_saturates():
    # demand near 1 with headroom h: f + h > 1, a rack holds at most all its servers, so
    # its utilisation is d (not d / (f + h)): the IT bound must stay below the IT power of
    # every interval of a run with all servers on (a controller the bound covers)
    full = sim.make_params(
        start_hour=24.0 * 180 + 12.0, ar_sigma=0.0, burst_prob=0.0, demand_base=0.62
    )
    key = jax.random.key(4)
    kw = dict(burn=BURN, steps=STEPS)
    keys = jax.random.split(key, BURN + STEPS)
    f, d = B.state_forecasts(full, keys, 1)
    h = 0.3
    assert float(jnp.max(f[BURN:, 0])) + h > 1.1  # saturated intervals in the window
    temps0 = B.burn_in_temps(full, keys[:BURN])
    bound = B.lever_energy_bound(full, f[:, 0], d, temps0, h, 32.0, 0.999, **kw)
    r = full.num_racks
    act = sim.default_action(full)._replace(weights=jnp.full((r,), 1.0 / r))
    acts = jax.tree.map(lambda x: jnp.broadcast_to(x, (BURN + STEPS,) + x.shape), act)
    obs = sim._rollout_actions(full, sim.init_state(full), acts, keys)
    assert float(jnp.max(obs["unserved"][BURN:])) <= 1e-3
    it = np.asarray(obs["power"][BURN:])
    assert np.all(np.asarray(bound["it_kw_t"]) <= it + 1e-4)
    assert float(bound["it_kwh"]) <= float(np.sum(it)) * full.dt / 3600.0


def test_cooling_lines_stay_under_the_least_cooling_power():
    params = sim.make_params()
    t_out = np.array([-5.0, 20.0, 27.5, 31.0])
    t_cap = np.full(4, 32.0)
    slope, icpt = B.cooling_cost_lines(params, t_out, t_cap)
    q = np.linspace(1e-3, float(params.cooling_capacity_kw), 2001)
    r_ua = params.num_racks * float(params.ua_kw_per_k)
    for i, to in enumerate(t_out):
        c = np.asarray(
            sim.physics.cop(jnp.asarray(to), jnp.asarray(32.0 - q / r_ua), 0.45, 8.0, 15.0)
        )
        g = q / c
        lines = np.max(slope[i][None, :] * q[:, None] + icpt[i][None, :], axis=1)
        assert np.all(lines <= g + 1e-9)
    # a hot interval: no economiser above small Q, so the lines bind well above Q / 15
    assert np.max(slope[3]) > 1.0 / 8.0 and np.max(slope[0]) <= 1.0 / 15.0 + 1e-9


def test_lp_bound_on_a_hot_noise_free_plant():
    # 30 °C outside all week: the economiser never runs at the heat the row makes, so the
    # LP (chiller COP) is above the analytic bound (economiser COP) and below a real run
    hot = sim.make_params(start_hour=24.0 * 180, ar_sigma=0.0, burst_prob=0.0)
    hot = eqx_set_weather(hot, 30.0)
    key = jax.random.key(5)
    kw = dict(burn=BURN, steps=STEPS)
    keys = jax.random.split(key, BURN + STEPS)
    f, d = B.state_forecasts(hot, keys, H)
    temps0 = B.burn_in_temps(hot, keys[:BURN])
    bound = B.lever_energy_bound(hot, f[:, 0], d, temps0, 0.0, 32.0, 0.999, **kw)
    lp = B.lever_energy_bound_lp(hot, bound["it_kw_t"], temps0, 32.0, burn=BURN)
    assert lp["cool_kwh"] > 1.3 * float(bound["cool_kwh"])
    out = B.run_lever_oracle(hot, key, f, 0.0, 0.0, 32.0, 0.999, horizon=H, **kw)
    assert int(out["violations"]) == 0
    assert lp["energy_kwh"] <= float(out["energy_kwh"])
    rule = B.run_rule(hot, key, 2.0, 24.0, 32.0, 0.999, **kw)
    assert int(rule["violations"]) == 0 and lp["energy_kwh"] <= float(rule["energy_kwh"])


def eqx_set_weather(params, t_c):
    """`params` with a constant outside air of `t_c` °C."""
    import equinox as eqx

    return eqx.tree_at(lambda p: p.t_out_hourly, params, jnp.full_like(params.t_out_hourly, t_c))
