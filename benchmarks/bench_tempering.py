"""Replica-exchange throughput: idf.replica_exchange driven by idf.sample vs a hand-written
vmapped parallel-tempering loop (the equivalent peer: BlackJAX has no replica exchange,
only tempered SMC, a different algorithm), in one process.

Same energy, chains, replicas, temperatures, base kernel (MALA, one step per replica per
iteration), swap scheme (stochastic even/odd, one round per step), float32 and thinning
(every runner records the cold replica every `thin` steps). Also shown: idf.mala on
chains x R independent chains (no swaps), the cost floor of the local moves.
Timings exclude compilation (warm-up run, then best of `repeats`).

    python benchmarks/bench_tempering.py            # full sizes
    python benchmarks/bench_tempering.py --quick    # smoke run

Prints chain-steps/s (one chain-step = one local step of all R replicas + one swap
round) and the ratio time(idf) / time(bare loop): <= 1.0 means idf is no slower.
"""

from __future__ import annotations

import argparse
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import idf_jax as idf


def mixture_2d():
    w = jnp.array([0.2, 0.8])
    mu = jnp.array([[-5.0, 0.0], [5.0, 0.0]])

    def energy(x):
        return -jax.scipy.special.logsumexp(jnp.log(w) - 0.5 * jnp.sum((x - mu) ** 2, -1))

    return energy, lambda key, n: jnp.tile(mu[0], (n, 1)), 0.5


def gaussian_100d():
    prec = jnp.asarray(np.logspace(0.0, 1.0, 100), jnp.float32)

    def energy(x):
        return 0.5 * jnp.sum(prec * x**2)

    return energy, lambda key, n: jax.random.normal(key, (n, 100)), 0.02


class S(NamedTuple):
    x: jax.Array  # (R, d)
    e: jax.Array  # (R,)
    g: jax.Array  # (R, d)


def bare_runner(energy_fn, step_size, temps, num_steps, thin):
    """Hand-written PT: vmap(MALA) over replicas, then one SEO swap round."""
    vg = jax.vmap(jax.value_and_grad(energy_fn))
    temps = jnp.asarray(temps, jnp.float32)
    r = temps.shape[0]

    def step(key, s):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        t = temps[:, None]
        y = s.x - step_size * s.g + jnp.sqrt(2 * step_size * t) * jax.random.normal(k1, s.x.shape)
        ey, gy = vg(y)
        lq = lambda a, b, gb: -jnp.sum((a - b + step_size * gb) ** 2, -1) / (4 * step_size * temps)
        log_r = -(ey - s.e) / temps + lq(s.x, y, gy) - lq(y, s.x, s.g)
        acc = jnp.log(jax.random.uniform(k2, (r,))) < log_r
        x = jnp.where(acc[:, None], y, s.x)
        e = jnp.where(acc, ey, s.e)
        g = jnp.where(acc[:, None], gy, s.g)
        parity = jax.random.bernoulli(k3).astype(jnp.int32)
        log_a = (1 / temps[:-1] - 1 / temps[1:]) * (e[:-1] - e[1:])
        sw = (jnp.arange(r - 1) % 2 == parity) & (jnp.log(jax.random.uniform(k4, (r - 1,))) < log_a)
        up = jnp.concatenate([sw, jnp.zeros(1, bool)]).astype(jnp.int32)
        down = jnp.concatenate([jnp.zeros(1, bool), sw]).astype(jnp.int32)
        perm = jnp.arange(r) + up - down
        return S(x[perm], e[perm], g[perm]), None

    def run(key, x0):
        def one(k, x):
            xr = jnp.broadcast_to(x, (r, *x.shape))
            e, g = vg(xr)
            keys = jax.random.split(k, num_steps).reshape(num_steps // thin, thin)

            def outer(s, ks):
                s, _ = jax.lax.scan(lambda s, k: step(k, s), s, ks)
                return s, s.x[0]

            return jax.lax.scan(outer, S(xr, e, g), keys)[1]

        return jax.vmap(one)(jax.random.split(key, x0.shape[0]), x0)

    return jax.jit(run)


def timed(fn, repeats):
    jax.block_until_ready(fn())
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return best


def bench(name, system, chains, replicas, steps, thin, repeats):
    energy, init, step_size = system()
    key = jax.random.key(0)
    x0 = init(key, chains)
    temps = np.geomspace(1.0, 25.0, replicas)
    pt = idf.replica_exchange(lambda t: idf.mala(energy, step_size, t), temps, scheme="seo")
    mala = idf.mala(energy, step_size)
    x0_all = jnp.repeat(x0, replicas, axis=0)
    bare = bare_runner(energy, step_size, temps, steps, thin)
    runs = {
        "idf replica_exchange": lambda: idf.sample(pt, key, x0, steps, thin=thin).positions,
        "bare vmapped PT loop": lambda: bare(key, x0),
        f"idf mala, {chains}x{replicas} chains, no swaps": lambda: (
            idf.sample(mala, key, x0_all, steps, thin=thin).positions
        ),
    }
    secs = {k: timed(f, repeats) for k, f in runs.items()}
    print(
        f"\n## {name}: {chains} chains x {replicas} replicas x {steps} steps, thin {thin}, "
        f"float32, {jax.devices()[0].platform}"
    )
    print("| runner | seconds | chain-steps/s | replica-steps/s |")
    print("|---|---:|---:|---:|")
    for k, v in secs.items():
        n = chains * steps
        print(f"| {k} | {v:.3f} | {n / v:.3g} | {n * replicas / v:.3g} |")
    r1 = secs["idf replica_exchange"] / secs["bare vmapped PT loop"]
    r2 = secs["idf replica_exchange"] / secs[f"idf mala, {chains}x{replicas} chains, no swaps"]
    print(f"- time ratio idf replica_exchange / bare PT loop: **{r1:.2f}**")
    print(f"- time ratio idf replica_exchange / idf mala without swaps: **{r2:.2f}**")
    return secs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    if a.quick:
        bench("2-D mixture (barrier 10.9 kT)", mixture_2d, 32, 8, 200, 10, 1)
        bench("Gaussian 100-d", gaussian_100d, 16, 8, 100, 10, 1)
    else:
        bench("2-D mixture (barrier 10.9 kT)", mixture_2d, 256, 8, 2000, 10, a.repeats)
        bench("Gaussian 100-d", gaussian_100d, 128, 8, 1000, 10, a.repeats)


if __name__ == "__main__":
    main()
