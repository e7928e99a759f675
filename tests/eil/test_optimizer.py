"""EILOptimizer: the blueprint example, act (scoring, constraints, refinement), prove."""

import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from idf_jax.eil import EILOptimizer, SourceConfig
from idf_jax.eil.calibration import _predict
from idf_jax.eil.candidates import for_decision
from idf_jax.eil.decision import Limits, Objective, score
from idf_jax.eil.goals import GOALS
from idf_jax.eil.ledger import KEY_ENV
from idf_jax.eil.plant import (
    KELVIN,
    PlantAction,
    PlantModel,
    PlantState,
    cop,
    predict,
    server_power,
)
from idf_jax.eil.plant_forecaster import PlantForecaster

READING = {"source": "datacenter-01", "metrics": {"cpu": 0.85, "power": 920, "temp": 76}}
_CLOCK = [time.time() - 1e6]  # readings stamped in the past: their horizons have passed


def _reading():
    """READING, stamped one interval after the previous stamped reading."""
    _CLOCK[0] += 1800.0
    return dict(READING, timestamp=_CLOCK[0], interval_s=900.0)


def _measure(eil, action, energy=1.0, temp=0.0):
    """Sense the reading that measures `action`'s prediction: the predicted energy times
    `energy`, the predicted temperature plus `temp`; returns the measured energy."""
    pred = action["predicted_state"]
    rec = eil.ledger.get("prediction", action["prediction_id"]).payload
    dt = rec["interval_s"]
    metrics = {"cpu": 0.85, "power": pred["energy"] * energy / dt, "temp": pred["temp"] + temp}
    ts = rec["reading_timestamp"] + dt
    eil.sense({"source": rec["source"], "timestamp": ts, "interval_s": dt, "metrics": metrics})
    return metrics["power"] * dt


def test_blueprint_example(capsys):
    from idf_jax.eil import EILOptimizer

    # --- the blueprint's "EIL Optimization API" example, as written ---
    # Initialize optimizer
    eil = EILOptimizer()

    # Submit telemetry
    eil.sense({"source": "datacenter-01", "metrics": {"cpu": 0.85, "power": 920, "temp": 76}})

    # Request optimal action
    action = eil.act(goal="minimize_energy", constraints={"uptime": 0.999})

    print(f"Optimal action: {action['type']}")
    print(f"Expected energy savings: {action['energy_savings']}")

    # Validate and mint proof
    proof_result = eil.prove(
        prediction_id=action["prediction_id"], actual_state={"energy": 3150.0, "entropy": 149.2}
    )

    if proof_result["valid"]:
        print(f"PFT minted: {proof_result['pft_amount']}")
    # --- end of example ---
    out = capsys.readouterr().out
    assert "Optimal action: " in out and "Expected energy savings: " in out
    # the outcome is measured, not reported: until the predicted interval has passed and its
    # reading is stored, the proof is pending (nothing minted, nothing written)
    assert proof_result["status"] == "pending"
    assert proof_result["valid"] is False and proof_result["pft_amount"] == 0.0
    assert action["feasible"] and action["predicted_state"]["uptime"] >= 0.999
    assert action["type"] in (
        "no_op",
        "cooling_setpoint",
        "power_capping",
        "server_on_off",
        "workload_migration",
    )
    assert eil.verify_ledger()["ok"] and eil.verify_ledger()["count"] == 1
    tmp = os.path.dirname(eil.db_path)
    eil.close()
    assert not os.path.exists(tmp)  # the scratch database is removed


@pytest.fixture(scope="module")
def eil():
    e = EILOptimizer()
    yield e
    e.close()


