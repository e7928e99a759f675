"""idf.nuts in idf.sample vs BlackJAX vmapped NUTS, timed over many sampling keys.

The lock-step cost of vmapped NUTS (sum over transitions of the slowest chain's leapfrogs)
moves 10-20 % between keys, so one key's time ratio says little; this times both sides
on each of `--seeds` unused keys (100, 101, ...), alternating which goes first, in one
process, each compiled once (the key is an argument on both sides), and reports the ratio
of the summed times. Usage:

    PYTHONPATH=$PWD python benchmarks/nuts_keys_timed.py --target funnel --chains 128 --seeds 12
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax

sys.path.insert(0, os.path.dirname(__file__))
import bench_nuts  # noqa: E402

import idf_jax as idf  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", choices=["gaussian", "funnel"], default="funnel")
    ap.add_argument("--chains", type=int, default=128)
    ap.add_argument("--transitions", type=int, default=200)
    ap.add_argument("--seeds", type=int, default=12)
    args = ap.parse_args()
    energy, init, eps, _ = {"gaussian": bench_nuts.gaussian, "funnel": bench_nuts.funnel}[
        args.target
    ]()
    chains, transitions = args.chains, args.transitions
    x0 = init(jax.random.key(1), chains)
    bj_run = bench_nuts.blackjax_runner(energy, eps, x0.shape[1], chains, transitions)
    sampler = idf.nuts(energy, eps)
    sides = {
        "blackjax": lambda k: bj_run(k, x0),
        "idf": lambda k: idf.sample(sampler, k, x0, transitions),
    }
    for f in sides.values():  # compile once
        jax.block_until_ready(f(jax.random.key(0)))
    total = {"blackjax": 0.0, "idf": 0.0}
    cpu = {"blackjax": 0.0, "idf": 0.0}
    print(
        f"{args.target}, {chains} chains x {transitions} transitions, load {os.getloadavg()[0]:.2f}"
    )
    for s in range(args.seeds):
        k = jax.random.key(100 + s)
        order = ["blackjax", "idf"] if s % 2 == 0 else ["idf", "blackjax"]
        row = {}
        for name in order:
            t0, c0 = time.perf_counter(), time.process_time()
            jax.block_until_ready(sides[name](k))
            row[name] = time.perf_counter() - t0
            total[name] += row[name]
            cpu[name] += time.process_time() - c0
        print(
            f"key {100 + s}: blackjax {row['blackjax']:.3f} s, idf {row['idf']:.3f} s, "
            f"ratio {row['idf'] / row['blackjax']:.3f}"
        )
    print(
        f"summed over {args.seeds} keys: blackjax {total['blackjax']:.2f} s, idf "
        f"{total['idf']:.2f} s; ratio idf / blackjax wall {total['idf'] / total['blackjax']:.3f}, "
        f"CPU {cpu['idf'] / cpu['blackjax']:.3f}; load {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
