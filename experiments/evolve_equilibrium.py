"""Study: evolved `sample_equilibrium` presets against the hand-set defaults.

For every instance (LJ clusters, Thomson problems: public records), every
configuration (the defaults at two budgets, each evolved preset) and every held-out
seed (never used in the search), one `sample_equilibrium` run of `--chains` chains from
the capsule's random starts. Reported per (instance, configuration): success rate
(chains within 1e-3 of the record), energy-and-gradient evaluations per success (the
tuner's fitness, an upper bound per run: chains x (prerelax + steps + relax)), warm wall
seconds per run and per success ("time to the record"; compile excluded, one warm-up
call per configuration first), best energy found. Transfer: the presets were tuned on
LJ13; LJ7 / LJ8 are smaller, LJ38 larger, Thomson another domain (with a projection).

Writes experiments/results/evolve_equilibrium.md.

Reduced (shared 2-core machine):
    PYTHONPATH=. python experiments/evolve_equilibrium.py --instances lj8,lj13,thomson12 --seeds 3
Full study:
    PYTHONPATH=. python experiments/evolve_equilibrium.py --instances lj7,lj8,lj13,lj38,thomson12 \\
        --seeds 10 --chains 32
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import jax

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import idf_jax as idf  # noqa: E402
import idf_jax.evolve as ev  # noqa: E402
from capsules import molecular, plasma  # noqa: E402
from idf_jax._io import atomic_write_bytes  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "results")
HELD_OUT_SEED0 = 1000  # the searches used seeds 0..9; held-out seeds start here


def instance(name: str):
    if name.startswith("lj"):
        n = int(name[2:])
        cap = molecular.lennard_jones_cluster(n)
        return cap, molecular.LJ_GLOBAL_MINIMA[n]
    if name.startswith("thomson"):
        n = int(name[7:])
        cap = plasma.thomson(n)
        return cap, plasma.THOMSON_MINIMA[n]
    raise SystemExit(f"unknown instance {name!r} (ljN or thomsonN)")


def run(cap, record, cfg, seeds, chains):
    pre, rel = int(cfg.get("prerelax_steps", 100)), int(cfg.get("relax_steps", 500))
    steps = int(cfg["num_steps"])

    def one(seed):
        k_init, k_run = jax.random.split(jax.random.key(seed))
        x0 = cap.init(k_init, chains)
        res = idf.sample_equilibrium(
            cap.energy_fn,
            k_run,
            x0,
            constraints=list(cap.constraints) or None,
            project=cap.project,
            target=record,
            **cfg,
        )
        return int(res.num_reached), float(res.best_energy)

    one(HELD_OUT_SEED0 - 1)  # warm-up: compile outside the timing
    succ, best, t0 = 0, math.inf, time.perf_counter()
    for s in seeds:
        r, b = one(s)
        succ, best = succ + r, min(best, b)
    secs = time.perf_counter() - t0
    runs = chains * len(seeds)
    evals = runs * (pre + steps + rel)
    return {
        "success_rate": succ / runs,
        "successes": succ,
        "runs": runs,
        "evals_per_success": evals / succ if succ else math.inf,
        "s_per_run": secs / len(seeds),
        "s_per_success": secs / succ if succ else math.inf,
        "best": best,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", default="lj8,lj13,thomson12")
    ap.add_argument("--seeds", type=int, default=3, help="held-out seeds per instance")
    ap.add_argument("--chains", type=int, default=16)
    ap.add_argument(
        "--presets",
        default=",".join(ev.available_presets()),
        help="comma-separated preset names or files",
    )
    args = ap.parse_args()
    seeds = list(range(HELD_OUT_SEED0, HELD_OUT_SEED0 + args.seeds))
    configs = {
        "defaults, num_steps=1000": {"num_steps": 1000},
        "defaults, num_steps=2000 (CLI)": {"num_steps": 2000},
    }
    for p in [p for p in args.presets.split(",") if p]:
        rec = ev.presets.read_preset(p)
        if rec["target"] == "sample_equilibrium":
            configs[f"preset {rec['name']}"] = dict(rec["config"])
    load = os.getloadavg()[0]
    t_start = time.perf_counter()
    lines = [
        "# Evolved presets vs hand-set defaults (`experiments/evolve_equilibrium.py`)",
        "",
        f"Command: `PYTHONPATH=. python experiments/evolve_equilibrium.py --instances "
        f"{args.instances} --seeds {args.seeds} --chains {args.chains}`",
        "",
        f"Held-out seeds {seeds[0]}..{seeds[-1]} (the searches used seeds 0-2), {args.chains} "
        f"chains per run, success = within 1e-3 of the record. Machine: 2 shared CPU cores "
        f"(load average {load:.1f} at the start; other engineers' jobs running), so wall "
        "times are noisy; evaluations are exact.",
        "",
        "Configurations:",
    ]
    for name, cfg in configs.items():
        lines.append(f"- {name}: `{cfg}`")
    lines += [
        "",
        "| instance | record | configuration | success rate | evals / success | s / run (warm) | s / success | best energy |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for inst in args.instances.split(","):
        cap, record = instance(inst)
        for name, cfg in configs.items():
            r = run(cap, record, cfg, seeds, args.chains)
            row = (
                f"| {inst} | {record} | {name} | {r['successes']}/{r['runs']} "
                f"({100 * r['success_rate']:.0f}%) | {r['evals_per_success']:.4g} | "
                f"{r['s_per_run']:.2f} | {r['s_per_success']:.3g} | {r['best']:.6f} |"
            )
            print(row, flush=True)
            lines.append(row)
    lines += ["", f"Total wall time {time.perf_counter() - t_start:.0f} s.", ""]
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "evolve_equilibrium.md")
    atomic_write_bytes(path, "\n".join(lines).encode())
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
