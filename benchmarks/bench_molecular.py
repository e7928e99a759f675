"""LJ energy+gradient throughput: capsules.molecular.lj_energy vs JAX-MD, side by side.

For each cluster size n in (13, 38, 100) and a batch of 1024 clusters, times one jitted,
vmapped `jax.value_and_grad` call of
  - ours:   capsules.molecular.lj_energy (hand-derived force through jax.custom_vjp)
  - JAX-MD: jax_md.energy.lennard_jones_pair(space.free()) with the cutoff pushed out of
            reach (r_onset = r_cutoff = 1e6 sigma), i.e. the same untruncated energy,
in the same process on the same inputs, checks that energies and gradients agree, and
prints the median time of each and the ratio JAX-MD / ours.

    PYTHONPATH=$PWD python benchmarks/bench_molecular.py [--batch 1024] [--repeats 20]
"""

from __future__ import annotations

import argparse
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from capsules.molecular import lennard_jones_cluster, lj_energy


def _time(fn, x, repeats):
    jax.block_until_ready(fn(x))  # compile + warm
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(x))
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--sizes", type=int, nargs="+", default=[13, 38, 100])
    args = ap.parse_args(argv)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # jax_md asks for float64 under x64-off
        from jax_md import energy as md_energy
        from jax_md import space

    displacement, _ = space.free()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        md_lj = md_energy.lennard_jones_pair(
            displacement, sigma=1.0, epsilon=1.0, r_onset=1e6, r_cutoff=1e6 + 1.0
        )

    ours = jax.jit(jax.vmap(jax.value_and_grad(lj_energy)))
    theirs = jax.jit(jax.vmap(jax.value_and_grad(md_lj)))

    print(f"devices: {jax.devices()}  batch={args.batch}  repeats={args.repeats}")
    cols = ("ours ms", "jax-md ms", "ratio", "rel dE", "rel dG")
    print(f"{'n':>5} " + " ".join(f"{c:>10}" for c in cols))
    for n in args.sizes:
        x = lennard_jones_cluster(n).init(jax.random.key(n), args.batch)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            e1, g1 = ours(x)
            e2, g2 = theirs(x)
        # relative agreement: float32 sums in a different order
        de = float(jnp.max(jnp.abs(e1 - e2) / (1.0 + jnp.abs(e2))))
        dg = float(jnp.max(jnp.abs(g1 - g2)) / (1.0 + jnp.max(jnp.abs(g2))))
        if de > 1e-5 or dg > 1e-5:
            raise SystemExit(f"n={n}: energies/gradients differ (rel dE {de:.2e}, rel dG {dg:.2e})")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t_ours = _time(ours, x, args.repeats)
            t_md = _time(theirs, x, args.repeats)
        print(
            f"{n:>5} {1e3 * t_ours:>10.2f} {1e3 * t_md:>10.2f} {t_md / t_ours:>10.2f} "
            f"{de:>10.1e} {dg:>10.1e}"
        )


if __name__ == "__main__":
    main()