def test_prove_valid_formula_and_duplicate(eil):
    eil.sense(_reading())
    a = eil.act()
    pred = a["predicted_state"]
    n0 = len(eil.ledger)
    measured = _measure(eil, a, energy=1.01, temp=1.0)
    r = eil.prove(a["prediction_id"])
    assert r["valid"] and not r["duplicate"] and r["status"] == "proven"
    assert r["measured_state"]["energy"] == pytest.approx(measured)
    acc = 1 - abs(pred["energy"] - measured) / measured
    assert r["accuracy"] == pytest.approx(acc, rel=1e-9)
    rec = eil.ledger.get("prediction", a["prediction_id"]).payload
    savings = max(0.0, rec["baseline_energy"] - measured) / 3600
    assert r["verified_savings"] == pytest.approx(savings)
    assert r["pft_amount"] == pytest.approx(acc * (1 + savings), abs=1e-6)
    assert len(eil.ledger) == n0 + 1
    again = eil.prove(a["prediction_id"])
    assert again["duplicate"] and again["pft_amount"] == 0.0 and again["valid"]
    assert len(eil.ledger) == n0 + 1  # nothing new minted
    assert eil.verify_ledger()["ok"]


def test_prove_waits_for_the_measured_outcome(eil):
    eil.sense(_reading())
    a = eil.act()
    n0 = len(eil.ledger)
    r = eil.prove(a["prediction_id"], {"energy": a["predicted_state"]["energy"]})
    assert r["status"] == "pending" and not r["valid"] and r["pft_amount"] == 0.0
    assert "no reading" in r["reason"] and len(eil.ledger) == n0  # a claim alone mints nothing
    _measure(eil, a)
    r = eil.prove(a["prediction_id"])
    assert r["status"] == "proven" and r["pft_amount"] > 0 and len(eil.ledger) == n0 + 1
    # a prediction whose horizon lies in the future is pending whatever the store holds
    # (its own optimizer: readings of a source must arrive in time order)
    future = EILOptimizer()
    future.sense(dict(READING, timestamp=time.time() + 10.0))
    b = future.act()
    r = future.prove(b["prediction_id"])
    assert r["status"] == "pending" and "horizon" in r["reason"] and r["retry_after_s"] > 600
    future.close()


def test_prove_refuses_to_reward_a_claim_the_telemetry_contradicts(eil):
    eil.sense(_reading())
    a = eil.act()
    _measure(eil, a)  # the prediction was exact...
    r = eil.prove(a["prediction_id"], {"energy": a["predicted_state"]["energy"] * 0.8})
    # ...but the client claims 20 % less energy: flagged and recorded, nothing minted
    assert r["status"] == "contradicted" and r["claim_contradicted"]
    assert not r["valid"] and r["pft_amount"] == 0.0 and r["verified_savings"] == 0.0
    assert eil.ledger.get("proof", a["prediction_id"]).payload["claimed_state"]["energy"] > 0
    again = eil.prove(a["prediction_id"])  # the verdict is final
    assert again["duplicate"] and again["pft_amount"] == 0.0


def test_under_reporting_earns_no_extra_reward(eil):
    eil.sense(_reading())
    honest = eil.act()
    measured = _measure(eil, honest, energy=1.03)
    fair = eil.prove(honest["prediction_id"])
    eil.sense(_reading())
    cheat = eil.act()
    measured2 = _measure(eil, cheat, energy=1.03)
    # under-report by 4 % (within the 5 % tolerance, so not contradicted): were the claim
    # used, accuracy and the verified savings would both go up
    low = eil.prove(cheat["prediction_id"], {"energy": measured2 * 0.96})
    assert low["status"] == "proven" and not low["claim_contradicted"]
    assert low["measured_state"]["energy"] == pytest.approx(measured2)
    pred = cheat["predicted_state"]["energy"]
    acc = 1 - abs(pred - measured2) / measured2
    base = eil.ledger.get("prediction", cheat["prediction_id"]).payload["baseline_energy"]
    assert low["pft_amount"] == pytest.approx(
        acc * (1 + max(0.0, base - measured2) / 3600), abs=1e-6
    )
    assert fair["measured_state"]["energy"] == pytest.approx(measured)
    # a bigger under-report is contradicted and pays nothing
    eil.sense(_reading())
    c = eil.act()
    m3 = _measure(eil, c, energy=1.0)
    assert eil.prove(c["prediction_id"], {"energy": m3 * 0.5})["pft_amount"] == 0.0


