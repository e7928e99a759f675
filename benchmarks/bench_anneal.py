"""Annealing throughput and time-to-LJ13-minimum, idf-jax against a bare vmapped loop.

Run:  PYTHONPATH=. python benchmarks/bench_anneal.py [--chains 64] [--steps 2000]

1. Throughput (chain-steps / s, warm: compiled once, then timed): the annealing stage
   of `idf.sample_equilibrium` (per-chain adaptive MALA, best-state tracking;
   relax=False, prerelax_steps=0) against a bare `jax.vmap` + `lax.scan` loop doing
   the same MALA steps at the same geometric temperatures with one fixed step size and
   no bookkeeping. Ratio = idf / bare (1.0 = no overhead).
2. Time to the LJ13 global minimum (E = -44.326801) from random starts: wall time of
   one full `sample_equilibrium` call (compile included, as a user sees it; and warm),
   with the number of chains that reached it; against multi-start relaxation alone
   (the same FIRE on the same random starts, no annealing).
Timings are for the machine this runs on; the script prints the load average.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

import idf_jax as idf

N = 13
I, J = np.triu_indices(N, 1)
LJ13_MIN = -44.326801


def lj(x):
    x = x.reshape(N, 3)
    d = x[I] - x[J]
    inv6 = 1.0 / jnp.sum(d**2, axis=-1) ** 3
    r = jnp.linalg.norm(x - x.mean(0), axis=-1)
    return jnp.sum(4.0 * (inv6**2 - inv6)) + 10.0 * jnp.sum(jnp.maximum(r - 2.5, 0.0) ** 2)


def bare_anneal(energy_fn, n, steps, eta):
    """Plain vmapped MALA over a geometric schedule: the minimal equivalent loop."""
    vg = jax.value_and_grad(energy_fn)

    def step(x, e, g, key, temp):
        k1, k2 = jax.random.split(key)
        prop = x - eta * g + jnp.sqrt(2 * eta * temp) * jax.random.normal(k1, x.shape)
        e2, g2 = vg(prop)
        lq = lambda a, b, gb: -jnp.sum((a - b + eta * gb) ** 2) / (4 * eta * temp)  # noqa: E731
        log_r = -(e2 - e) / temp + lq(x, prop, g2) - lq(prop, x, g)
        acc = jnp.log(jax.random.uniform(k2)) < jnp.where(jnp.isnan(log_r), -jnp.inf, log_r)
        return jnp.where(acc, prop, x), jnp.where(acc, e2, e), jnp.where(acc, g2, g)

    @jax.jit
    def run(key, x0, temps):
        e0, g0 = jax.vmap(vg)(x0)
        keys = jax.random.split(key, n)

        def body(c, i):
            ks = jax.vmap(jax.random.fold_in, (0, None))(keys, i)
            x, e, g = jax.vmap(step, (0, 0, 0, 0, None))(*c, ks, temps[i])
            return (x, e, g), None

        (x, e, _), _ = jax.lax.scan(body, (x0, e0, g0), jnp.arange(temps.shape[0]))
        return x, e

    return run


def timed(fn, *args, repeat=3):
    jax.block_until_ready(fn(*args))  # compile + warm
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chains", type=int, default=64)
    ap.add_argument("--steps", type=int, default=2000)
    args = ap.parse_args()
    n, steps = args.chains, args.steps
    print(f"jax {jax.__version__}, devices {jax.devices()}, load average {os.getloadavg()}")

    # ---- 1. throughput on LJ13
    x0 = jax.random.uniform(jax.random.key(0), (n, 3 * N), minval=-1.3, maxval=1.3)
    x0, _ = idf.relax(lj, x0, method="fire", num_steps=100, step_size=1e-3)
    temps = np.geomspace(0.5, 5e-4, steps).astype(np.float32)
    eta = 2e-3

    def idf_run():
        return idf.sample_equilibrium(
            lj,
            jax.random.key(1),
            x0,
            num_steps=steps,
            schedule=idf.schedules.ladder(temps),
            relax=False,
            prerelax_steps=0,
            step_size=eta,
        ).energy

    bare = bare_anneal(lj, n, steps, eta)
    t_idf = timed(idf_run)
    t_bare = timed(bare, jax.random.key(1), x0, jnp.asarray(temps))
    cs = n * steps
    print("\n## annealing throughput (LJ13, warm, best of 3)")
    print("| runner | chains x steps | time (s) | chain-steps/s |")
    print("|---|---|---|---|")
    print(
        f"| idf.sample_equilibrium (anneal stage) | {n} x {steps} | {t_idf:.3f} | {cs / t_idf:,.0f} |"
    )
    print(f"| bare vmapped MALA loop | {n} x {steps} | {t_bare:.3f} | {cs / t_bare:,.0f} |")
    print(f"ratio idf / bare throughput: {t_bare / t_idf:.2f}")

    # ---- 2. time to LJ13 minimum from random starts (full defaults)
    xr = jax.random.uniform(jax.random.key(2), (n, 3 * N), minval=-1.3, maxval=1.3)
    t = time.perf_counter()
    res = idf.sample_equilibrium(
        lj, jax.random.key(3), xr, num_steps=steps, target=LJ13_MIN, target_tol=1e-3
    )
    jax.block_until_ready(res.energy)
    t_cold = time.perf_counter() - t
    t = time.perf_counter()
    res = idf.sample_equilibrium(
        lj, jax.random.key(3), xr, num_steps=steps, target=LJ13_MIN, target_tol=1e-3
    )
    jax.block_until_ready(res.energy)
    t_warm = time.perf_counter() - t
    # Baseline: relaxation alone from the same random starts (same FIRE, 100 + 500 steps).
    t = time.perf_counter()
    xb, eb = idf.relax(lj, xr, method="fire", num_steps=600, step_size=1e-3, dt_max_factor=1e3)
    jax.block_until_ready(eb)
    t_relax = time.perf_counter() - t
    reached_relax = int(np.sum(np.asarray(eb) <= LJ13_MIN + 1e-3))
    print("\n## time to the LJ13 global minimum (E = -44.326801) from random starts")
    print(
        "| method | chains | wall (s), first call | wall (s), warm | best E | chains at minimum |"
    )
    print("|---|---|---|---|---|---|")
    print(
        f"| idf.sample_equilibrium ({steps} steps + FIRE) | {n} | {t_cold:.1f} | {t_warm:.2f} | "
        f"{float(res.best_energy):.6f} | {int(res.num_reached)} |"
    )
    print(
        f"| multi-start FIRE only (600 steps) | {n} | {t_relax:.1f} | - | {float(np.min(eb)):.6f} | "
        f"{reached_relax} |"
    )


if __name__ == "__main__":
    main()
