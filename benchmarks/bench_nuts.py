"""idf.nuts (vmapped in idf.sample, and desynchronised) vs BlackJAX vmapped NUTS, in one process.

Same target, step size, inverse mass (identity), chains, starting points (exact draws),
number of transitions and float type (float32) for every runner; each is jitted once
(a warm-up call), then all are timed round-robin, best of `repeats`. Reported per runner:
wall seconds and process CPU seconds (the CPU figure is steadier on a shared machine),
chain-transitions per second, mean leapfrog steps per transition, and ESS per second
(bulk ESS of the hardest coordinate: the smallest over dimensions for the Gaussian, v for
the funnel). Ratios are idf / BlackJAX: time per transition (<= 1.0 means idf is no
slower) and ESS/s (>= 1.0 means idf is better).

    python benchmarks/bench_nuts.py                 # both targets, about a minute
    python benchmarks/bench_nuts.py --target funnel --chains 128 --transitions 500

Targets: a 100-d Gaussian with precisions logspace(0, 2) (condition number 100), and
Neal's funnel in d = 10 (v ~ N(0, 3^2), x_1..9 | v ~ N(0, e^v)), whose tree depths vary
widely between chains: there a vmapped transition lasts as long as the longest chain's,
and the desynchronised driver pays the mean instead.
"""

from __future__ import annotations

import argparse
import time

import blackjax
import jax
import jax.numpy as jnp
import numpy as np

import idf_jax as idf


def gaussian():
    prec = jnp.asarray(np.logspace(0.0, 2.0, 100), jnp.float32)

    def energy(x):
        return 0.5 * jnp.sum(prec * x**2)

    def init(key, n):
        return jax.random.normal(key, (n, 100)) / jnp.sqrt(prec)

    return energy, init, 0.1, lambda x: x  # ESS over every coordinate


def funnel():
    def energy(z):
        v, x = z[0], z[1:]
        return v**2 / 18.0 + 0.5 * jnp.sum(x**2) * jnp.exp(-v) + 0.5 * x.shape[0] * v

    def init(key, n):
        kv, kx = jax.random.split(key)
        v = 3.0 * jax.random.normal(kv, (n, 1))
        return jnp.concatenate([v, jax.random.normal(kx, (n, 9)) * jnp.exp(v / 2)], axis=1)

    return energy, init, 0.2, lambda x: x[..., :1]  # ESS of v


def _timed(fn, repeats_log, name):
    t0, c0 = time.perf_counter(), time.process_time()
    out = jax.block_until_ready(fn())
    repeats_log.setdefault(name, []).append((time.perf_counter() - t0, time.process_time() - c0))
    return out


def blackjax_runner(energy, eps: float, d: int, chains: int, transitions: int):
    """BlackJAX NUTS (identity mass) vmapped over chains in a jitted scan, the key an
    argument: `run(key, x0) -> (positions (chains, transitions, d), leapfrogs
    (transitions, chains))`."""
    bj = blackjax.nuts(lambda x: -energy(x), eps, jnp.ones(d))

    @jax.jit
    def bj_run(key, x0):
        state = jax.vmap(bj.init)(x0)
        keys = jax.random.split(key, chains)

        def body(s, i):
            ks = jax.vmap(jax.random.fold_in, (0, None))(keys, i)
            s, info = jax.vmap(bj.step)(ks, s)
            return s, (s.position, info.num_integration_steps)

        _, (xs, n) = jax.lax.scan(body, state, jnp.arange(transitions))
        return jnp.swapaxes(xs, 0, 1), n

    return bj_run