def test_prove_invalid_outside_tolerance(eil):
    eil.sense(_reading())
    a = eil.act()
    e = a["predicted_state"]["energy"]
    _measure(eil, a, energy=1.2)
    r = eil.prove(a["prediction_id"])
    assert not r["valid"] and r["pft_amount"] == 0.0 and r["status"] == "invalid"
    # a verdict is final: a later, matching claim mints nothing
    r2 = eil.prove(a["prediction_id"], {"energy": e})
    assert r2["duplicate"] and not r2["valid"] and r2["pft_amount"] == 0.0
    eil.sense(_reading())
    b = eil.act()
    _measure(eil, b, temp=2.0)
    r3 = eil.prove(b["prediction_id"])
    assert not r3["valid"]  # temperature off by 2 K > 1.5 K tolerance


@pytest.mark.parametrize(
    "bad,match",
    [
        ({"entropy": 1.0}, "energy"),
        ({"energy": "a lot"}, "number"),
        ({"energy": math.nan}, "finite"),
        ({"energy": 1.0, "mood": 3}, "unknown"),
        ({"energy": -5.0}, "> 0"),
    ],
)
def test_prove_bad_input(eil, bad, match):
    eil.sense(_reading())
    a = eil.act()
    n = len(eil.ledger)
    with pytest.raises(ValueError, match=match):
        eil.prove(a["prediction_id"], bad)
    assert len(eil.ledger) == n


def test_prove_unknown_id(eil):
    with pytest.raises(ValueError, match="unknown prediction_id"):
        eil.prove("nope", {"energy": 1.0})


def test_act_bad_arguments(eil):
    eil.sense(_reading())
    with pytest.raises(ValueError, match="goal"):
        eil.act(goal="maximize_profit")
    with pytest.raises(ValueError, match="unknown constraints"):
        eil.act(constraints={"latency": 3})
    with pytest.raises(ValueError, match="uptime"):
        eil.act(constraints={"uptime": 1.5})
    with pytest.raises(ValueError, match="source"):
        eil.act(source="elsewhere")
    fresh = EILOptimizer()
    with pytest.raises(ValueError, match="sense"):
        fresh.act()
    fresh.close()


def test_temperature_constraint_is_respected(eil):
    eil.sense(_reading())
    free = eil.act()
    eil.sense(_reading())
    limit = free["predicted_state"]["temp_max"] - 3.0
    tight = eil.act(constraints={"uptime": 0.999, "temp_max": limit})
    if tight["feasible"]:
        assert tight["predicted_state"]["temp_max"] <= limit + 1e-3
    eil.sense(_reading())
    impossible = eil.act(constraints={"temp_max": -10.0})
    assert impossible["feasible"] is False and impossible["num_feasible"] == 0


def test_vmapped_scores_equal_single_evaluations(eil):
    eil.sense(_reading())
    src = "datacenter-01"
    _, state, cur = eil._current(src)
    scorer = PlantForecaster(
        eil._models[src], state, jnp.float32(1.0), jnp.float32(3.09), eil.horizon
    )
    cset = eil._candidates(src, state, cur)
    cands, types, params, irrev = cset
    w = jnp.asarray(GOALS["balanced"], jnp.float32)
    lim = Limits(*jnp.asarray((0.999, 85.0, 1e9, 0.001), jnp.float32))
    cost, viol, d_e, summ = jax.jit(score)(
        scorer, for_decision(cset, eil.setpoint_range, 1.0, 0.0, 0.0), Objective(w, lim)
    )
    base = jax.tree.map(lambda x: x[0], summ)
    assert cost.shape == (len(types),) and set(types) == {
        "no_op",
        "cooling_setpoint",
        "power_capping",
        "server_on_off",
        "workload_migration",
    }
    assert float(cost[0]) == pytest.approx(0.0, abs=1e-3)  # no_op against itself
    for i in (1, 5, 14, 20, 30):
        a = jax.tree.map(lambda x: x[i], cands)
        s = jax.jit(lambda f, a: f.evaluate(None, a))(scorer, a)
        tk = float(state.t_out) + KELVIN
        c = (
            float(w[0]) * float(s["e_h"] - base["e_h"]) / 3600
            + float(w[1]) * tk * float(s["s_h"] - base["s_h"]) / 3600
            + float(w[2]) * irrev[i]
        )
        assert float(cost[i]) == pytest.approx(c, rel=1e-4, abs=1e-3)


