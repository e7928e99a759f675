"""idf.mclmc / idf.mams against blackjax.mclmc / adjusted_mclmc_dynamic, same step size and L.

A 100-d ill-conditioned Gaussian (standard deviations log-spaced over 1e-1..1e1,
condition number 1e4), identity mass, float32, the same chains, steps and parameters on
both sides, in one process. Each side is compiled first, then timed (best of `--repeats`);
both record every draw. Prints per-step wall time and the ratio idf / blackjax (target
<= 1.0), plus the second-moment error of both as a sanity check.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_mclmc.py            # < 1 min
    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_mclmc.py --chains 256 --steps 2000
"""

from __future__ import annotations

import argparse
import time

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
from blackjax.mcmc.adjusted_mclmc_dynamic import make_random_trajectory_length_fn

import idf_jax as idf

DIM = 100
SD = jnp.logspace(-1.0, 1.0, DIM)


def energy(x):
    return 0.5 * jnp.sum((x / SD) ** 2)


def logdensity(x):
    return -energy(x)


def _interleaved(fns, repeats):
    """Best wall time of each of `fns` (compiled first), timed in turns so load hits both."""
    outs = [jax.block_until_ready(f()) for f in fns]
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, f in enumerate(fns):
            t = time.perf_counter()
            jax.block_until_ready(f())
            best[i] = min(best[i], time.perf_counter() - t)
    return best, outs


def _bj_runner(alg, init_fn, chains, steps):
    @jax.jit
    def run(key, x0):
        k_init, k_run = jax.random.split(key)
        states = jax.vmap(init_fn)(x0, jax.random.split(k_init, chains))

        def body(s, k):
            s, _ = jax.vmap(alg.step)(jax.random.split(k, chains), s)
            return s, s.position

        _, xs = jax.lax.scan(body, states, jax.random.split(k_run, steps))
        return xs

    return run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chains", type=int, default=32)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    chains, steps = args.chains, args.steps
    key = jax.random.key(0)
    x0 = jax.random.normal(key, (chains, DIM)) * SD[None]
    eps, big_l = 0.05, 1.0  # a stable step for the stiffest direction (sd = 0.1)
    print(
        f"d={DIM} chains={chains} steps={steps} eps={eps} L={big_l} ({jax.devices()[0].platform})"
    )

    rows = []
    idf_mclmc = idf.mclmc(energy, eps, big_l)
    bj = blackjax.mclmc(logdensity, L=big_l, step_size=eps)
    run = _bj_runner(bj, lambda x, k: bj.init(x, k), chains, steps)
    (t_idf, t_bj), (tr, xs) = _interleaved(
        [lambda: idf.sample(idf_mclmc, key, x0, steps).positions, lambda: run(key, x0)],
        args.repeats,
    )
    rows.append(("mclmc", t_idf, t_bj, tr, jnp.swapaxes(xs, 0, 1)))

    idf_mams = idf.mams(energy, eps, big_l)
    bj = blackjax.adjusted_mclmc_dynamic(
        logdensity,
        step_size=eps,
        integration_steps_fn=make_random_trajectory_length_fn(True),
        integration_steps_params=(big_l / eps,),
    )
    run_mams = _bj_runner(bj, lambda x, k: bj.init(x, k), chains, steps)
    (t_idf, t_bj), (tr, xs) = _interleaved(
        [lambda: idf.sample(idf_mams, key, x0, steps).positions, lambda: run_mams(key, x0)],
        args.repeats,
    )
    rows.append(("mams", t_idf, t_bj, tr, jnp.swapaxes(xs, 0, 1)))

    print(
        f"{'sampler':8} {'idf us/step':>12} {'bjx us/step':>12} {'ratio':>6}  E[x^2]/sd^2 err idf / bjx"
    )
    for name, ti, tb, a, b in rows:
        err = [
            float(
                np.max(np.abs(np.mean(np.asarray(z) ** 2, axis=(0, 1)) / np.asarray(SD) ** 2 - 1))
            )
            for z in (a, b)
        ]
        print(
            f"{name:8} {1e6 * ti / steps:12.1f} {1e6 * tb / steps:12.1f} {ti / tb:6.2f}"
            f"  {err[0]:.2f} / {err[1]:.2f}"
        )


if __name__ == "__main__":
    main()