def run(target: str, chains: int, transitions: int, repeats: int, seed: int = 0) -> dict:
    energy, init, eps, hard = {"gaussian": gaussian, "funnel": funnel}[target]()
    key = jax.random.key(seed)
    x0 = init(jax.random.key(1), chains)
    d = x0.shape[1]

    bj_run = blackjax_runner(energy, eps, d, chains, transitions)
    sampler = idf.nuts(energy, eps)
    runners = {
        "blackjax nuts (vmap)": lambda: bj_run(key, x0),
        "idf.nuts in idf.sample (vmap)": lambda: idf.sample(sampler, key, x0, transitions),
        "idf.sample_nuts_desync": lambda: idf.sample_nuts_desync(sampler, key, x0, transitions),
        "idf.sample_nuts_desync(restart_every=4)": lambda: idf.sample_nuts_desync(
            sampler, key, x0, transitions, restart_every=4
        ),
    }
    log: dict[str, list] = {}
    outs = {name: _timed(fn, {}, name) for name, fn in runners.items()}  # compile + warm up
    for _ in range(repeats):
        for name, fn in runners.items():
            outs[name] = _timed(fn, log, name)

    rows = {}
    for name, out in outs.items():
        if name.startswith("blackjax"):
            xs, n = out
            steps = float(jnp.mean(n))
            lockstep = int(jnp.sum(jnp.max(n, axis=1)))  # sum_t max_c L_ct
        else:
            xs = out.positions
            steps = float(jnp.mean(out.stats["num_integration_steps"]))
        ess = float(np.min(np.asarray(idf.ess(np.asarray(hard(xs), np.float64)))))
        wall = min(w for w, _ in log[name])
        cpu = min(c for _, c in log[name])
        rows[name] = dict(wall=wall, cpu=cpu, steps=steps, ess=ess)
        if name.startswith("blackjax"):
            rows[name]["lockstep"] = lockstep
        if name.startswith("idf.sample_nuts_desync"):
            rows[name]["iterations"] = int(out.stats["num_iterations"])
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", choices=["gaussian", "funnel", "both"], default="both")
    ap.add_argument("--chains", type=int, default=64)
    ap.add_argument("--transitions", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument(
        "--seed",
        type=int,
        default=0,
        help="sampling key (starts fixed): the lock-step cost sum_t max_c L_ct varies ~10%% by key",
    )
    args = ap.parse_args()
    targets = ["gaussian", "funnel"] if args.target == "both" else [args.target]
    print(f"jax {jax.__version__}, blackjax {blackjax.__version__}, {jax.devices()[0].platform}")
    for target in targets:
        rows = run(target, args.chains, args.transitions, args.repeats, args.seed)
        n = args.chains * args.transitions
        print(
            f"\n## {target}: {args.chains} chains x {args.transitions} transitions, float32, seed {args.seed}"
        )
        print(
            "| runner | wall s | CPU s | transitions/s (wall) | leapfrogs/transition | min ESS | ESS/s (wall) |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, r in rows.items():
            print(
                f"| {name} | {r['wall']:.3f} | {r['cpu']:.3f} | {n / r['wall']:.3g} | "
                f"{r['steps']:.1f} | {r['ess']:.0f} | {r['ess'] / r['wall']:.3g} |"
            )
        base = rows["blackjax nuts (vmap)"]
        print("\n| ratio idf / BlackJAX | time per transition (wall) | (CPU) | ESS/s (wall) |")
        print("|---|---:|---:|---:|")
        for name, r in rows.items():
            if name.startswith("blackjax"):
                continue
            print(
                f"| {name} | {r['wall'] / base['wall']:.2f} | {r['cpu'] / base['cpu']:.2f} | "
                f"{(r['ess'] / r['wall']) / (base['ess'] / base['wall']):.2f} |"
            )
        de = rows["idf.sample_nuts_desync"]
        print(
            f"\ndesync loop iterations: {de['iterations']} (= leapfrog steps of the slowest "
            f"chain, idle ones included); mean leapfrogs per chain: "
            f"{de['steps'] * args.transitions:.0f}; lock-step cost sum_t max_c L_ct: "
            f"{base['lockstep']}"
        )


if __name__ == "__main__":
    main()
