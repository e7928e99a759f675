"""Restarts and Choice encodings on the tuning seeds (0, 1, 2, 10..29; 3, 4, 5 held out).

Run:  PYTHONPATH=. python benchmarks/evolve_restarts_sweep.py [TASKS] [VARIANTS] [BUDGETS]
      TASKS: comma-separated of sphere3, rosen10, rastrigin5, mixed, testmixed, deceptive
      VARIANTS: comma-separated of index, index+rs-best, index+rs-rand, onehot,
                onehot+rs-best, onehot+rs-rand
      BUDGETS: fitness evaluations, comma-separated (default 512,1024)

`idf.evolve.minimize` alone (population 16, generations = budget / 16), one line per
(task, budget, variant): the best fitness's median / mean / max over the 23 seeds, the
first three seeds, the mean number of restarts. Each (task, budget) compiles once; the
variants differ in data (restarts) or in the space (encoding: another compile).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_evolve as B  # noqa: E402

ev = B.ev
SEEDS = [0, 1, 2, *range(10, 30)]


def sphere():
    sp = {f"x{i}": ev.Real(-3.0, 4.0) for i in range(3)}
    return "sphere3", sp, lambda p, k: sum((v - 0.5) ** 2 for v in p.values())


def rastrigin():
    d = 5
    sp = {f"x{i}": ev.Real(-5.12, 5.12) for i in range(d)}

    def f(p, k):
        x = jnp.stack([p[f"x{i}"] for i in range(d)]) - 0.7
        return 10 * d + jnp.sum(x**2 - 10 * jnp.cos(2 * jnp.pi * x))

    return "rastrigin5", sp, f


def testmixed():  # tests/evolve/test_search.py's MIXED
    sp = {
        "x": ev.Real(1e-3, 10.0, log=True),
        "n": ev.Int(1, 6),
        "kind": ev.Choice(["a", "b", "c"]),
        "m": ev.Choice([0.5, 2.0]),
    }

    def f(p, key):
        return (
            jnp.log10(p["x"] / 0.1) ** 2
            + (p["n"] - 3) ** 2
            + 4.0 * (p["kind"] != 1)
            + 4.0 * (p["m"] != 2.0)
        )

    return "testmixed", sp, f


def deceptive():
    # a Choice of 6 whose right option (4) only pays with the reals right
    sp = {"x": ev.Real(-1.0, 1.0), "y": ev.Real(-1.0, 1.0), "c": ev.Choice(list(range(6)))}

    def f(p, k):
        base = (p["x"] - 0.3) ** 2 + (p["y"] + 0.2) ** 2
        return jnp.where(p["c"] == 4, base, 0.5 + 0.5 * base + 0.05 * p["c"])

    return "deceptive", sp, f


TASKS = {
    "sphere3": sphere,
    "rosen10": B.rosenbrock_task,
    "rastrigin5": rastrigin,
    "mixed": B.mixed_task,
    "testmixed": testmixed,
    "deceptive": deceptive,
}
VARIANTS = {
    "index": ("index", {}),
    "index+rs-best": ("index", {"restarts": "best"}),
    "index+rs-rand": ("index", {"restarts": "random"}),
    "onehot": ("onehot", {}),
    "onehot+rs-best": ("onehot", {"restarts": "best"}),
    "onehot+rs-rand": ("onehot", {"restarts": "random"}),
}


def encoded(space, encoding):
    return {
        k: dataclasses.replace(d, encoding=encoding) if isinstance(d, ev.Choice) else d
        for k, d in space.items()
    }


def main():
    names = sys.argv[1].split(",") if len(sys.argv) > 1 else list(TASKS)
    variants = sys.argv[2].split(",") if len(sys.argv) > 2 else list(VARIANTS)
    budgets = [int(b) for b in sys.argv[3].split(",")] if len(sys.argv) > 3 else [512, 1024]
    print(f"load average {os.getloadavg()[0]:.1f}")
    for tn in names:
        _, space, fit = TASKS[tn]()
        for evals in budgets:
            for vn in variants:
                encoding, kw = VARIANTS[vn]
                sp = encoded(space, encoding)
                t0 = time.perf_counter()
                fs, nr = [], []
                for s in SEEDS:
                    r = ev.minimize(
                        fit,
                        sp,
                        jax.random.key(s),
                        population_size=16,
                        num_generations=evals // 16,
                        **kw,
                    )
                    fs.append(r.best_fitness)
                    nr.append(r.num_restarts)
                fs = np.array(fs)
                print(
                    f"{tn:10s} {evals:5d} {vn:15s} median {np.median(fs):.4g} mean {fs.mean():.4g} "
                    f"max {fs.max():.4g} seeds 0-2 {np.round(fs[:3], 4).tolist()} "
                    f"restarts {np.mean(nr):.1f} ({time.perf_counter() - t0:.1f} s)",
                    flush=True,
                )


if __name__ == "__main__":
    main()
