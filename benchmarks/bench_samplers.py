"""idf mala / hmc vs BlackJAX mala / hmc vs a bare vmap(value_and_grad) loop, in one process.

Same energy, same chains, same steps, same float type (float32), same thinning: every
runner vmaps over chains, scans over steps and keeps every `thin`-th position. Timings
exclude compilation (each runner is run once to warm up, then all are timed round-robin,
best of `repeats`).

    python benchmarks/bench_samplers.py            # full sizes from the issue
    python benchmarks/bench_samplers.py --quick    # small sizes, a smoke run
    python benchmarks/bench_samplers.py --system gaussian --repeats 5   # one system
    python benchmarks/bench_samplers.py --system overhead   # per-call host overhead

Each system also gets compile-once rows (`bench_rebuild`): the same sampler reused, a
sampler rebuilt per call, a new step size per call, against BlackJAX jitted once with
the step size as an argument (`--unrolled-peer` adds BlackJAX compiled with JAX's unrolled
threefry lowering: the same random-number code on both sides).

Prints chain-steps per second and the ratios time(idf) / time(peer): <= 1.0 means idf is
no slower than the peer.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from typing import NamedTuple

try:  # the peer; absent on machines without the `dev` extra (the bare loop still runs)
    import blackjax
except ImportError:
    blackjax = None
import jax
import jax.numpy as jnp
import numpy as np

import idf_jax as idf


def gaussian_100d():
    prec = jnp.asarray(np.logspace(0.0, 2.0, 100), jnp.float32)  # condition number 100

    def energy(x):
        return 0.5 * jnp.sum(prec * x**2)

    def init(key, n):
        return jax.random.normal(key, (n, 100)) / jnp.sqrt(prec)

    return energy, init, dict(mala=0.008, hmc=0.1, L=10)


def lj38():
    n = 38

    def energy(x):
        d = x[:, None, :] - x[None, :, :]
        r2 = jnp.sum(d**2, -1) + jnp.eye(n)
        inv6 = 1.0 / r2**3
        e = 4.0 * (inv6**2 - inv6)
        return 0.5 * jnp.sum(jnp.where(jnp.eye(n, dtype=bool), 0.0, e))

    grid = np.stack(np.meshgrid(*[np.arange(4)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n]
    base = jnp.asarray(grid * 1.12, jnp.float32)

    def init(key, k):
        return base + 0.02 * jax.random.normal(key, (k, n, 3))

    return energy, init, dict(mala=1e-4, hmc=2e-3, L=10)


def funnel_10d():
    """Neal's funnel, d = 10: v ~ N(0, 3^2), x_i | v ~ N(0, e^v) (non-Gaussian, varying scale)."""

    def energy(z):
        v, x = z[0], z[1:]
        return v**2 / 18.0 + 0.5 * jnp.sum(x**2) * jnp.exp(-v) + 4.5 * v

    def init(key, n):
        k1, k2 = jax.random.split(key)
        v = jax.random.normal(k1, (n, 1))
        return jnp.concatenate([v, jnp.exp(v / 2) * jax.random.normal(k2, (n, 9))], 1)

    return energy, init, dict(mala=0.02, hmc=0.1, L=10)


def thinned_scan(step, state, keys, thin):
    """Scan over steps; keep every `thin`-th position (like idf.sample)."""
    num = keys.shape[0] // thin

    def outer(s, ks):
        s, _ = jax.lax.scan(lambda s, k: (step(k, s)[0], None), s, ks)
        return s, s.position

    return jax.lax.scan(outer, state, keys.reshape(num, thin))


def blackjax_runner(kernel, energy_fn, x0, num_steps, thin, key):
    def run(key, x0):
        def one(k, x):
            st = kernel.init(x)
            keys = jax.random.split(k, num_steps)
            return thinned_scan(kernel.step, st, keys, thin)

        return jax.vmap(one)(jax.random.split(key, x0.shape[0]), x0)

    return jax.jit(run)