def test_file_backed_needs_key(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ValueError, match="signing key"):
        EILOptimizer(str(tmp_path / "e.sqlite"))
    e = EILOptimizer(str(tmp_path / "e.sqlite"), ledger_key=bytes(range(32)))
    e.sense(READING)
    a = e.act()
    e.close()
    # reopen: history and ledger persist, and verify with the same key
    e2 = EILOptimizer(str(tmp_path / "e.sqlite"), ledger_key=bytes(range(32)))
    assert e2.store.count("datacenter-01") == 1
    assert e2.ledger.get("prediction", a["prediction_id"]) is not None
    assert e2.verify_ledger()["ok"]
    e2.close()


def test_regime_from_sensed_history():
    e = EILOptimizer(sources=[SourceConfig("dc", interval_s=60)])
    rng = np.random.default_rng(0)
    for p in np.r_[np.full(40, 500.0), np.full(40, 800.0)] + rng.normal(0, 5, 80):
        e.sense({"source": "dc", "metrics": {"cpu": 0.5, "power": float(p), "temp": 50}})
    r = e.regime()
    # the default AR(1) cost locates a step to within one sample (conditional likelihood)
    (cp,) = r["change_points"]
    assert abs(cp - 40) <= 1 and r["current_regime"] == "high"
    e.close()


# ---------------------------------------------------------------- the plant model
def _plant():
    m = PlantModel(
        num_racks=3,
        servers_per_rack=10,
        dt=300.0,
        heat_capacity_kj_per_k=500.0,
        ua_kw_per_k=0.5,
        row_conductance_kw_per_k=0.1,
        envelope_kw_per_k=0.02,
        cooling_capacity_kw=100.0,
        fan_kw=0.5,
    )
    s = PlantState(jnp.array([25.0, 27.0, 30.0]), jnp.float32(0.5), jnp.float32(30.0))
    a = PlantAction(
        jnp.float32(20.0),
        jnp.float32(jnp.inf),
        jnp.array([10.0, 10.0, 10.0]),
        jnp.array([0.5, 0.3, 0.2]),
    )
    return m, s, a


def test_plant_known_answers():
    m, s, a = _plant()
    assert float(server_power(m, 0.0)) == pytest.approx(m.p_idle_kw)
    assert float(server_power(m, 1.0)) == pytest.approx(m.p_peak_kw, rel=1e-5)
    assert float(cop(m, jnp.float32(10.0), jnp.float32(20.0))) == m.cop_free
    out = _predict(m, s, a)
    u = np.array([0.5 * 30 * 0.5 / 10, 0.5 * 30 * 0.3 / 10, 0.5 * 30 * 0.2 / 10])
    p_rack = 10 * (m.p_idle_kw + (m.p_peak_kw - m.p_idle_kw) * (2 * u - u**1.4))
    assert float(out["power_it"]) == pytest.approx(p_rack.sum(), rel=1e-5)
    T = np.array([25.0, 27.0, 30.0])
    q = m.ua_kw_per_k * (T - 20.0)
    # energy balance of the row: C sum dT = dt (P_IT - Q - g_env sum (T - T_out))
    lhs = m.heat_capacity_kj_per_k * float(jnp.sum(out["temps"] - s.temps))
    rhs = m.dt * (p_rack.sum() - q.sum() - m.envelope_kw_per_k * (T - 30.0).sum())
    assert lhs == pytest.approx(rhs, rel=1e-4)
    assert float(out["energy"]) == pytest.approx(float(out["power"]) * m.dt, rel=1e-6)
    assert float(out["entropy_gen"]) >= 0
    assert float(out["unserved"]) == 0.0 and 0.999 < float(out["uptime"]) <= 1.0
    capped = _predict(m, s, a._replace(power_cap=jnp.float32(0.9 * float(out["power_it"]))))
    assert float(capped["power_it"]) == pytest.approx(0.9 * float(out["power_it"]), rel=1e-4)
    assert float(capped["unserved"]) > 0


