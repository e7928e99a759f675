"""Resident memory of `idf.adapt` called again and again: it must not grow.

    python benchmarks/bench_adapt_memory.py [--calls 20] [--chains 1024] [--dim 1000]

Each call builds a new sampler (same energy, a new initial step size, a new key) and
adapts it over `--chains` chains of a `--dim`-d Gaussian whose precision table is a
(dim,) array held by an `eqx.Module` energy; a second phase builds a NEW energy object
with a new table per call (a new compile each time: the cache is bounded). Prints the
resident set size (RSS, from /proc/self/statm) after the first call and after the last
one of each phase; the figure that matters is the growth after the first call.
"""

from __future__ import annotations

import argparse
import gc
import os
import time


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--chains", type=int, default=1024)
    ap.add_argument("--dim", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=200)
    a = ap.parse_args()

    import equinox as eqx
    import jax
    import jax.numpy as jnp

    import idf_jax as idf

    class Gaussian(eqx.Module):
        prec: jax.Array

        def __call__(self, x):
            return 0.5 * jnp.sum(self.prec * x**2)

    energy = Gaussian(jnp.logspace(0.0, 2.0, a.dim))
    x0 = jnp.zeros((a.chains, a.dim))
    print(
        f"| phase | calls | RSS after call 1 (MB) | RSS after call {a.calls} (MB) | growth (MB) | s/call after the first |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for phase in ("same energy, new numbers", "new energy table per call"):
        first = None
        t_first = None
        for i in range(a.calls):
            e = energy if phase.startswith("same") else Gaussian(energy.prec * (1.0 + 0.01 * i))
            sampler, params = idf.adapt(
                idf.mala(e, 0.01 * (1 + 0.1 * i)), jax.random.key(i), x0, a.steps
            )
            jax.block_until_ready(params["step_size"])
            del sampler, params
            gc.collect()
            if i == 0:
                first, t_first = rss_mb(), time.perf_counter()
        last = rss_mb()
        per_call = (time.perf_counter() - t_first) / max(a.calls - 1, 1)
        print(
            f"| {phase} | {a.calls} | {first:.0f} | {last:.0f} | {last - first:+.0f} | {per_call:.3f} |"
        )


if __name__ == "__main__":
    main()