def bare_runner(energy_fn, step_size, num_steps, thin):
    """Hand-written MALA: one vmap(value_and_grad) per step, nothing else."""
    vg = jax.value_and_grad(energy_fn)

    class S(NamedTuple):
        position: jax.Array
        energy: jax.Array
        grad: jax.Array

    def step(key, s):
        x, e, g = s
        k1, k2 = jax.random.split(key)
        y = x - step_size * g + jnp.sqrt(2 * step_size) * jax.random.normal(k1, x.shape)
        ey, gy = vg(y)
        lq = lambda a, b, gb: -jnp.sum((a - b + step_size * gb) ** 2) / (4 * step_size)
        log_r = -(ey - e) + lq(x, y, gy) - lq(y, x, g)
        acc = jnp.log(jax.random.uniform(k2)) < log_r
        return S(jnp.where(acc, y, x), jnp.where(acc, ey, e), jnp.where(acc, gy, g)), None

    def run(key, x0):
        def one(k, x):
            e, g = vg(x)
            keys = jax.random.split(k, num_steps)
            return thinned_scan(step, S(x, e, g), keys, thin)

        return jax.vmap(one)(jax.random.split(key, x0.shape[0]), x0)

    return jax.jit(run)


def timed_interleaved(runs, repeats, rounds=None):
    """Best-of-`repeats` seconds per runner, runners timed round-robin (after one warm-up
    call each) so that slow drifts of the machine (clock, other load) hit all alike.

    With a dict `rounds`, it also receives, per runner, the list of (wall s, process CPU s)
    of every round, so that ratios can be taken round by round (paired)."""
    for f in runs.values():
        jax.block_until_ready(f())
    best = {k: float("inf") for k in runs}
    per_round = {k: [] for k in runs}
    for _ in range(repeats):
        for k, f in runs.items():
            c0, t0 = time.process_time(), time.perf_counter()
            jax.block_until_ready(f())
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            best[k] = min(best[k], wall)
            per_round[k].append((wall, cpu))
    if rounds is not None:
        rounds.update(per_round)
    return best


def paired_ratios(rounds, row, ref):
    """Median over rounds of wall(row) / wall(ref) and of CPU(row) / CPU(ref), each round's
    two runs timed back to back (robust to the machine's drift between rounds)."""
    wall = [a[0] / b[0] for a, b in zip(rounds[row], rounds[ref], strict=True)]
    cpu = [a[1] / b[1] for a, b in zip(rounds[row], rounds[ref], strict=True)]
    return float(np.median(wall)), float(np.median(cpu))


def bench(name, system, chains, steps, thin, repeats):
    energy, init, p = system()
    key = jax.random.key(0)
    x0 = init(key, chains)
    idf_mala = idf.mala(energy, p["mala"])
    idf_hmc = idf.hmc(energy, p["hmc"], p["L"])
    runs = {
        "idf mala": lambda: idf.sample(idf_mala, key, x0, steps, thin=thin).positions,
        "bare mala loop": (lambda f: lambda: f(key, x0))(
            bare_runner(energy, p["mala"], steps, thin)
        ),
        "idf hmc": lambda: idf.sample(idf_hmc, key, x0, steps, thin=thin).positions,
    }
    if blackjax is not None:
        bj_mala = blackjax.mala(lambda x: -energy(x), p["mala"])
        # BlackJAX HMC takes a flat inverse mass: run it on flattened positions.
        flat_e = lambda z: energy(z.reshape(x0.shape[1:]))
        flat_x0 = x0.reshape(chains, -1)
        bj_hmc = blackjax.hmc(lambda z: -flat_e(z), p["hmc"], jnp.ones(flat_x0.shape[1]), p["L"])
        runs["blackjax mala"] = (lambda f: lambda: f(key, x0))(
            blackjax_runner(bj_mala, energy, x0, steps, thin, key)
        )
        runs["blackjax hmc"] = (lambda f: lambda: f(key, flat_x0))(
            blackjax_runner(bj_hmc, flat_e, flat_x0, steps, thin, key)
        )
    secs = timed_interleaved(runs, repeats)
    rate = {k: chains * steps / v for k, v in secs.items()}
    print(
        f"\n## {name}: {chains} chains x {steps} steps, thin {thin}, float32, {jax.devices()[0].platform}"
    )
    print("| runner | seconds | chain-steps/s |")
    print("|---|---:|---:|")
    for k in runs:
        print(f"| {k} | {secs[k]:.3f} | {rate[k]:.3g} |")
    ratios = {"idf mala / bare loop": secs["idf mala"] / secs["bare mala loop"]}
    if blackjax is not None:
        ratios["idf mala / blackjax mala"] = secs["idf mala"] / secs["blackjax mala"]
        ratios["idf hmc / blackjax hmc"] = secs["idf hmc"] / secs["blackjax hmc"]
    for k, v in ratios.items():
        print(f"- time ratio {k}: **{v:.2f}**")
    return secs, ratios