def test_plant_jit_vmap_grad():
    m, s, a = _plant()
    f = jax.jit(lambda sp: predict(m, s, a._replace(setpoint=sp))["energy"])
    sps = jnp.linspace(16.0, 27.0, 7)
    batched = jax.vmap(f)(sps)
    assert np.allclose(batched, [f(x) for x in sps], rtol=1e-5)
    g = jax.grad(f)(jnp.float32(22.0))
    eps = 1e-2
    fd = (f(jnp.float32(22.0 + eps)) - f(jnp.float32(22.0 - eps))) / (2 * eps)
    assert np.isfinite(g) and float(g) == pytest.approx(float(fd), rel=2e-2, abs=1.0)


def test_a_predictor_for_other_units_or_interval_is_refused():
    import idf_jax.nvp as nvp

    # the packaged rack checkpoint: one server in W / degF every 5 minutes
    with pytest.raises(ValueError) as e:
        EILOptimizer(predictor=nvp.NVPPredictor())
    msg = str(e.value)
    assert "source 'datacenter-01'" in msg
    assert "'power' is in W, source 'datacenter-01' reports kW" in msg
    assert "'temp' is in degF" in msg and "300 s" in msg and "900 s" in msg


def test_nvp_predictor_drives_the_exogenous_forecast(tmp_path):
    import shutil

    import idf_jax.nvp as nvp
    from idf_jax.nvp import checkpoint
    from idf_jax.nvp.metadata import SeriesMeta
    from idf_jax.nvp.predictor import DEFAULT_CHECKPOINT

    # the same weights declared for the source's units and interval: the plumbing under test
    # is the forecast path (with the setpoint of the action as the control input), not the
    # model's fit
    path = str(tmp_path / "kw.ckpt")
    shutil.copy(DEFAULT_CHECKPOINT, path)
    units = {"cpu": "fraction", "power": "kW", "temp": "degC", "setpoint": "degC"}
    chans = ("cpu", "power", "temp", "setpoint")
    checkpoint.rewrite_series(path, SeriesMeta(chans, units, 900.0, controls=("setpoint",)))
    pred = nvp.NVPPredictor(path)
    e = EILOptimizer(predictor=pred)
    hist = [
        {"cpu": 0.75, "power": 850, "temp": 72},
        {"cpu": 0.78, "power": 865, "temp": 73},
        {"cpu": 0.81, "power": 880, "temp": 74},
    ]
    for m in hist[: max(1, pred.min_history)]:
        e.sense({"source": "datacenter-01", "metrics": m})
    for m in hist:
        e.sense({"source": "datacenter-01", "metrics": m})
    applied = float(e._current("datacenter-01")[2].setpoint)  # the operating point's °C
    a = e.act()
    assert a["forecast"]["method"] == "nvp"
    expect = pred.predict_next(
        telemetry_history=[
            {c: h.metrics[c] for c in pred.channels} for h in e.store.history("datacenter-01")
        ],
        controls={"setpoint": applied},
    )
    assert a["forecast"]["demand"] == pytest.approx(min(max(expect["cpu"], 0), 1), rel=1e-5)
    assert e.ledger.get("prediction", a["prediction_id"]).payload["forecast_method"] == "nvp"
    e.close()
    with pytest.raises(ValueError, match="predict_next"):
        EILOptimizer(predictor=object())


def test_a_candidate_equal_to_the_current_point_is_labelled_no_op():
    from idf_jax.eil.candidates import same_point as _same_point
    from idf_jax.eil.plant import PlantAction

    f = np.float32
    cur = PlantAction(f(20.0), f(np.inf), np.full(4, 30.0, f), np.full(4, 0.25, f))
    assert _same_point(cur, cur._replace(weights=np.full(4, 2.0, f)))  # same shares, rescaled
    assert _same_point(cur, cur._replace(setpoint=f(20.00001)))
    assert not _same_point(cur, cur._replace(setpoint=f(20.5)))
    assert not _same_point(cur, cur._replace(power_cap=f(30.0)))
    assert not _same_point(cur, cur._replace(servers_on=np.asarray([30, 30, 30, 29], f)))
    assert not _same_point(cur, cur._replace(weights=np.asarray([0.3, 0.2, 0.25, 0.25], f)))
