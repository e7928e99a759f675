"""EIL planning through the action-conditioned NVP (idf_jax.eil.planner, idf_jax.nvp.control)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from idf_jax.eil import EILOptimizer, PlantModel, SourceConfig, row_source
from idf_jax.eil.decision import Candidates, Limits, Objective
from idf_jax.eil.planner import NVPEnv, Window
from idf_jax.eil.planner import packaged_planner as _packaged_planner
from idf_jax.eil.plant import PlantAction
from idf_jax.nvp import control
from idf_jax.nvp import simulator as sim
from idf_jax.nvp.loss import LossWeights, loss_terms, make_physics
from idf_jax.nvp.model import NVPConfig, NVPModel, fit_normalizer
from idf_jax.nvp.predictor import DEFAULT_CHECKPOINT

CONSTRAINTS = {"uptime": 0.999, "temp_max": 32.0}


@pytest.fixture(scope="module")
def planner():
    return _packaged_planner(4)  # the instance `EILOptimizer(planner="auto")` uses


@pytest.fixture(scope="module")
def params():
    return sim.make_params(start_hour=7 * 24.0)


@pytest.fixture(scope="module")
def trace(params):
    """24 simulated intervals at a fixed operating point (setpoint 20 °C, 30 servers per rack,
    uniform shares): observations and the action."""
    act = sim.default_action(params, setpoint=20.0)._replace(
        servers_on=jnp.full((4,), 30.0), weights=jnp.full((4,), 0.25)
    )
    obs = sim.simulate(params, jax.random.key(3), 24, action=act)
    return obs, act


def _source(params, **kw):
    plant = PlantModel(
        num_racks=4,
        servers_per_rack=40.0,
        dt=900.0,
        heat_capacity_kj_per_k=float(params.heat_capacity_kj_per_k),
        ua_kw_per_k=1.0,
        row_conductance_kw_per_k=0.3,
        envelope_kw_per_k=0.05,
        cooling_capacity_kw=60.0,
        fan_kw=2.0,
    )
    return SourceConfig(
        "row-1", num_servers=160, interval_s=900.0, temp_max=32.0, setpoint=20.0,
        demand_sigma=0.1, plant=plant, **kw,
    )  # fmt: skip


def _readings(obs, act, with_cooling_load=True):
    out = []
    for t in range(len(obs["cpu"])):
        temps = obs["temps"][t]
        m = {
            "cpu": float(obs["cpu"][t]),
            "power": float(obs["power"][t] + obs["cooling_power"][t]),
            "it_power": float(obs["power"][t]),
            "cooling_power": float(obs["cooling_power"][t]),
            "temp": float(temps.mean()),
            "outside_temp": float(obs["t_out"][t]),
            "setpoint": float(act.setpoint),
            "servers_on": float(np.sum(act.servers_on)),
            "demand": float(obs["demand"][t]),
        }
        if with_cooling_load:
            m["cooling_load"] = float(obs["cooling"][t])
        m.update({f"temp_{i}": float(x) for i, x in enumerate(temps)})
        out.append({"source": "row-1", "metrics": m, "timestamp": 900.0 * t})
    return out


def _eil(params, planner, obs, act, **kw):
    eil = EILOptimizer(sources=[_source(params)], planner=planner, **kw)
    for r in _readings(obs, act):
        eil.sense(r)
    return eil


def test_candidates_scored_in_one_vmapped_nvp_call(params, planner, trace, monkeypatch):
    obs, act = trace
    calls = []
    orig = planner.decide

    def spy(window, cands, *rest):
        calls.append((window.y.shape, planner.encode(*cands.actions).shape))
        return orig(window, cands, *rest)

    monkeypatch.setattr(planner, "decide", spy)
    with _eil(params, planner, obs, act) as eil:
        res = eil.act(goal="minimize_energy", constraints=CONSTRAINTS)
    assert res["forecast"]["scorer"] == "nvp"
    assert len(calls) == 1  # one call per decision ...
    (y_shape, c_shape) = calls[0]
    k = res["candidates_scored"]
    assert k > 20 and c_shape == (k, len(planner.spec.controls))  # ... batched over candidates
    assert y_shape == (planner.window, len(planner.spec.channels))
    assert res["feasible"] and np.isfinite(res["expected_cost"])
    assert res["predicted_state"]["energy"] > 0


def test_gradient_through_forecaster_and_refinement_lowers_cost(params, planner, trace):
    obs, act = trace
    with _eil(params, planner, obs, act) as eil:
        rec = eil.store.latest("row-1")
        y, mask, why = eil._nvp_window("row-1", planner, rec)
    assert why is None
    on, w = np.full(4, 30.0, np.float32), np.full(4, 0.25, np.float32)
    point = PlantAction(jnp.float32(18.0), jnp.float32(jnp.inf), jnp.asarray(on), jnp.asarray(w))
    env = NVPEnv(*(jnp.float32(x) for x in (0.1, 0.1, 0.25, 3.09, 0.0)))
    window = Window(jnp.asarray(y), jnp.asarray(mask))
    g_sp = float(planner.gradient(window, point, env))
    assert np.isfinite(g_sp) and g_sp < 0  # a warmer supply saves energy (kJ per °C)
    g_cap = float(
        planner.gradient(window, point._replace(power_cap=jnp.float32(15.0)), env, which=1)
    )
    assert np.isfinite(g_cap) and g_cap > 0  # a lower cap lowers IT energy
    # refine the setpoint from 18 °C (candidate 1, continuous): C(a) must fall, stay feasible
    f32 = np.float32
    on3, w3 = np.repeat(on[None], 3, 0), np.repeat(w[None], 3, 0)
    actions = PlantAction(np.full(3, 18.0, f32), np.full(3, np.inf, f32), on3, w3)
    cands = Candidates(
        actions, np.zeros(3, f32), np.asarray([-1, 0, -1], np.int32), np.asarray([0, 16, 0], f32),
        np.asarray([1, 27, 1], f32), np.asarray([0, 0.5, 0], f32),
    )  # fmt: skip
    objective = Objective(
        np.asarray([1.0, 0.1, 1.0], f32), Limits(*np.asarray([0.999, 32.0, 1e9, 0.001], f32))
    )
    d = planner.decide(window, cands, env, objective, steps=6)
    assert int(d["j"]) == 1 and bool(d["accepted"])
    assert float(d["refined_cost"]) < float(d["cost"][0]) - 1e-3  # cost of staying at 18 °C
    assert float(d["theta"]) > 18.0


def test_nvp_predicts_direction_of_each_control(params, planner, trace):
    obs, act = trace
    with _eil(params, planner, obs, act) as eil:
        y, mask, _ = eil._nvp_window("row-1", planner, eil.store.latest("row-1"))
    nvp = planner.nvp
    i = nvp.index
    y, mask = jnp.asarray(y), jnp.asarray(mask)
    on, w = np.full(4, 30.0), np.full(4, 0.25)

    step = jax.jit(lambda c: nvp.step(y, mask, c)[0])

    def pred(sp=20.0, cap=np.inf, servers=on):
        return np.asarray(step(jnp.asarray(planner.encode(sp, cap, servers, w), jnp.float32)))

    base = pred()
    assert pred(sp=24.0)[i["cooling_power"]] < base[i["cooling_power"]]  # warmer supply
    assert pred(sp=24.0)[i["temp_0"]] > base[i["temp_0"]]  # ... warmer racks
    assert pred(cap=0.7 * base[i["it_power"]])[i["it_power"]] < base[i["it_power"]]  # cap
    assert pred(servers=np.full(4, 22.0))[i["it_power"]] < base[i["it_power"]]  # servers off


def test_infeasible_candidates_are_removed(params, planner, trace, monkeypatch):
    obs, act = trace
    seen = {}
    orig = planner.decide

    def spy(*args):
        out = orig(*args)
        seen["cost"], seen["viol"] = np.asarray(out["cost"]), np.asarray(out["viol"])
        return out

    monkeypatch.setattr(planner, "decide", spy)
    tight = float(np.max(obs["temps"][-1])) + 0.3  # warm supply air would break this limit
    with _eil(params, planner, obs, act) as eil:
        res = eil.act(goal="minimize_energy", constraints={"uptime": 0.999, "temp_max": tight})
    cost, viol = seen["cost"], seen["viol"]
    feas = viol <= 1e-9
    assert feas.any() and (~feas).any()
    assert res["num_feasible"] == int(feas.sum()) < res["candidates_scored"]
    assert res["feasible"]
    # the choice is the cheapest feasible one (or its refinement), and an infeasible one would
    # have been cheaper
    refined = res["forecast"]["refined"]
    if refined and refined.get("accepted"):
        assert res["expected_cost"] < float(cost[feas].min())
    else:
        assert res["expected_cost"] == pytest.approx(float(cost[feas].min()), abs=1e-6)
    assert float(cost[~feas].min()) < float(cost[feas].min())


def test_falls_back_to_plant_without_nvp_channels(params, planner, trace):
    obs, act = trace
    with EILOptimizer(sources=[_source(params)], planner=planner) as eil:
        for r in _readings(obs, act, with_cooling_load=False):
            eil.sense(r)
        res = eil.act(constraints=CONSTRAINTS)
    assert res["forecast"]["scorer"] == "plant"
    assert "cooling_load" in res["forecast"]["nvp_unavailable"]


def test_controlled_nvp_rejects_plain_checkpoint():
    with pytest.raises(ValueError, match="action-conditioned"):
        control.ControlledNVP(DEFAULT_CHECKPOINT)


def test_target_mask_ignores_control_channels():
    chans = ("a", "b", "u")
    cfg = NVPConfig(channels=chans, window=4, d_model=8, num_heads=2, num_layers=1)
    model = NVPModel(cfg, key=jax.random.key(0))
    phys = make_physics(None, chans)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 3))
    norm = fit_normalizer([x], phys.balance)
    y = jnp.asarray(rng.normal(size=(5, 4, 3)), jnp.float32)
    mask = jnp.ones((5, 4), bool)
    t = jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)
    tm = np.array([True, True, False])  # static (numpy), as in training
    pred = jax.jit(lambda t: loss_terms(model, phys, norm, y, mask, t, LossWeights(), tm)["pred"])
    a = pred(t)
    b = pred(t.at[:, 2].add(5.0))
    c = jax.jit(lambda t: loss_terms(model, phys, norm, y, mask, t, LossWeights())["pred"])(
        t.at[:, 2].add(5.0)
    )
    assert float(a) == pytest.approx(float(b)) and float(c) != pytest.approx(float(a))


def test_excited_series_layout(params):
    x, spec = control.excited_series(params, jax.random.key(1), 40, seed=1, burn_in=8)
    assert x.shape == (39, len(spec.channels))
    ci = [spec.channels.index(c) for c in spec.controls]
    assert np.all(x[:, ci[0]] >= 16) and np.all(x[:, ci[0]] <= 27)  # setpoint
    assert np.all(x[:, ci[1]] <= spec.cap_max_kw + 1e-6)  # no cap encoded as the fleet peak
    shares = x[:, ci[2 + spec.num_racks :]]
    assert np.allclose(shares.sum(1), 1.0, atol=1e-5)


def test_shared_prefix_rollout_equals_reference_and_decide_equals_score(params, planner, trace):
    """The planner's rollout (history keys/values computed once for all candidates) equals
    the plain step-by-step rollout; `decide` (one call) agrees with `score`."""
    obs, act = trace
    with _eil(params, planner, obs, act) as eil:
        y, mask, _ = eil._nvp_window("row-1", planner, eil.store.latest("row-1"))
    nvp = planner.nvp
    y, mask = jnp.asarray(y), jnp.asarray(mask)
    on, w = np.full((3, 4), 30.0, np.float32), np.full((3, 4), 0.25, np.float32)
    ctrls = jnp.asarray(planner.encode(np.array([17.0, 20.0, 24.0]), np.full(3, np.inf), on, w))

    def reference(c):  # every step a full forward of the window
        def body(carry, _):
            yy, mm = carry
            mean, var = nvp.step(yy, mm, c)
            return (jnp.concatenate([yy[1:], mean[None]]), jnp.concatenate([mm[1:], mm[-1:]])), (
                mean,
                var,
            )

        return jax.lax.scan(body, (y, mask), None, length=planner.horizon)[1]

    a = jax.jit(jax.vmap(reference))(ctrls)
    b = jax.jit(jax.vmap(lambda c: nvp.rollout(y, mask, c, planner.horizon)))(ctrls)
    for u, v in zip(a, b):
        np.testing.assert_allclose(np.asarray(v), np.asarray(u), rtol=2e-5, atol=1e-4)

    f32 = np.float32
    env = NVPEnv(*(f32(x) for x in (0.1, 0.1, 0.25, 3.09, 0.0)))
    wts, lim = np.asarray([1.0, 0.1, 1.0], f32), np.asarray([0.999, 32.0, 1e9, 0.001], f32)
    caps, irrev = np.full(3, np.inf, f32), np.zeros(3, f32)
    cands = Candidates(
        PlantAction(np.array([17.0, 20.0, 24.0], f32), caps, on, w), irrev,
        np.asarray([-1, 0, -1], np.int32), np.asarray([0, 16, 0], f32),
        np.asarray([1, 27, 1], f32), np.asarray([0, 0.5, 0], f32),
    )  # fmt: skip
    window, objective = Window(y, mask), Objective(wts, Limits(*lim))
    cost, viol, _, summ = planner.score(window, cands, env, objective)
    d = planner.decide(window, cands, env, objective, steps=6)  # the refinement test's compilation
    np.testing.assert_allclose(d["cost"], np.asarray(cost), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(d["viol"], np.asarray(viol), rtol=1e-5, atol=1e-6)
    feas = np.asarray(viol) <= 1e-9
    idx = int(np.argmin(np.where(feas, cost, np.inf)))
    assert int(d["idx"]) == idx
    assert int(d["j"]) == (1 if feas[1] else -1)  # the one continuous candidate
    if bool(d["accepted"]):
        assert float(d["refined_cost"]) < float(cost[idx])
    else:  # the decision's summary is the scored candidate's
        assert float(d["first"]["energy"]) == pytest.approx(
            float(summ["first"]["energy"][idx]), rel=1e-5
        )


def test_default_optimizer_plans_the_row_source_with_the_packaged_nvp(trace):
    """`EILOptimizer()` (planner="auto") knows the simulator row ('row-1') and plans it with
    the packaged NVP; the generic one-zone 'datacenter-01' stays with the plant model."""
    obs, act = trace
    with EILOptimizer() as eil:
        for r in _readings(obs, act):
            eil.sense(r)
        res = eil.act(constraints=CONSTRAINTS)
        assert res["forecast"]["scorer"] == "nvp" and res["forecast"]["method"] == "nvp-control"
        eil.sense(
            {"source": "datacenter-01", "metrics": {"cpu": 0.5, "power": 500.0, "temp": 60.0}}
        )
        assert eil.act(source="datacenter-01")["forecast"]["scorer"] == "plant"
    other = row_source("row-2", sim.make_params(servers_per_rack=20))
    with EILOptimizer(sources=[row_source(), other], planner=None) as eil:
        assert not eil._planners
    with EILOptimizer(sources=[row_source(), other]) as eil:
        assert set(eil._planners) == {"row-1"}  # 20 servers per rack: not the trained layout
