"""Peak memory of `idf.sample`: O(chains x draws), independent of the number of steps.

    python benchmarks/bench_memory.py --chains 4096 --dim 100 --steps 100000 --thin 100

Runs ULA on a 100-d Gaussian in a fresh process and prints the peak resident set size
(ru_maxrss), the size of the returned draws, and the process baseline after importing jax.
"""

from __future__ import annotations

import argparse
import resource
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chains", type=int, default=4096)
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--thin", type=int, default=100)
    a = ap.parse_args()

    import jax
    import jax.numpy as jnp

    import idf_jax as idf

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    energy = lambda x: 0.5 * jnp.sum(x**2)
    x0 = jnp.zeros((a.chains, a.dim), jnp.float32)
    t0 = time.perf_counter()
    tr = idf.sample(idf.ula(energy, 0.01), jax.random.key(0), x0, a.steps, thin=a.thin)
    jax.block_until_ready(tr.positions)
    secs = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    draws_mb = tr.positions.nbytes / 2**20
    print(
        f"chains={a.chains} dim={a.dim} steps={a.steps} thin={a.thin}: draws {tuple(tr.positions.shape)} "
        f"= {draws_mb:.0f} MiB; peak RSS {peak:.0f} MiB (baseline after import {base:.0f} MiB); "
        f"{secs:.1f} s, {a.chains * a.steps / secs:.3g} chain-steps/s"
    )


if __name__ == "__main__":
    main()
