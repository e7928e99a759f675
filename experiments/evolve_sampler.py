"""A sampler preset from a real `idf evolve sampler` run, checked on held-out seeds.

Target: the 100-d rotated ill-conditioned Gaussian of benchmarks/posteriors
(`gaussian_k100`: covariance Q diag(lam) Q^T, lam log-spaced over [0.1, 10], Q a Haar
rotation, seed 0; exact E[x_i^2] known), registered as the capsule
`benchmarks.gaussian_k100` so that the CLI command itself runs on it.

    # 1. evolve (the CLI command `idf evolve sampler`, in this process):
    PYTHONPATH=. nice -n 5 python experiments/evolve_sampler.py evolve -- \
        --sampler hmc --chains 8 --steps 400 --budget-s 240 --generations 8 \
        --population 8 --name hmc-gaussian-k100 --out experiments/results/evolve_sampler
    # 2. compare on held-out seeds against sample_tuned's own tuning:
    PYTHONPATH=. nice -n 5 python experiments/evolve_sampler.py compare \
        --preset experiments/results/evolve_sampler/hmc-gaussian-k100.json --seeds 101,102,103

`compare` runs, per seed, `idf.sample_tuned` three ways on the same chains: with the
preset (no warm-up tuning; the warm-up steps are a burn-in), with its default tuning
(method="auto", i.e. MAMS) and with the preset's sampler tuned by window adaptation
(method="hmc" / "mala"). Effective samples: min over the 100 coordinates of idf.ess of
x_i^2 (the hardest statistic the MAMS paper's metric uses); cost: gradient evaluations
per chain, warm-up included (`tuning_grad_evals + sampling_grad_evals`). Correctness:
max_i (mean x_i^2 - E[x_i^2])^2 / Var[x_i^2] * ESS (about 1 for an unbiased sampler).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

CAPSULE = "benchmarks.gaussian_k100"


def register() -> str:
    """Register the target as a capsule (idempotent)."""
    import capsules
    from benchmarks.posteriors import get_target
    from capsules import Capsule
    from capsules._base import _REGISTRY

    if CAPSULE in capsules.registry():
        return CAPSULE

    def factory() -> Capsule:
        t = get_target("gaussian_k100")
        return Capsule(
            name=CAPSULE,
            energy_fn=t.energy,
            init=t.init,
            decode=lambda x: {"x": [float(v) for v in x]},
            params={},
            description=t.source,
        )

    capsules.register(CAPSULE, "100-d rotated Gaussian, condition number 100 (benchmarks)")(factory)
    assert CAPSULE in _REGISTRY
    return CAPSULE


def evolve(cli_args: list[str]) -> int:
    from idf_jax.runtime.cli import main

    register()
    args = ["evolve", "sampler", "--capsule", CAPSULE, *cli_args]
    sys.argv = ["idf", *args]  # the preset's provenance records the CLI command
    return main(args)


def _measure(trace, target) -> dict[str, float]:
    import idf_jax as idf

    x = np.asarray(trace.positions, np.float64)  # (chains, draws, d)
    ess = np.asarray(idf.ess(jnp.asarray(x**2)))
    m2 = np.mean(x**2, axis=(0, 1))
    b2 = (m2 - target.second_moment) ** 2 / target.var_second_moment
    grads = float(
        np.mean(np.asarray(trace.stats["tuning_grad_evals"]))
        + np.mean(np.asarray(trace.stats["sampling_grad_evals"]))
    )
    chains = x.shape[0]
    return {
        "ess_min_x2": float(np.min(ess)),
        "grads_per_chain": grads,
        "ess_per_gradient": float(np.min(ess)) / (grads * chains),
        "b2_max_times_ess": float(np.max(b2 * ess)),
        "step_size": float(np.mean(np.asarray(trace.stats["step_size"]))),
    }


def compare(preset: str, seeds: list[int], chains: int, draws: int, warmup: int) -> dict:
    import idf_jax as idf
    from benchmarks.posteriors import get_target
    from idf_jax.run.tuned import read_sampler_preset

    target = get_target("gaussian_k100")
    kind, config = read_sampler_preset(preset)
    ways: dict[str, dict[str, Any]] = {
        "preset": dict(preset=preset),
        "auto (MAMS, tuned)": dict(method="auto"),
        f"{kind} (window-tuned)": dict(method=kind),
    }
    rows: dict[str, list[dict[str, float]]] = {w: [] for w in ways}
    for seed in seeds:
        k_init, k_run = jax.random.split(jax.random.key(seed))
        x0 = target.init(k_init, chains)
        for way, kw in ways.items():
            t0 = time.perf_counter()
            tr = idf.sample_tuned(target.energy, k_run, x0, draws, num_warmup=warmup, **kw)
            jax.block_until_ready(tr.positions)
            m = _measure(tr, target)
            m["seconds"] = time.perf_counter() - t0
            rows[way].append(m)
            print(f"seed {seed} {way}: {m}", flush=True)
    summary = {
        way: {k: float(np.median([r[k] for r in rs])) for k in rs[0]} for way, rs in rows.items()
    }
    return {
        "target": "gaussian_k100",
        "preset": preset,
        "preset_config": config,
        "sampler": kind,
        "seeds": seeds,
        "chains": chains,
        "draws": draws,
        "num_warmup": warmup,
        "load_average": os.getloadavg()[0],
        "per_seed": rows,
        "median": summary,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("evolve", help="run `idf evolve sampler` on the target (args after --)")
    c = sub.add_parser("compare", help="the preset against sample_tuned on held-out seeds")
    c.add_argument("--preset", required=True)
    c.add_argument("--seeds", default="101,102,103")
    c.add_argument("--chains", type=int, default=8)
    c.add_argument("--draws", type=int, default=1000)
    c.add_argument("--warmup", type=int, default=500)
    c.add_argument("--json", default=None, help="write the numbers here")
    args, rest = ap.parse_known_args()
    if args.cmd == "evolve":
        raise SystemExit(evolve([a for a in rest if a != "--"]))
    seeds = [int(s) for s in args.seeds.split(",") if s]
    print(f"load average {os.getloadavg()[0]:.1f}, jax {jax.__version__}", flush=True)
    out = compare(args.preset, seeds, args.chains, args.draws, args.warmup)
    for way, m in out["median"].items():
        print(
            f"{way}: ESS(x^2) min {m['ess_min_x2']:.1f}, {m['grads_per_chain']:.0f} grads/chain, "
            f"ESS per gradient {m['ess_per_gradient']:.3g}, b2*ESS max {m['b2_max_times_ess']:.2f}"
        )
    if args.json:
        from idf_jax._io import atomic_write_json

        atomic_write_json(args.json, out)


if __name__ == "__main__":
    main()