def bench_rebuild(name, system, chains, steps, thin, calls, unrolled_peer=False, repeats=3):
    """Compile once, run many: `calls` runs with a sampler reused, rebuilt, or given a new
    step size each call, against BlackJAX jitted once with the step size as an argument.

    Both sides are warmed up by one call first; the rows are the total of `calls` further
    calls, each waited for before the next starts (as a user who reads the draws does;
    otherwise JAX's asynchronous dispatch overlaps BlackJAX's independent calls on the CPU
    thread pool, which idf's host-side summary does not allow), timed round-robin, best of
    `repeats`. A row whose idf side recompiled would show seconds of
    compilation per call here.

    idf draws its random numbers with `idf_jax.samplers._random`: the same threefry2x32
    bits as `jax.random` (tested bit for bit), written so that XLA fuses them; on CPU,
    JAX lowers its own threefry as a rolled loop, which is what BlackJAX gets. With
    `unrolled_peer`, one more BlackJAX row is compiled with JAX's unrolled threefry
    lowering (JAX's default on GPU / TPU), so both sides generate random numbers the
    same way and the ratio isolates the rest of the step.
    """
    energy, init, p = system()
    key = jax.random.key(0)
    x0 = init(key, chains)
    eps0 = p["mala"]
    steps_sizes = [eps0 * (0.8 + 0.1 * i) for i in range(calls)]
    reused = idf.mala(energy, eps0)

    def idf_calls(make):
        def run():
            out = None
            for i in range(calls):
                out = jax.block_until_ready(
                    idf.sample(make(i), key, x0, steps, thin=thin).positions
                )
            return out

        return run

    runs = {
        "idf: same sampler reused": idf_calls(lambda i: reused),
        "idf: sampler rebuilt per call": idf_calls(lambda i: idf.mala(energy, eps0)),
        "idf: new step size per call": idf_calls(lambda i: idf.mala(energy, steps_sizes[i])),
    }
    if blackjax is not None:

        @jax.jit
        def bj(key, x0, eps):
            kernel = blackjax.mala(lambda x: -energy(x), eps)

            def one(k, x):
                return thinned_scan(kernel.step, kernel.init(x), jax.random.split(k, steps), thin)

            return jax.vmap(one)(jax.random.split(key, x0.shape[0]), x0)

        def bj_calls(eps_of):
            def run():
                out = None
                for i in range(calls):
                    out = jax.block_until_ready(bj(key, x0, jnp.float32(eps_of(i))))
                return out

            return run

        runs["blackjax (jit once), same step"] = bj_calls(lambda i: eps0)
        runs["blackjax (jit once), new step per call"] = bj_calls(lambda i: steps_sizes[i])
        if unrolled_peer:
            with _unrolled_threefry_lowering():
                bj_u = bj.lower(key, x0, jnp.float32(eps0)).compile()

            def bj_u_calls():
                out = None
                for i in range(calls):
                    out = jax.block_until_ready(bj_u(key, x0, jnp.float32(steps_sizes[i])))
                return out

            runs["blackjax (jit once), new step, unrolled threefry"] = bj_u_calls
    rounds = {}
    secs = timed_interleaved(runs, repeats, rounds)
    print(f"\n## {name}, compile once / run many: {calls} calls of {chains} chains x {steps} steps")
    print("| runner | seconds for all calls |")
    print("|---|---:|")
    for k in runs:
        print(f"| {k} | {secs[k]:.3f} |")
    if blackjax is not None:
        same = secs["blackjax (jit once), same step"]
        new = secs["blackjax (jit once), new step per call"]
        for row, ref in (
            ("idf: same sampler reused", same),
            ("idf: sampler rebuilt per call", same),
            ("idf: new step size per call", new),
        ):
            ref_name = (
                "blackjax (jit once), new step per call"
                if row == "idf: new step size per call"
                else "blackjax (jit once), same step"
            )
            wall, cpu = paired_ratios(rounds, row, ref_name)
            print(
                f"- time ratio {row} / blackjax: **{secs[row] / ref:.2f}** (best of {repeats});"
                f" paired per round, median: wall {wall:.2f}, process CPU {cpu:.2f}"
            )
        same_cpu = min(c for _, c in rounds["blackjax (jit once), same step"])
        new_cpu = min(c for _, c in rounds["blackjax (jit once), new step per call"])
        print(
            f"- blackjax's two runners of identical work: wall {same:.3f} / {new:.3f} s,"
            f" CPU {same_cpu:.3f} / {new_cpu:.3f} s"
        )
        if unrolled_peer:
            ref = secs["blackjax (jit once), new step, unrolled threefry"]
            row = "idf: new step size per call"
            print(
                f"- time ratio {row} / blackjax with unrolled threefry: **{secs[row] / ref:.2f}**"
            )
    return secs


