"""Enterprise capsule: datacenter model, discrete annealer vs the exact MILP optimum."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import capsules
import idf_jax as idf
from capsules import enterprise as ent

SERVERS = [
    {"name": "a", "idle_power_kw": 0.10, "max_power_kw": 0.30, "service_rate": 500.0},
    {"name": "b", "idle_power_kw": 0.12, "max_power_kw": 0.35, "service_rate": 700.0},
    {"name": "c", "idle_power_kw": 0.08, "max_power_kw": 0.25, "service_rate": 400.0},
    {"name": "d", "idle_power_kw": 0.15, "max_power_kw": 0.45, "service_rate": 900.0},
]
RATES = [120.0, 200.0, 90.0, 250.0, 60.0, 150.0]


def small_config(**over):
    cfg = {
        "servers": SERVERS,
        "workloads": [{"name": f"w{i}", "request_rate": r} for i, r in enumerate(RATES)],
        "recirculation": 2.0,
        "constraints": {"uptime": 0.999, "latency_max": 20.0},
    }
    cfg.update(over)
    return cfg


def test_registered():
    assert "enterprise.datacenter" in capsules.available()
    assert capsules.available()["enterprise.datacenter"]


def test_cop_curve_known_values():
    # Moore et al. 2005: COP(T) = 0.0068 T^2 + 0.0008 T + 0.458
    assert math.isclose(ent.cop(25.0), 0.0068 * 625 + 0.02 + 0.458)
    assert math.isclose(ent.cop(15.0), 1.53 + 0.012 + 0.458)


def test_single_server_hand_computed():
    """One workload on one server: every term by hand."""
    cfg = {
        "servers": [
            {"name": "s", "idle_power_kw": 0.2, "max_power_kw": 0.5, "service_rate": 100.0}
        ],
        "workloads": [{"name": "w", "request_rate": 40.0}],
        "server_availability": 0.999,
        "recirculation": 3.0,
        "constraints": {"uptime": 0.99, "latency_max": 50.0},
    }
    m = ent.parse_config(cfg)
    x = jnp.ones((1, 1), jnp.int32)
    p_it = 0.2 + 0.3 * 40.0 / 100.0  # 0.32 kW
    rise = 3.0 * p_it  # 0.96 degC
    t_star = 15.0 + 0.5 * math.floor((27.0 - rise - 15.0) / 0.5)  # warmest grid setpoint: 26.0
    expected = p_it * (1.0 + 1.0 / ent.cop(t_star))
    np.testing.assert_allclose(float(ent.discrete_energy(m, x)), expected, rtol=1e-6)
    dec = ent.decode_placement(m, np.ones((1, 1)))
    assert dec["setpoint_c"] == t_star
    np.testing.assert_allclose(dec["latency_ms"]["s"], 1000.0 / (100.0 - 40.0), rtol=1e-6)
    np.testing.assert_allclose(dec["uptime"], 0.999, rtol=1e-6)
    assert dec["feasible"]
    # the empty placement violates uptime: penalty_kw * (v + v^2), v = U / (1 - U)
    v = 0.99 / 0.01
    e0 = float(ent.discrete_energy(m, jnp.zeros((1, 1), jnp.int32)))
    np.testing.assert_allclose(e0, float(m.penalty_kw) * (v + v * v), rtol=1e-4)


def test_relaxed_energy_matches_discrete_and_is_jax_safe():
    cap = ent.datacenter(small_config())
    m = cap.model
    x = np.array(jax.random.bernoulli(jax.random.key(0), 0.5, (6, 4)), np.int32)
    x[:, 3] = 1  # everything on d as well: feasible-ish placement
    t = float(ent.best_setpoint(m, jnp.asarray(x, jnp.float32)))
    # logits +-30 give sigmoid 1 - 1e-13 (0/1 in float32); setpoint logit hitting grid value t
    frac = (t - 15.0) / 12.0
    state = {
        "logits": jnp.asarray(np.where(x == 1, 30.0, -30.0), jnp.float32),
        "setpoint": jnp.asarray(math.log(frac / (1 - frac)), jnp.float32),
    }
    np.testing.assert_allclose(
        float(cap.energy_fn(state)), float(ent.discrete_energy(m, jnp.asarray(x))), rtol=1e-5
    )
    batch = cap.init(jax.random.key(1), 5)
    e = jax.jit(jax.vmap(cap.energy_fn))(batch)
    g = jax.vmap(jax.grad(cap.energy_fn))(batch)
    assert e.shape == (5,) and bool(jnp.all(jnp.isfinite(e)))
    assert all(bool(jnp.all(jnp.isfinite(l))) for l in jax.tree.leaves(g))
    dec = cap.decode(jax.tree.map(lambda a: a[0], batch))
    assert set(dec["placement"]) == {f"w{i}" for i in range(6)}
    # the relaxation is sampleable by a Langevin sampler driven by idf.sample
    tr = idf.sample(idf.mala(cap.energy_fn, 1e-3, temperature=0.05), jax.random.key(2), batch, 20)
    assert tr.energies.shape == (5, 20) and not bool(jnp.any(tr.stats["diverged"]))


def test_placement_sampler_targets_boltzmann():
    """Metropolis over 0/1 placements (1 workload, 2 servers) vs exact enumeration."""
    cfg = {
        "servers": [
            {"name": "s0", "idle_power_kw": 0.10, "max_power_kw": 0.30, "service_rate": 200.0},
            {"name": "s1", "idle_power_kw": 0.15, "max_power_kw": 0.30, "service_rate": 200.0},
        ],
        "workloads": [{"name": "w", "request_rate": 50.0}],
        "constraints": {"uptime": 0.9, "latency_max": 100.0},
    }
    m = ent.parse_config(cfg)
    temp = 0.05
    states = [np.array(s, np.int32).reshape(1, 2) for s in itertools.product([0, 1], repeat=2)]
    energies = np.array([float(ent.discrete_energy(m, jnp.asarray(s))) for s in states])
    p = np.exp(-(energies - energies.min()) / temp)
    p /= p.sum()
    sampler = ent.placement_sampler(m, temp)
    chains, steps = 16, 2000
    x0 = jnp.ones((chains, 1, 2), jnp.int32)
    tr = idf.sample(sampler, jax.random.key(3), x0, steps, burn_in=200, thin=2)
    pos = np.asarray(tr.positions).reshape(-1, 2)
    idx = pos[:, 0] * 2 + pos[:, 1]
    freq = np.bincount(idx, minlength=4) / len(idx)
    # 14,400 correlated draws; single-site chain with tau <~ 5: SE <~ 0.01, tolerance ~ 4 SE
    np.testing.assert_allclose(freq, p, atol=0.04)
    assert np.sum(p > 0.1) >= 2  # not trivial: the mass is spread over several placements


@pytest.fixture(scope="module")
def optimiser():
    return ent.EnterpriseDiffusionCapsule(num_chains=32, num_steps=2500, seed=0)


@pytest.mark.parametrize(
    "over",
    [
        {},  # inlet temperature and uptime bind
        {"recirculation": 0.2, "constraints": {"uptime": 0.99, "latency_max": 8.0}},
    ],
)
def test_optimum_within_one_percent_of_milp(optimiser, over):
    cfg = small_config(**over)
    ref = ent.milp_reference(cfg)
    assert ref["status"] == "optimal"
    current = dict(cfg, placement={f"w{i}": ["b", "d"] for i in range(6)}, setpoint_c=18.0)
    res = optimiser.optimize_infrastructure(current, goal="minimize_energy")
    best = res["optimal_config"]
    assert best["feasible"]
    assert best["facility_power_kw"] <= 1.01 * ref["facility_power_kw"]
    # and not below the exact optimum (it is a feasible point of the same model)
    assert best["facility_power_kw"] >= ref["facility_power_kw"] * (1 - 1e-5)
    lp = ent.milp_reference(cfg, relax=True)
    assert lp["facility_power_kw"] <= ref["facility_power_kw"] + 1e-9
    # savings are consistent with the current configuration
    cur = res["current_config"]["facility_power_kw"]
    np.testing.assert_allclose(res["energy_saved_kw"], cur - best["facility_power_kw"], rtol=1e-9)
    np.testing.assert_allclose(res["energy_saved_pct"], 100 * res["energy_saved_kw"] / cur)
    assert set(res["binding_constraints"]) <= {"uptime", "latency_max", "inlet_temperature"}
    assert set(best) >= {"placement", "active_servers", "setpoint_c"}


def test_binding_constraints_reported(optimiser):
    cfg = small_config()
    current = dict(cfg, placement={f"w{i}": ["b", "d"] for i in range(6)})
    res = optimiser.optimize_infrastructure(current)
    # uptime 0.999 with a = 0.99 forces two replicas per workload; the recirculation of
    # 2 degC/kW keeps the setpoint below the CRAC maximum of 27 degC
    assert "uptime" in res["binding_constraints"]
    assert "inlet_temperature" in res["binding_constraints"]
    assert all(len(v) == 2 for v in res["optimal_config"]["placement"].values())
    assert res["optimal_config"]["setpoint_c"] < 27.0


@pytest.mark.parametrize(
    "cfg, match",
    [
        ({"workloads": [{"name": "w", "request_rate": 1.0}]}, "servers"),
        (
            small_config(servers=[{"name": "a", "idle_power_kw": 0.1, "max_power_kw": 0.3}]),
            "service_rate",
        ),
        (small_config(servers=[dict(SERVERS[0], idle_power_kw=-1.0)]), "idle_power_kw"),
        (small_config(servers=[dict(SERVERS[0], max_power_kw=0.05)]), "max_power_kw"),
        (small_config(constraints={"uptime": 0.999999999}), "unreachable"),
        (small_config(constraints={"uptime": 1.5}), "uptime"),
        (small_config(constraints={"throughput": 3}), "unknown constraints"),
        (small_config(workloads=[{"name": "w", "request_rate": 5000.0}]), "exceeds"),
        (small_config(recirculation=[[1.0, 2.0]]), "recirculation"),
        (small_config(colour="red"), "unknown fields"),
        (small_config(setpoint_min_c=30.0, setpoint_max_c=32.0), "setpoint_min_c"),
        ("not a dict", "dict"),
    ],
)
def test_bad_configs_raise(cfg, match):
    with pytest.raises(ValueError, match=match):
        ent.datacenter(cfg)


def test_facade_bad_arguments(optimiser):
    with pytest.raises(ValueError, match="goal"):
        optimiser.optimize_infrastructure(small_config(), goal="maximize_fun")
    with pytest.raises(ValueError, match="placement"):
        optimiser.optimize_infrastructure(small_config())
    with pytest.raises(ValueError, match="unknown server"):
        optimiser.optimize_infrastructure(
            dict(small_config(), placement={f"w{i}": ["zz"] for i in range(6)})
        )
