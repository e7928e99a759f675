"""EIL decision latency: sense -> act, and sense -> act -> prove, p50/p99 over many decisions.

Side by side in one process:
- ``vmapped``: EILOptimizer.act as shipped (all candidates in one jitted, vmapped call);
- ``loop``: the blueprint's reference loop — the same forecaster (jitted), called once per
  candidate from Python (``for action in candidate_actions: nvp.predict(state, action)``),
  same candidates, no refinement, to show what vectorising the scoring buys;
- change-point detection on 2000 samples: idf_jax.eil.pelt vs ruptures.Pelt (jump=5),
  same penalty.

Run: PYTHONPATH=. python benchmarks/bench_eil.py [--decisions 200]
Target (issue 7): sense -> act p99 < 250 ms on a 2-core CPU, aim 20 ms. Wall-clock
percentiles depend on what else runs on the machine; the CPU-time row (process_time,
all threads) is the load-independent cost of one decision.
"""

from __future__ import annotations

import argparse
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from idf_jax.eil import EILOptimizer
from idf_jax.eil.optimizer import _summary
from idf_jax.eil.regime import default_penalty, pelt


def reading(rng):
    return {"source": "datacenter-01",
            "metrics": {"cpu": float(rng.uniform(0.3, 0.8)), "power": float(rng.uniform(600, 950)),
                        "temp": float(rng.uniform(55, 75)),
                        "outside_temp": float(rng.uniform(5, 30))}}


def pct(x, q):
    return 1e3 * float(np.percentile(np.asarray(x), q))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--decisions", type=int, default=200)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    eil = EILOptimizer()
    t0 = time.perf_counter()
    eil.sense(reading(rng))
    a = eil.act(goal="minimize_energy", constraints={"uptime": 0.999})
    eil.prove(a["prediction_id"], {"energy": a["predicted_state"]["energy"]})
    print(f"first decision (includes jit compilation): {time.perf_counter() - t0:.1f} s")

    sense_act, full, loop, cpu = [], [], [], []
    src = "datacenter-01"
    scorer = eil._scorers[src]
    _, state, cur = eil._current(src)
    jax.block_until_ready(_summary(scorer, state, cur, jnp.float32(1.0), jnp.float32(3.09)))
    for _ in range(args.decisions):
        r = reading(rng)
        c = time.process_time()
        t = time.perf_counter()
        eil.sense(r)
        a = eil.act(goal="minimize_energy", constraints={"uptime": 0.999})
        t1 = time.perf_counter()
        cpu.append(time.process_time() - c)
        eil.prove(a["prediction_id"], {"energy": a["predicted_state"]["energy"] * 1.01})
        t2 = time.perf_counter()
        sense_act.append(t1 - t)
        full.append(t2 - t)
        # reference loop: one forecaster call per candidate
        t = time.perf_counter()
        eil.sense(r)
        _, state, cur = eil._current(src)
        cands, types, _, irrev = eil._candidates(src, state, cur)
        ratio = jnp.float32(1.0)
        costs = []
        for i in range(len(types)):
            ai = jax.tree.map(lambda x: x[i], cands)
            s = _summary(scorer, state, ai, ratio, jnp.float32(3.09))
            costs.append(float(s["e_h"]) + float(irrev[i]))
        int(np.argmin(costs))
        loop.append(time.perf_counter() - t)
    k = len(types)
    print(f"decisions: {args.decisions}, candidates per decision: {k}")
    print("| path | p50 (ms) | p99 (ms) |")
    print("|---|---|---|")
    print(f"| sense -> act (vmapped, + Adam refinement) | {pct(sense_act, 50):.1f} | "
          f"{pct(sense_act, 99):.1f} |")
    print(f"| sense -> act, CPU time of this process (all threads) | {pct(cpu, 50):.1f} | "
          f"{pct(cpu, 99):.1f} |")
    print(f"| sense -> act -> prove (ledger writes) | {pct(full, 50):.1f} | {pct(full, 99):.1f} |")
    print(f"| sense -> score in a Python loop (blueprint style) | {pct(loop, 50):.1f} | "
          f"{pct(loop, 99):.1f} |")
    print(f"ratio loop / vmapped (p50): {np.median(loop) / np.median(sense_act):.2f}x")
    print(f"p99 sense->act target < 250 ms: {'met' if pct(sense_act, 99) < 250 else 'NOT met'}; "
          f"aim 20 ms: {'met' if pct(sense_act, 99) < 20 else 'not met'}")

    warnings.filterwarnings("ignore")
    import ruptures as rpt

    y = np.repeat(rng.normal(0, 3, 20), 100) + rng.normal(size=2000)
    pen = default_penalty(y)
    t = time.perf_counter()
    ours = pelt(y, pen, min_size=5)
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    ref = rpt.Pelt(model="l2", min_size=5, jump=5).fit(y).predict(pen=pen)
    t_ref = time.perf_counter() - t
    print(f"PELT n=2000: ours {1e3 * t_ours:.0f} ms ({len(ours) - 1} cps), ruptures jump=5 "
          f"{1e3 * t_ref:.0f} ms ({len(ref) - 1} cps): {t_ref / t_ours:.1f}x")
    eil.close()


if __name__ == "__main__":
    main()