@contextlib.contextmanager
def _unrolled_threefry_lowering():
    """Lower jax.random's threefry on CPU as JAX does on GPU / TPU (unrolled), for the
    functions compiled inside the block (benchmark diagnostics; private JAX API)."""
    from jax._src.random import threefry2x32 as tf
    from jax.interpreters import mlir

    mlir.register_lowering(tf.threefry2x32_p, tf._threefry2x32_lowering_rule, platform="cpu")
    try:
        yield
    finally:
        mlir.register_lowering(
            tf.threefry2x32_p, tf._threefry2x32_cpu_lowering_rule, platform="cpu"
        )


def bench_overhead(chains=8, steps=10, calls=20, repeats=5):
    """Per-call host overhead: tiny runs (the host side dominates) of `idf.sample` with a
    sampler reused / rebuilt / given a new step size, vs BlackJAX MALA jitted once."""
    energy, init, p = gaussian_100d()
    key = jax.random.key(0)
    x0 = init(key, chains)
    eps = p["mala"]
    reused = idf.mala(energy, eps)
    runs = {
        "idf: same sampler reused": lambda i: idf.sample(reused, key, x0, steps).positions,
        "idf: sampler rebuilt per call": lambda i: (
            idf.sample(idf.mala(energy, eps), key, x0, steps).positions
        ),
        "idf: new step size per call": lambda i: (
            idf.sample(idf.mala(energy, eps * (1 + 1e-3 * i)), key, x0, steps).positions
        ),
    }
    if blackjax is not None:

        @jax.jit
        def bj(key, x0, eps):
            kernel = blackjax.mala(lambda x: -energy(x), eps)

            def one(k, x):
                return thinned_scan(kernel.step, kernel.init(x), jax.random.split(k, steps), 1)

            return jax.vmap(one)(jax.random.split(key, x0.shape[0]), x0)

        runs["blackjax (jit once), new step per call"] = lambda i: bj(
            key, x0, jnp.float32(eps * (1 + 1e-3 * i))
        )
    for f in runs.values():
        jax.block_until_ready(f(0))
    best = {k: float("inf") for k in runs}
    for _ in range(repeats):
        for k, f in runs.items():
            t = time.perf_counter()
            for i in range(calls):
                jax.block_until_ready(f(i))
            best[k] = min(best[k], (time.perf_counter() - t) / calls)
    print(f"\n## per-call overhead: {chains} chains x {steps} steps, best of {repeats}")
    for k, v in best.items():
        print(f"| {k} | {1e3 * v:.2f} ms per call |")
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--system", choices=["all", "gaussian", "lj38", "funnel", "overhead"], default="all"
    )
    ap.add_argument("--calls", type=int, default=5, help="calls per compile-once row")
    ap.add_argument("--chains", type=int, default=1024, help="chains (1024 in the issue)")
    ap.add_argument(
        "--unrolled-peer",
        action="store_true",
        help="also time BlackJAX compiled with JAX's unrolled threefry lowering",
    )
    a = ap.parse_args()
    if a.quick:
        bench("Gaussian 100-d (cond 100)", gaussian_100d, 64, 100, 10, 1)
        bench("LJ38", lj38, 16, 20, 10, 1)
        bench_rebuild("Funnel 10-d", funnel_10d, 64, 100, 10, 2)
    else:
        if a.system in ("all", "gaussian"):
            bench("Gaussian 100-d (cond 100)", gaussian_100d, a.chains, 1000, 10, a.repeats)
            bench_rebuild(
                "Gaussian 100-d", gaussian_100d, a.chains, 1000, 10, a.calls, a.unrolled_peer
            )
        if a.system in ("all", "lj38"):
            bench("LJ38", lj38, a.chains, 200, 10, a.repeats)
            bench_rebuild("LJ38", lj38, a.chains, 200, 10, a.calls, a.unrolled_peer)
        if a.system in ("all", "funnel"):
            bench("Funnel 10-d", funnel_10d, a.chains, 1000, 10, a.repeats)
            bench_rebuild("Funnel 10-d", funnel_10d, a.chains, 1000, 10, a.calls, a.unrolled_peer)
        if a.system in ("all", "overhead"):
            bench_overhead()


if __name__ == "__main__":
    main()
