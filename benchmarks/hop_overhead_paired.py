"""Async hop loop bookkeeping: this tree's idf_jax against an older copy, paired in one process.

The older copy is a `git archive` of idf_jax renamed to a package `idf_main` (absolute
imports rewritten), with its capsules as `capsules_main` and experiments/global_search.py
as `global_search_main.py`, in OLD_DIR (constraint objects must come from the same copy):

    mkdir -p /tmp/hopmain && git archive <sha> idf_jax capsules experiments | tar -x -C /tmp/hopmain
    cd /tmp/hopmain && mv idf_jax idf_main && mv capsules capsules_main
    R='s/\\bidf_jax\\b/idf_main/g; s/\\bcapsules\\b/capsules_main/g'
    grep -rl 'idf_jax\\|capsules' idf_main capsules_main | xargs sed -i -E "$R"
    sed -E "$R" experiments/global_search.py > global_search_main.py; cd -
    PYTHONPATH=$PWD python benchmarks/hop_overhead_paired.py /tmp/hopmain lj26:0,1,2 ab13:0,1

Every instance/seed runs the default `sample_equilibrium` call of bench_global.py (128
chains, budget 100 000 per chain, stop at the target) with both copies, interleaved, and
checks best_energy, num_evaluations, hit_evaluations and first_hit_hop for exact
equality; the wall time to the first hit (and the whole wall) is reported per copy. A
warm-up call of each copy on the first instance (seed 1000) compiles first.
"""

import importlib
import os
import sys
import time

import jax

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "experiments"))


def run(idf, gs, name, seed, chains=128, budget=100_000):
    cap = gs.capsule_for(name)
    known = gs.KNOWN[name]
    k_init, k_run = jax.random.split(jax.random.key(seed))
    t0 = time.perf_counter()
    res = idf.sample_equilibrium(
        cap.energy_fn,
        k_run,
        cap.init(k_init, chains),
        num_steps=budget,
        moves=cap.moves,
        constraints=list(cap.constraints) or None,
        project=cap.project,
        target=known,
        target_tol=gs.tolerance(name, known),
        stop_at_target=True,
    )
    jax.block_until_ready(res.best_energy)
    wall = time.perf_counter() - t0
    keys = ("best_energy", "num_evaluations", "hit_evaluations", "first_hit_hop")
    out = {k: float(getattr(res, k)) for k in keys}
    out["ttt"] = float(res.time_to_target)
    out["wall"] = wall
    return out


def main():
    sys.path.insert(0, sys.argv[1])
    old = (importlib.import_module("idf_main"), importlib.import_module("global_search_main"))
    new = (importlib.import_module("idf_jax"), importlib.import_module("global_search"))
    jobs = []
    for arg in sys.argv[2:]:
        name, seeds = arg.split(":")
        jobs += [(name, int(s)) for s in seeds.split(",")]
    warmed = set()
    same_all = True
    for name, seed in jobs:
        if name not in warmed:
            for tag, idf in (("old", old), ("new", new)):
                t = time.perf_counter()
                run(*idf, name, 1000)
                print(f"warm-up {name} {tag}: {time.perf_counter() - t:.1f} s", flush=True)
            warmed.add(name)
        r = {}
        for tag, idf in (
            (("old", old), ("new", new)) if seed % 2 == 0 else (("new", new), ("old", old))
        ):
            r[tag] = run(*idf, name, seed)
        same = all(
            r["old"][k] == r["new"][k]
            for k in ("best_energy", "num_evaluations", "hit_evaluations", "first_hit_hop")
        )
        same_all &= same
        o, n = r["old"], r["new"]
        print(
            f"{name} seed {seed}: identical={same} best {n['best_energy']:.6f} evals {n['num_evaluations']:.0f}"
            f" hit_evals {n['hit_evaluations']:.0f} hit_hop {n['first_hit_hop']:.0f} | ttt old {o['ttt']:.2f} s"
            f" new {n['ttt']:.2f} s (x{o['ttt'] / n['ttt']:.2f}) | wall old {o['wall']:.2f} new {n['wall']:.2f}"
            f" (x{o['wall'] / n['wall']:.2f}) | load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        if not same:
            print("  old", o, "\n  new", n, flush=True)
    print("ALL IDENTICAL" if same_all else "DIFFERENCES FOUND")


if __name__ == "__main__":
    main()
