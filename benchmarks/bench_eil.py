"""EIL decision latency: sense -> act, and sense -> act -> prove, p50/p99 over many decisions.

The decisions are made in a closed loop on the datacenter simulator's row preset (4 racks x 40
servers, 15-min steps; the simulator step itself is not timed), two days of readings sensed
first. Side by side in one process:

- ``nvp``: EILOptimizer.act with the packaged action-conditioned NVP (`NVPPlanner`, what
  ``planner="auto"`` gives this source): one jitted call (`NVPPlanner.decide`) scores all
  candidates (vmapped 4-step rollouts; the history's attention keys and values computed once
  for all of them), removes the infeasible ones and refines the best setpoint / cap candidate
  by 4 Adam steps through the NVP (forward-mode derivative, cosine-decayed rate);
- ``loop``: the blueprint's reference loop — the same jitted NVP scoring called once per
  candidate from Python (``for action in candidate_actions: nvp.predict(state, action)``), no
  refinement, to show what vectorising the scoring buys;
- ``plant``: EILOptimizer.act with the plant-model scorer (``planner=None``; the fallback
  for sources without an NVP);
- change-point detection on 2000 samples: idf_jax.eil.pelt vs ruptures.Pelt (jump=5),
  same penalty.

Run: PYTHONPATH=. python benchmarks/bench_eil.py [--decisions 200]
Target (issue 7): sense -> act p99 < 250 ms on a 2-core CPU, aim 20 ms. Wall-clock
percentiles depend on what else runs on the machine; the CPU-time row (process_time,
all threads) is the load-independent cost of one decision.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from idf_jax.eil import EILOptimizer, row_source
from idf_jax.eil.candidates import for_decision
from idf_jax.eil.decision import Limits, Objective
from idf_jax.eil.planner import NVPEnv, NVPPlanner, Window
from idf_jax.eil.regime import default_penalty, pelt
from idf_jax.nvp import simulator as sim

CONSTRAINTS = {"uptime": 0.999, "temp_max": 32.0}


def source(params):
    return row_source("row-1", params, demand_sigma=0.097, setpoint=18.0, temp_max=32.0)


def reading(obs, action, t):
    temps = np.asarray(obs["temps"], float)
    m = {
        "cpu": float(obs["cpu"]), "power": float(obs["power"] + obs["cooling_power"]),
        "it_power": float(obs["power"]), "cooling_power": float(obs["cooling_power"]),
        "cooling_load": float(obs["cooling"]), "temp": float(temps.mean()),
        "outside_temp": float(obs["t_out"]), "setpoint": float(action.setpoint),
        "servers_on": float(np.sum(action.servers_on)), "demand": float(obs["demand"]),
    }  # fmt: skip
    m.update({f"temp_{i}": float(x) for i, x in enumerate(temps)})
    return {"source": "row-1", "metrics": m, "interval_s": 900.0, "timestamp": 900.0 * t}


def to_action(pa):
    f = jnp.float32
    return sim.Action(f(pa["setpoint"]), f(pa["power_cap"]), jnp.asarray(pa["servers_on"], f),
                      jnp.asarray(pa["weights"], f))  # fmt: skip


def pct(x, q):
    return 1e3 * float(np.percentile(np.asarray(x), q))


def run(eil, params, n, loop_planner=None):
    step = jax.jit(lambda s, a, k: sim.step(params, s, a, k))
    state, action = sim.init_state(params), sim.default_action(params)
    keys = jax.random.split(jax.random.key(0), 192 + n + 1)
    for t in range(192):
        state, obs = step(state, action, keys[t])
        eil.sense(reading(obs, action, t))
    t0 = time.perf_counter()
    a = eil.act(goal="minimize_energy", constraints=CONSTRAINTS)
    first = time.perf_counter() - t0
    sense_act, full, cpu, loop = [], [], [], []
    prev = None  # the prediction whose outcome the next reading measures
    for i in range(n):
        t = 192 + i
        r = reading(obs, action, t)
        c, t0 = time.process_time(), time.perf_counter()
        eil.sense(r)
        a = eil.act(goal="minimize_energy", constraints=CONSTRAINTS)
        t1 = time.perf_counter()
        cpu.append(time.process_time() - c)
        action = to_action(a["plant_action"])
        state, obs = step(state, action, keys[t])
        t2 = time.perf_counter()
        if prev is not None:  # judged on the reading sensed this iteration (the store's)
            eil.prove(prev)
        prev = a["prediction_id"]
        sense_act.append(t1 - t0)
        full.append(t1 - t0 + time.perf_counter() - t2)
        if loop_planner is not None:  # blueprint-style: one NVP scoring call per candidate
            t0 = time.perf_counter()
            _, st, cur = eil._current("row-1")
            y, mask, _ = eil._nvp_window("row-1", loop_planner, eil.store.latest("row-1"))
            cset = eil._candidates("row-1", st, cur)
            cands = for_decision(cset, eil.setpoint_range, 1.0, 0.0, 0.0)
            f = jnp.float32
            window = Window(jnp.asarray(y), jnp.asarray(mask))
            env = NVPEnv(f(0.097), f(0.1), f(0.25), f(3.09), f(0.0))
            objective = Objective(jnp.asarray([1.0, 0.1, 1.0], f),
                                  Limits(*jnp.asarray([0.999, 32.0, 1e9, 0.001], f)))  # fmt: skip
            costs = []
            for k in range(len(cset.types)):
                one = jax.tree.map(lambda x: jnp.asarray(x[k : k + 1]), cands)
                out = loop_planner.score(window, one, env, objective)
                costs.append(float(out.summary["e_h"][0]) + float(cset.irrev[k]))
            int(np.argmin(costs))
            loop.append(time.perf_counter() - t0)
    return dict(first=first, sense_act=sense_act, full=full, cpu=cpu, loop=loop,
                k=a["candidates_scored"], scorer=a["forecast"]["scorer"])  # fmt: skip


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--decisions", type=int, default=200)
    args = ap.parse_args()
    params = sim.make_params(start_hour=7 * 24.0)
    planner = NVPPlanner()
    with EILOptimizer(sources=[source(params)], planner=planner) as eil:
        nvp = run(eil, params, args.decisions, loop_planner=planner)
    with EILOptimizer(sources=[source(params)], horizon=8, planner=None) as eil:
        plant = run(eil, params, args.decisions)
    print(
        f"decisions: {args.decisions}, candidates per decision: {nvp['k']}; first decision "
        f"(jit compilation): nvp {nvp['first']:.1f} s, plant {plant['first']:.1f} s"
    )
    print("| path | p50 (ms) | p99 (ms) |")
    print("|---|---|---|")
    rows = [
        ("sense -> act, NVP (one vmapped call + Adam through the NVP)", nvp["sense_act"]),
        ("sense -> act, NVP, CPU time of this process (all threads)", nvp["cpu"]),
        ("sense -> act -> prove, NVP (ledger writes)", nvp["full"]),
        ("sense -> score with the NVP in a Python loop (blueprint style)", nvp["loop"]),
        ("sense -> act, plant-model scorer (fallback)", plant["sense_act"]),
    ]
    for name, xs in rows:
        print(f"| {name} | {pct(xs, 50):.1f} | {pct(xs, 99):.1f} |")
    print(
        f"ratio loop / vmapped (p50): {np.median(nvp['loop']) / np.median(nvp['sense_act']):.2f}x"
    )
    p99 = pct(nvp["sense_act"], 99)
    print(
        f"p99 sense->act (NVP) target < 250 ms: {'met' if p99 < 250 else 'NOT met'}; "
        f"aim 20 ms: {'met' if p99 < 20 else 'not met'}"
    )
    assert nvp["scorer"] == "nvp" and math.isfinite(p99)

    warnings.filterwarnings("ignore")
    import ruptures as rpt

    rng = np.random.default_rng(0)
    y = np.repeat(rng.normal(0, 3, 20), 100) + rng.normal(size=2000)
    pen = default_penalty(y)
    t = time.perf_counter()
    ours = pelt(y, pen, min_size=5)
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    ref = rpt.Pelt(model="l2", min_size=5, jump=5).fit(y).predict(pen=pen)
    t_ref = time.perf_counter() - t
    print(
        f"PELT n=2000: ours {1e3 * t_ours:.0f} ms ({len(ours) - 1} cps), ruptures jump=5 "
        f"{1e3 * t_ref:.0f} ms ({len(ref) - 1} cps): {t_ref / t_ours:.1f}x"
    )


if __name__ == "__main__":
    main()
