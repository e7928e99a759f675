"""The MPC mode's uptime headroom: calibration on training weeks and row-level rounding."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from idf_jax._checks import ArgumentError
from idf_jax.eil import mpc as mpc_mod
from idf_jax.eil.mpc import MPCInputs, MPCPlan, MPCPlanner
from idf_jax.eil.mpc_mode import DemandPath, calibrated_floor, replay_uptime, uptime_headroom
from idf_jax.eil.plant import PlantAction
from idf_jax.eil.presets import simulator_plant

f32 = np.float32
H, R = 4, 4


@pytest.fixture(scope="module")
def model():
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), simulator_plant())


def test_uptime_headroom_by_hand():
    sig = np.array([0.01, 0.02, 0.05])
    q = np.array([0.2, 0.0, 0.1])
    assert np.allclose(uptime_headroom(sig, q, 3.0, 0.04, False), [0.04, 0.06, 0.15])
    assert np.allclose(uptime_headroom(sig, q, 3.0, 0.04, True), [0.2, 0.06, 0.15])


def test_calibrated_floor_by_hand():
    # decision 1 is short by 0.23 with 0.1 learned: the floor must cover it; decision 2 is
    # short by 0.3 but its learned headroom 0.35 covers it already
    fc = np.array([0.5, 0.4, 0.4])
    learned = np.array([0.1, 0.1, 0.35])
    actual = np.array([0.45, 0.63, 0.7])
    assert calibrated_floor([(fc, learned, actual)], 0.0025) == pytest.approx(0.23)
    # several weeks: the largest need over all of them, rounded up to the grid
    other = (np.array([0.3]), np.array([0.0]), np.array([0.5401]))
    assert calibrated_floor([(fc, learned, actual), other], 0.0025) == pytest.approx(0.2425)
    never_short = (fc, learned, fc - 0.01)
    assert calibrated_floor([never_short], 0.0025) == 0.0


def test_replay_matches_a_live_demand_path():
    """replay_uptime sees what a live source sees: decision t knows demands[:burn + t]."""
    rng = np.random.default_rng(0)
    t = np.arange(96 * 3)
    d = 0.45 + 0.2 * np.sin(2 * np.pi * t / 96) + 0.02 * rng.standard_normal(t.size)
    burn = 96 * 2
    fc, learned, actual = replay_uptime(d, burn, 6, 3.09, max_error=True)
    assert fc.shape == learned.shape == actual.shape == (96,)
    assert np.array_equal(actual, d[burn:])
    live = DemandPath(96)
    for v in d[:burn]:
        live.append(float(v))
    for k in range(5):
        dem, sig, q = live.next(6, 0.0)
        assert dem[0] == pytest.approx(fc[k])
        assert uptime_headroom(sig, q, 3.09, 0.0, True)[0] == pytest.approx(learned[k])
        live.append(float(d[burn + k]))
    # the forecast tracks the daily profile: errors of the order of the noise
    assert np.sqrt(np.mean((actual - fc) ** 2)) < 0.05


def test_pooled_rounding_by_hand(model):
    on = np.asarray(mpc_mod._pooled(model, jnp.asarray([10.2, 10.2, 10.2, 10.3], jnp.float32)))
    # 40.9 servers -> 41 in all, spread by largest remainders (not 11 per rack = 44)
    assert on.sum() == 41 and np.all(on == np.round(on)) and on.max() - on.min() <= 1
    full = np.asarray(mpc_mod._pooled(model, jnp.asarray([40.0, 40.0, 40.0, 39.5], jnp.float32)))
    assert np.all(full <= 40) and full.sum() == 160


def _inputs(pool: float, stored: float = 1.0, demand: float = 0.5, headroom: float = 0.1):
    on = np.full((R,), 40.0, f32)
    w = np.full((R,), 0.25, f32)
    return MPCInputs(
        temps=np.full((R,), 26.0, f32),
        demand=np.full((H,), demand, f32),
        headroom=np.full((H,), headroom, f32),
        t_out=np.full((H,), 12.0, f32),
        prev=PlantAction(np.asarray(20.0, f32), np.asarray(np.inf, f32), on, w),
        warm=MPCPlan(
            np.full((H,), 20.0, f32),
            np.full((H,), np.inf, f32),
            np.tile(on, (H, 1)),
            np.tile(w, (H, 1)),
        ),  # fmt: skip
        goal=np.asarray((1.0, 0.1, 1.0), f32),
        temp_max=f32(32.0),
        temp_margin=f32(0.3),
        temp_sigma=f32(0.3),
        z_temp=f32(2.0),
        ratio=f32(1.0),
        sp_lo=f32(16.0),
        sp_hi=f32(27.0),
        switch_kwh=f32(0.02),
        migrate_kwh=f32(0.01),
        pool=f32(pool),
        stored_weight=f32(stored),
    )


def test_executable_first_action_pooled_and_per_rack(model):
    """(0.5 + 0.1) x 160 = 96 servers needed: a plan at 24.1 per rack rounds to 97 for the
    row (shares follow the servers) or 25 per rack (100) when every rack rounds alone."""
    h = H
    plan = MPCPlan(
        jnp.full((h,), 22.0), jnp.full((h,), jnp.inf), jnp.full((h, R), 24.1),
        jnp.full((h, R), 0.25),
    )  # fmt: skip
    a_pool, ok_pool, _ = mpc_mod._make_executable(model, _inputs(1.0), plan)
    a_rack, ok_rack, _ = mpc_mod._make_executable(model, _inputs(0.0), plan)
    on_p, w_p = np.asarray(a_pool.servers_on), np.asarray(a_pool.weights)
    assert on_p.sum() == 97 and np.allclose(w_p, on_p / on_p.sum())
    assert np.all(on_p >= np.ceil(0.6 * 160 * w_p - 1e-4)) and bool(ok_pool)
    assert np.asarray(a_rack.servers_on).tolist() == [25.0] * 4 and bool(ok_rack)


@pytest.mark.slow
def test_options_are_traced_inputs(model):
    """pool and stored_weight vary between decisions without a new compilation."""
    small = dict(chains=2, steps=16, polish=0)
    counted = jax.jit(
        eqx.debug.assert_max_traces(mpc_mod.plan_impl, max_traces=1),
        static_argnames=("chains", "steps", "polish", "hold"),
    )
    for i, (pool, stored) in enumerate([(1.0, 1.0), (0.0, 1.0), (1.0, 0.0)]):
        res = counted(model, _inputs(pool, stored), jax.random.key(i), **small)
        on, w = np.asarray(res.action.servers_on), np.asarray(res.action.weights)
        assert np.all(on == np.round(on)) and on.sum() >= 96
        if pool:  # shares follow the servers
            assert np.allclose(w, on / on.sum(), atol=1e-6)


def test_planner_options_checked():
    with pytest.raises(ArgumentError) as e:
        MPCPlanner(4, pool=1)  # type: ignore[arg-type]
    assert e.value.argument == "pool"
    p = MPCPlanner(4, max_error=False, pool=False, stored=False)
    assert (p.max_error, p.pool, p.stored) == (False, False, False)


def test_replay_outside_error_and_margin_by_hand():
    from idf_jax.eil.mpc_mode import calibrated_temp_margin, replay_outside_error

    t = np.arange(96 * 3)
    x = 10.0 + 5.0 * np.sin(2 * np.pi * t / 96)
    err = replay_outside_error(x, 96 * 2)
    assert err.shape == (96,) and np.max(np.abs(err)) < 0.5  # a clean daily cycle
    # a heat wave the forecaster cannot know: the error is the jump
    y = x.copy()
    y[200] += 4.0
    e2 = replay_outside_error(y, 96 * 2)
    assert e2[8] == pytest.approx(err[8] + 4.0, abs=1e-9)
    gain = 0.05 * 900.0 / 1800.0  # g_env dt / C
    m = calibrated_temp_margin([err, e2], gain)
    assert m == pytest.approx(max(0.1, 1.1 * gain * float(np.max(e2))))
    assert calibrated_temp_margin([np.array([-1.0])], gain) == 0.1  # never under: the floor
    with pytest.raises(ArgumentError) as e:
        replay_outside_error(x, 0)
    assert e.value.argument == "burn"
    with pytest.raises(ArgumentError) as e:
        calibrated_temp_margin([err], -1.0)
    assert e.value.argument == "gain_k_per_k"


def test_planner_temperature_options():
    p = MPCPlanner(4, temp_margin=0.1, temp_z=0.0)
    assert (p.temp_margin, p.temp_z) == (0.1, 0.0)
    assert MPCPlanner(4).temp_margin is None and MPCPlanner(4).temp_z is None
    for bad in (-0.1, float("nan"), True, "0.1"):
        with pytest.raises(ArgumentError) as e:
            MPCPlanner(4, temp_margin=bad)  # type: ignore[arg-type]
        assert e.value.argument == "temp_margin"
    with pytest.raises(ArgumentError) as e:
        MPCPlanner(4, temp_z=float("inf"))
    assert e.value.argument == "temp_z"


def test_source_inputs_take_the_fixed_temperature_margin(model):
    """MPCSource.inputs: a planner's fixed margin and z_T replace the learned ones."""
    from types import SimpleNamespace

    from idf_jax.eil.mpc_mode import MPCSource
    from idf_jax.eil.plant import PlantState
    from idf_jax.eil.presets import row_source
    from idf_jax.eil.store import EnergyReading

    cfg = row_source(demand_sigma=0.05)
    hist = [
        EnergyReading("row-1", 900.0 * i, 900.0, {"outside_temp": 10.0, "demand": 0.5})
        for i in range(10)
    ]
    latest = hist[-1]
    state = PlantState(np.full((R,), 27.0, f32), f32(0.5), f32(10.0))
    cur = PlantAction(f32(20.0), f32(np.inf), np.full((R,), 40.0, f32), np.full((R,), 0.25, f32))
    limits = SimpleNamespace(uptime=0.999, temp_max=32.0)
    args = (model, latest, state, cur, (1.0, 0.0, 0.0), limits, 1.0, (16.0, 27.0), 0.0, 0.0)
    src = MPCSource(cfg, hist, [0.5] * 10)
    inp, info = src.inputs(MPCPlanner(H), *args)
    assert float(inp.temp_margin) == 0.5 and float(inp.z_temp) == pytest.approx(3.0)
    src = MPCSource(cfg, hist, [0.5] * 10)
    inp, info = src.inputs(MPCPlanner(H, temp_margin=0.1, temp_z=0.0), *args)
    assert float(inp.temp_margin) == pytest.approx(0.1) and float(inp.z_temp) == 0.0
    assert info["temp_margin"] == pytest.approx(0.1)
