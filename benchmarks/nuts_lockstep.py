"""Lock-step cost of vmapped NUTS over held-out sampling keys: idf.nuts vs BlackJAX.

A vmapped transition lasts as long as its longest chain, so its cost is
sum_t max_c L_ct (L_ct: leapfrog steps of chain c at transition t), which varies ~10%
between sampling keys. This counts it (no timing) for keys 100..100+S-1, same target,
step size, identity mass and starting points as bench_nuts.py, for both samplers.

    PYTHONPATH=$PWD python benchmarks/nuts_lockstep.py --target funnel --seeds 12
"""

from __future__ import annotations

import argparse

import blackjax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from bench_nuts import funnel, gaussian

import idf_jax as idf


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", choices=["gaussian", "funnel"], default="funnel")
    ap.add_argument("--chains", type=int, default=128)
    ap.add_argument("--transitions", type=int, default=200)
    ap.add_argument("--seeds", type=int, default=12)
    args = ap.parse_args()
    chains, num = args.chains, args.transitions
    energy, init, eps, _ = {"funnel": funnel, "gaussian": gaussian}[args.target]()
    x0 = init(jax.random.key(1), chains)
    bj = blackjax.nuts(lambda x: -energy(x), eps, jnp.ones(x0.shape[1]))
    sampler = idf.nuts(energy, eps)

    def steps(init_fn, step_fn, key, x0):
        state = jax.vmap(init_fn)(x0)
        keys = jax.random.split(key, chains)

        def body(s, i):
            ks = jax.vmap(jax.random.fold_in, (0, None))(keys, i)
            s, info = jax.vmap(step_fn)(ks, s)
            return s, info.num_integration_steps

        return jax.lax.scan(body, state, jnp.arange(num))[1]

    run_bj = jax.jit(lambda k, x: steps(bj.init, bj.step, k, x))
    # the sampler is an argument (its parameters traced), as in idf.sample
    run_idf = eqx.filter_jit(lambda s, k, x: steps(s.init, s.step, k, x))
    rows = {"blackjax": ([], []), "idf": ([], [])}
    for seed in range(100, 100 + args.seeds):
        key = jax.random.key(seed)
        for name, n in (("blackjax", run_bj(key, x0)), ("idf", run_idf(sampler, key, x0))):
            rows[name][0].append(int(jnp.sum(jnp.max(n, axis=1))))
            rows[name][1].append(float(jnp.mean(n)))
    print(f"{args.target}: {chains} chains x {num} transitions, keys 100..{99 + args.seeds}")
    print("| sampler | lock-step leapfrogs (mean over keys) | s.e. | mean leapfrogs/transition |")
    print("|---|---:|---:|---:|")
    for name, (lock, mean) in rows.items():
        lock = np.asarray(lock)
        se = lock.std(ddof=1) / np.sqrt(len(lock))
        print(f"| {name} | {lock.mean():.0f} | {se:.0f} | {np.mean(mean):.1f} |")
    ratio = np.mean(rows["idf"][0]) / np.mean(rows["blackjax"][0])
    print(f"\nlock-step ratio idf / BlackJAX: {ratio:.3f}")


if __name__ == "__main__":
    main()
