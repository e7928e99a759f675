"""EIL's model-predictive planner (`idf_jax.eil.mpc`) and its demand forecaster."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from idf_jax._checks import ArgumentError
from idf_jax.eil import EILOptimizer
from idf_jax.eil import mpc as mpc_mod
from idf_jax.eil.forecast import SeasonalForecaster, check_period
from idf_jax.eil.mpc import MPCInputs, MPCPlan, MPCPlanner, sequence_cost
from idf_jax.eil.plant import PlantAction, PlantState, predict
from idf_jax.eil.presets import row_source, simulator_plant

H, R = 4, 4
f32 = np.float32
# the tests that run the planner compile it (tens of seconds on a loaded 2-core machine)
SLOW = pytest.mark.slow
# one small planner for every test: one compilation shared by the module
SMALL = dict(chains=2, steps=24, polish=0)


@pytest.fixture(scope="module")
def model():
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), simulator_plant())


def inputs(
    demand=0.5, headroom=0.1, temps=26.0, t_out=30.0, temp_max=32.0, sp=20.0, goal=(1, 0.1, 1)
):
    dem = np.broadcast_to(np.asarray(demand, f32), (H,)).copy()
    on = np.full((R,), 40.0, f32)
    w = np.full((R,), 0.25, f32)
    prev = PlantAction(f32(sp), f32(np.inf), on, w)
    warm = MPCPlan(
        np.full((H,), sp, f32), np.full((H,), np.inf, f32), np.tile(on, (H, 1)), np.tile(w, (H, 1))
    )
    return MPCInputs(
        temps=np.full((R,), temps, f32),
        demand=dem,
        headroom=np.full((H,), headroom, f32),
        t_out=np.full((H,), t_out, f32),
        prev=prev,
        warm=warm,
        goal=np.asarray(goal, f32),
        temp_max=f32(temp_max),
        temp_margin=f32(0.3),
        temp_sigma=f32(0.3),
        z_temp=f32(2.0),
        ratio=f32(1.0),
        sp_lo=f32(16.0),
        sp_hi=f32(27.0),
        switch_kwh=f32(0.02),
        migrate_kwh=f32(0.01),
    )


def hottest_high(model, inp, action):
    """The hottest rack after interval 1 at demand d_1 + headroom_1 (plant model)."""
    st = PlantState(inp.temps, inp.demand[0] + inp.headroom[0], inp.t_out[0])
    return float(predict(model, st, action)["temp_max"])


@SLOW
@pytest.mark.parametrize("temps", [26.0, 31.6])
def test_mpc_respects_constraints(model, temps):
    planner = MPCPlanner(H, **SMALL)
    inp = inputs(demand=0.55, headroom=0.12, temps=temps)
    res = planner.decide(model, inp, jax.random.key(0))
    a = res.action
    need = np.ceil((0.55 + 0.12) * 160 * np.asarray(a.weights) - 1e-4)
    on = np.asarray(a.servers_on)
    assert np.all(on >= need) and np.all(on == np.round(on)) and np.all(on <= 40)
    assert bool(res.feasible)
    hot = hottest_high(model, inp, a)
    assert hot <= 32.0 - 0.3 + 1e-4
    assert math.isclose(hot, float(res.temp_hi), abs_tol=1e-3)
    # fewer servers than "all on" (the present point) where the load allows it
    assert on.sum() < 160


@SLOW
def test_sequence_beats_the_held_action(model):
    """Demand ramps up over the horizon: one action held must carry the last interval's
    servers from the start; the sequence tracks the ramp."""
    planner = MPCPlanner(H, **SMALL)
    inp = inputs(demand=np.linspace(0.3, 0.75, H), headroom=0.05, t_out=8.0)
    seq = planner.decide(model, inp, jax.random.key(2))
    held = planner.decide(model, inp, jax.random.key(2), hold=True)
    c_seq = float(sequence_cost(model, inp, seq.plan)["cost"])
    c_held = float(sequence_cost(model, inp, held.plan)["cost"])
    assert np.allclose(np.asarray(held.plan.servers_on), np.asarray(held.plan.servers_on)[:1])
    assert c_seq < c_held - 0.5, (c_seq, c_held)
    # and the optimiser improves on its best starting sequence
    assert float(seq.cost) <= float(seq.cost_start) + 1e-4


@SLOW
def test_compiles_once_across_decisions(model):
    planner = MPCPlanner(H, **SMALL)
    counted = jax.jit(
        eqx.debug.assert_max_traces(mpc_mod.plan_impl, max_traces=1),
        static_argnames=("chains", "steps", "polish", "hold"),
    )
    cases = [
        inputs(),
        inputs(demand=0.3, headroom=0.2, temps=29.0, t_out=-5.0, temp_max=30.0, sp=25.0),
        inputs(demand=np.linspace(0.2, 0.6, H), goal=(1.0, 1.0, 0.5)),
    ]
    before = mpc_mod.plan._cache_size()
    for i, inp in enumerate(cases):
        counted(model, inp, jax.random.key(i), **SMALL)
        planner.decide(model, inp, jax.random.key(i))
    assert mpc_mod.plan._cache_size() - before <= 1


@SLOW
def test_decision_is_jittable(model):
    """Every input of a decision can be traced: the planner nests inside jit."""
    planner = MPCPlanner(H, **SMALL)
    inp = inputs()
    key = jax.random.key(3)
    direct = planner.decide(model, inp, key)
    nested = jax.jit(lambda i, k: planner.decide(model, i, k).action)(inp, key)
    assert np.allclose(np.asarray(nested.servers_on), np.asarray(direct.action.servers_on))
    assert math.isclose(float(nested.setpoint), float(direct.action.setpoint), abs_tol=1e-4)


def test_bad_arguments_raise_argument_error(model):
    with pytest.raises(ArgumentError) as e:
        MPCPlanner(0)
    assert e.value.argument == "horizon"
    with pytest.raises(ArgumentError):
        MPCPlanner(4, chains=0)
    with pytest.raises(ArgumentError) as e:
        MPCPlanner(4, polish=-1)
    assert e.value.argument == "polish"
    planner = MPCPlanner(H, **SMALL)
    key = jax.random.key(0)
    bad = inputs()._replace(demand=np.zeros(H + 1, f32))
    with pytest.raises(ArgumentError) as e:
        planner.decide(model, bad, key)
    assert e.value.argument == "demand"
    with pytest.raises(ArgumentError) as e:
        planner.decide(model, inputs(headroom=-0.1), key)
    assert e.value.argument == "headroom"
    with pytest.raises(ArgumentError) as e:
        planner.decide(model, inputs()._replace(sp_lo=f32(30.0)), key)
    assert e.value.argument == "sp_lo"
    with pytest.raises(ArgumentError) as e:
        planner.decide(model, inputs()._replace(t_out=np.full(H, np.nan, f32)), key)
    assert e.value.argument == "t_out"
    with pytest.raises(ArgumentError) as e:
        planner.decide(model, inputs(), 3)
    assert e.value.argument == "key"
    with pytest.raises(ArgumentError):
        planner.decide("model", inputs(), key)  # type: ignore[arg-type]


def test_seasonal_forecaster_learns_the_daily_profile():
    p = 24
    t = np.arange(5 * p)
    x = 0.4 + 0.2 * np.sin(2 * np.pi * t / p)
    fc = SeasonalForecaster(p, values=x)
    want = 0.4 + 0.2 * np.sin(2 * np.pi * (t[-1] + 1 + np.arange(6)) / p)
    assert np.allclose(fc.forecast(6), want, atol=1e-6)
    sig, q, n = fc.error_quantiles(6)
    assert n > 8 and np.all(sig < 1e-6) and np.all(q < 1e-6)
    # a level shift today is carried (slow level + decaying residual)
    fc.append(float(want[0]) + 0.1)
    assert fc.forecast(1)[0] > want[1]
    with pytest.raises(ArgumentError):
        SeasonalForecaster(0)
    with pytest.raises(ArgumentError):
        SeasonalForecaster(p).forecast(3)
    with pytest.raises(ArgumentError):
        fc.append(float("nan"))
    with pytest.raises(ArgumentError):
        check_period(7000.0)
    assert check_period(900.0) == 96


@SLOW
def test_optimizer_mpc_mode_senses_acts_proves():
    cfg = row_source(demand_sigma=0.05)
    with EILOptimizer(sources=[cfg], planner=MPCPlanner(H, **SMALL)) as eil:
        pid = None
        for i in range(6):
            m = {
                "cpu": 0.5, "power": 30.0, "it_power": 27.0, "cooling_power": 3.0,
                "cooling_load": 26.0, "temp": 27.0, "outside_temp": 10.0, "setpoint": 20.0,
                "servers_on": 160.0, "demand": 0.45 + 0.01 * i,
            }  # fmt: skip
            m.update({f"temp_{r}": 27.0 for r in range(R)})
            eil.sense(
                {"source": "row-1", "metrics": m, "interval_s": 900.0, "timestamp": 900.0 * i}
            )
            if pid is not None:
                assert eil.prove(pid)["status"] in ("proven", "invalid")
            a = eil.act(constraints={"uptime": 0.999, "temp_max": 32.0})
            pid = a["prediction_id"]
            assert a["forecast"]["method"] == "mpc" and a["feasible"]
            on = np.asarray(a["plant_action"]["servers_on"])
            assert on.sum() < 160 and np.all(on == np.round(on))
        assert eil.verify_ledger()["ok"]
