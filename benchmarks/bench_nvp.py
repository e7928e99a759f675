"""NVP inference speed: warmed `predict_next` latency and batched throughput, one CPU core.

    PYTHONPATH=. python benchmarks/bench_nvp.py [--cores N] [--n 2000]

Pins the process to one core (`os.sched_setaffinity`) and single-threaded XLA before JAX is
imported. Side by side in this process:
  * NVPPredictor.predict_next (cache off), histories of every length 2..window+8 in turn, so
    the number also shows that pad-and-mask never recompiles (a recompile costs ~1 s);
  * the same with the LRU cache hit;
  * peer: the same model called the usual Equinox way, `eqx.filter_jit(forecast)(model, ...)`
    with the dict -> array conversion done identically (what one writes without AOT
    compilation and closure-constant weights);
  * predict_batch throughput (windows / s) for batch sizes 64 and 512.
Prints p50 / p90 in ms and the ratio peer / NVPPredictor.
"""

from __future__ import annotations

import argparse
import os
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cores", type=int, default=1)
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: args.cores]))
    os.environ.setdefault(
        "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    )
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

    import equinox as eqx
    import jax
    import numpy as np

    from idf_jax.nvp.loss import make_physics
    from idf_jax.nvp.model import forecast
    from idf_jax.nvp.predictor import NVPPredictor

    nvp = NVPPredictor(cache_size=0)
    rng = np.random.default_rng(0)
    w = nvp.window
    u = np.clip(0.6 + 0.02 * np.cumsum(rng.normal(size=w + 8)), 0.05, 0.95)
    p = 400 + 600 * (2 * u - u**1.4)
    hist = [
        {"cpu": float(a), "power": float(b), "temp": float(64.4 + b / 111.1)} for a, b in zip(u, p)
    ]
    lengths = list(range(nvp.min_history, len(hist) + 1))

    def timeit(fn, n):
        ts = np.empty(n)
        for i in range(n):
            h = hist[: lengths[i % len(lengths)]]
            t0 = time.perf_counter()
            fn(h)
            ts[i] = time.perf_counter() - t0
        return np.percentile(ts, 50) * 1e3, np.percentile(ts, 90) * 1e3

    for _ in range(3):
        for n in lengths:
            nvp.predict_next(hist[:n])
    ours = timeit(nvp.predict_next, args.n)

    cached = NVPPredictor(cache_size=4096)
    for n in lengths:
        cached.predict_next(hist[:n])
    hit = timeit(cached.predict_next, args.n)

    phys = make_physics(nvp.balance_spec, nvp.channels)
    model = nvp._model
    jf = eqx.filter_jit(
        lambda m, y, mk: forecast(m, phys.balance, nvp.normalizer, phys.util_idx, y, mk)
    )

    def peer(h):
        x = nvp._to_array(h)
        y, mk = nvp._pad(x)
        out = jf(model, y, mk)
        return nvp._result(np.stack([np.asarray(a) for a in out]), x[-1])

    for n in lengths:
        peer(hist[:n])
    theirs = timeit(peer, args.n)

    print(
        f"device: {jax.devices()[0].device_kind}, cores pinned: {args.cores}, "
        f"window {w}, channels {nvp.channels}"
    )
    print(f"NVPPredictor.predict_next (no cache)  p50 {ours[0]:.3f} ms  p90 {ours[1]:.3f} ms")
    print(f"NVPPredictor.predict_next (cache hit) p50 {hit[0]:.3f} ms  p90 {hit[1]:.3f} ms")
    print(f"peer eqx.filter_jit(forecast)          p50 {theirs[0]:.3f} ms  p90 {theirs[1]:.3f} ms")
    print(f"ratio peer / NVPPredictor p50: {theirs[0] / ours[0]:.2f}x")
    for b in (64, 512):
        hs = [hist[: lengths[i % len(lengths)]] for i in range(b)]
        nvp.predict_batch(hs)
        reps = max(3, 2000 // b)
        t0 = time.perf_counter()
        for _ in range(reps):
            nvp.predict_batch(hs)
        dt = (time.perf_counter() - t0) / reps
        print(f"predict_batch({b}): {b / dt:,.0f} windows/s ({dt * 1e3:.1f} ms per call)")


if __name__ == "__main__":
    main()
