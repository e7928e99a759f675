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

MAMS tuner preset (`mams-evolve` / `mams-validate`): `idf.evolve.minimize` over the settings
of `idf.sample_tuned`'s MAMS tuner (target acceptance, trajectory-length factor l_factor,
warm-up fraction), each candidate run through `sample_tuned(preset=<candidate>)` itself on
a TRAINING set (gaussian_k100, eight_schools_noncentered, logistic_breast_cancer and
funnel_d5, Neal's funnel in 5 dimensions; fixed training seeds shared by every
candidate), then checked on HELD-OUT targets (funnel (d = 10), irt_2pl, banana,
gaussian_k10000) and held-out seeds against the hand-set default (`method="auto"`:
target 0.9, l_factor 0.5, 5 % warm-up):

    PYTHONPATH=. nice -n 10 python experiments/evolve_sampler.py mams-evolve \
        --generations 8 --population 8 --budget-s 640 --seeds 0,1 --warmup-fractions 0.05 \
        --name mams-evolved-bias --out experiments/results/evolve_sampler
    PYTHONPATH=. nice -n 10 python experiments/evolve_sampler.py mams-validate \
        --preset experiments/results/evolve_sampler/mams-evolved-bias.json \
        --seeds 101,102,103 --json experiments/results/evolve_sampler/mams-validate-bias.json

Fitness of one run: -log10(min(ESS_hm, 1 / b2_avg) / gradients). ESS_hm is the harmonic
mean over coordinates of `idf.ess` of x_i^2 (1 / ESS_hm is the b2_avg of the MAMS paper's
metric an honest ESS predicts: E[b2_i] = 1 / ESS_i); b2_avg the MEASURED mean over
coordinates of (mean x_i^2 - E[x_i^2])^2 / Var[x_i^2] against the known answers (less the
reference's own squared standard error where the answer is a long-run reference). The
minimum takes what the ESS claims, capped by what the error shows: a run whose ESS
overstates its accuracy (the funnel) scores by its error. Gradients = every chain's,
tuning included; a candidate's fitness is the mean over training targets and seeds.
`mams-validate` reports both ratios per target; the packaging rule is the bias-based one
(`wins_every_held_out_by_bias`).
"""

from __future__ import annotations

import argparse
import math
import os
import re
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


TRAIN = ("gaussian_k100", "eight_schools_noncentered", "logistic_breast_cancer", "funnel_d5")
HELD_OUT = ("funnel", "irt_2pl", "banana", "gaussian_k10000")
WARMUP_FRACTIONS = (0.05, 0.1, 0.2)  # a Choice: the warm-up length is a compile-time size


def get_target(name: str):
    """A benchmarks/posteriors target, or "funnel_d<k>": Neal's funnel in k dimensions
    (exact moments; the d = 10 "funnel" stays held out)."""
    import dataclasses

    from benchmarks.posteriors import get_target as _get
    from benchmarks.posteriors.targets import _funnel

    m = re.fullmatch(r"funnel_d(\d+)", name)
    if m:
        t = _funnel(int(m.group(1)))
        return dataclasses.replace(t, name=name, source=f"Neal's funnel, d = {t.dim}")
    return _get(name)


def mams_space(
    l_factor_lo: float = 0.05,
    l_factor_hi: float = 4.0,
    acc_lo: float = 0.5,
    acc_hi: float = 0.97,
    warmup_fractions: tuple[float, ...] = WARMUP_FRACTIONS,
) -> dict:
    """The MAMS tuner settings `sample_tuned` takes from a tuner preset (one warm-up
    fraction: fixed, not searched)."""
    from idf_jax import evolve as ev

    space: dict[str, Any] = {
        "target_acceptance": ev.Real(acc_lo, acc_hi),
        "l_factor": ev.Real(l_factor_lo, l_factor_hi, log=True),
    }
    if len(warmup_fractions) > 1:
        space["warmup_fraction"] = ev.Choice(list(warmup_fractions))
    return space


MAMS_DEFAULT = {"target_acceptance": 0.9, "l_factor": 0.5, "warmup_fraction": 0.05}
"""`sample_tuned(method="auto")`'s hand-set MAMS tuning (MAMS_TARGET, l_factor, WARMUP_RULES)."""


def _run_mams(target, seed: int, chains: int, draws: int, preset) -> dict[str, float]:
    """One `sample_tuned` run (preset None: the default) and its efficiency numbers."""
    import idf_jax as idf

    k_init, k_run = jax.random.split(jax.random.key(seed))
    x0 = target.init(k_init, chains)
    kw = {} if preset is None else {"preset": preset}
    t0 = time.perf_counter()
    tr = idf.sample_tuned(target.energy, k_run, x0, draws, **kw)
    jax.block_until_ready(tr.positions)
    seconds = time.perf_counter() - t0
    x = np.asarray(tr.positions, np.float64)
    ess = np.asarray(idf.ess(jnp.asarray(x**2)), np.float64)
    ess = np.where(np.isfinite(ess) & (ess > 0), ess, 1e-6)
    tune = float(np.mean(np.asarray(tr.stats["tuning_grad_evals"])))
    samp = float(np.mean(np.asarray(tr.stats["sampling_grad_evals"])))
    grads = (tune + samp) * chains
    hm = float(1.0 / np.mean(1.0 / ess))
    m2 = np.mean(x**2, axis=(0, 1))
    b2 = (m2 - target.second_moment) ** 2 / target.var_second_moment
    # E[b2_i] = 1 / ESS_i + se_i^2 / Var[x_i^2]: take out the reference's own error
    floor = target.second_moment_se**2 / target.var_second_moment
    b2_avg = max(float(np.mean(b2 - floor)), float(np.mean(floor)), 1e-12)
    eff = min(hm, 1.0 / b2_avg)  # what the ESS claims, capped by what the bias shows
    return {
        "fitness": -math.log10(eff / grads),
        "fitness_ess": -math.log10(hm / grads),
        "eff_per_gradient": eff / grads,
        "bias_per_gradient": 1.0 / b2_avg / grads,
        "ess_hm_per_gradient": hm / grads,
        "ess_min_per_gradient": float(np.min(ess)) / grads,
        "tuning_grads_per_chain": tune,
        "sampling_grads_per_chain": samp,
        "b2_max_times_ess": float(np.max(b2 * ess)),
        "b2_avg": float(np.mean(b2)),
        "b2_avg_corrected": b2_avg,
        "b2avg_times_ess_hm": b2_avg * hm,
        "step_size": float(np.mean(np.asarray(tr.stats["step_size"]))),
        "L": float(np.mean(np.asarray(tr.stats["L"]))),
        "seconds": seconds,
    }


def _write_tuner_preset(path, name: str, config: dict, provenance: dict | None = None):
    from idf_jax import evolve as ev

    return ev.save_preset(
        path, name, {"method": "mams", **config}, target="sample_tuned", provenance=provenance
    )


def _space(args) -> dict:
    fractions = tuple(float(f) for f in args.warmup_fractions.split(",") if f)
    return mams_space(args.l_factor_lo, args.l_factor_hi, args.acc_lo, args.acc_hi, fractions)


def mams_evolve(args) -> dict:
    """Evolve the MAMS tuner's settings on the training targets; write the preset."""
    import tempfile

    from idf_jax import evolve as ev

    train = [n for n in args.train.split(",") if n]
    targets = [get_target(n) for n in train]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    tmp = tempfile.mkdtemp(prefix="mams-evolve-")
    log: list[dict] = []

    space = _space(args)
    fixed = {} if "warmup_fraction" in space else {"warmup_fraction": float(args.warmup_fractions)}

    def fitness(p, _key):  # host path: common training seeds for every candidate
        cfg = {**fixed, **{k: float(v) for k, v in p.items()}}
        path = _write_tuner_preset(tmp, f"cand{len(log)}", cfg)
        runs = {
            f"{t.name}/{s}": _run_mams(t, s, args.chains, args.draws, path)
            for t in targets
            for s in seeds
        }
        f = float(np.mean([r["fitness"] for r in runs.values()]))
        log.append({"config": cfg, "fitness": f, "runs": runs})
        print(f"eval {len(log)}: {cfg} fitness {f:.4f}", flush=True)
        return f

    t0 = time.perf_counter()
    base = fitness(dict(MAMS_DEFAULT), None)  # also compiles the default warm-up length
    res = ev.minimize(
        fitness,
        space,
        jax.random.key(args.seed),
        strategy="CMA_ES",
        population_size=args.population,
        num_generations=args.generations,
        start={k: v for k, v in MAMS_DEFAULT.items() if k in space},
        traceable=False,
        time_budget_s=args.budget_s,
    )
    seconds = time.perf_counter() - t0
    best = {**fixed, **{k: float(v) for k, v in res.best_params.items()}}
    command = "PYTHONPATH=. python " + " ".join(["experiments/evolve_sampler.py", *sys.argv[1:]])
    prov = {
        "command": command,
        "train_targets": train,
        "space": {k: repr(v) for k, v in space.items()},
        "fixed": fixed,
        "seeds": seeds,
        "chains": args.chains,
        "draws": args.draws,
        "strategy": res.strategy,
        "generations": res.num_generations,
        "evaluations": res.num_evaluations + 1,
        "budget_s": args.budget_s,
        "seconds": seconds,
        "load_average": os.getloadavg()[0],
        "metric": "-log10(min(harmonic-mean ESS of x^2, 1 / measured b2_avg of E[x^2]) "
        "/ gradients, tuning included)",
        "fitness": res.best_fitness,
        "baseline_config": dict(MAMS_DEFAULT),
        "baseline_fitness": base,
    }
    path = _write_tuner_preset(args.out, args.name, best, prov)
    out = {"preset": str(path), "best": best, "provenance": prov, "evaluations": log}
    from idf_jax._io import atomic_write_json

    atomic_write_json(str(path).replace(".json", ".log.json"), out)
    print(f"best {best} fitness {res.best_fitness:.4f} (default {base:.4f}); {path}", flush=True)
    return out


def mams_validate(args) -> dict:
    """The preset against the default on held-out targets (and training targets) and seeds."""
    from idf_jax._presets import read_preset

    seeds = [int(s) for s in args.seeds.split(",") if s]
    names = [n for n in args.targets.split(",") if n]
    trained_on = read_preset(args.preset).get("provenance", {}).get("train_targets", TRAIN)
    rows: dict[str, dict[str, list[dict[str, float]]]] = {}
    for name in names:
        t = get_target(name)
        rows[name] = {"default": [], "preset": []}
        for s in seeds:
            for way, p in (("default", None), ("preset", args.preset)):
                m = _run_mams(t, s, args.chains, args.draws, p)
                rows[name][way].append(m)
                print(f"{name} seed {s} {way}: {m}", flush=True)

    def geo(d, p, key):  # geometric mean over seeds of preset / default
        return float(np.exp(np.mean([np.log(b[key] / a[key]) for a, b in zip(d, p, strict=True)])))

    summary = {}
    for name, ways in rows.items():
        d, p = ways["default"], ways["preset"]
        summary[name] = {
            "held_out": name not in trained_on,
            "ratio_hm": geo(d, p, "ess_hm_per_gradient"),
            "ratio_min": geo(d, p, "ess_min_per_gradient"),
            "ratio_bias": geo(d, p, "bias_per_gradient"),
            "ratio_eff": geo(d, p, "eff_per_gradient"),
            "default_median_hm": float(np.median([a["ess_hm_per_gradient"] for a in d])),
            "preset_median_hm": float(np.median([b["ess_hm_per_gradient"] for b in p])),
            "default_median_bias": float(np.median([a["bias_per_gradient"] for a in d])),
            "preset_median_bias": float(np.median([b["bias_per_gradient"] for b in p])),
            "default_b2avg_x_ess": [a["b2avg_times_ess_hm"] for a in d],
            "preset_b2avg_x_ess": [b["b2avg_times_ess_hm"] for b in p],
            "default_b2xess_max": float(np.max([a["b2_max_times_ess"] for a in d])),
            "preset_b2xess_max": float(np.max([b["b2_max_times_ess"] for b in p])),
        }
        print(f"{name}: {summary[name]}", flush=True)
    held = [n for n, v in summary.items() if v["held_out"]]

    def geomean(key):
        return float(np.exp(np.mean([np.log(summary[n][key]) for n in held]))) if held else None

    out = {
        "preset": args.preset,
        "seeds": seeds,
        "chains": args.chains,
        "draws": args.draws,
        "load_average": os.getloadavg()[0],
        "per_seed": rows,
        "summary": summary,
        "held_out_geomean_ratio_hm": geomean("ratio_hm"),
        "held_out_geomean_ratio_bias": geomean("ratio_bias"),
        # the packaging rule: better by measured bias per gradient on every held-out target
        "wins_every_held_out_by_bias": bool(held)
        and all(summary[n]["ratio_bias"] > 1 for n in held),
    }
    print(
        "held-out geometric-mean ratios (preset / default): ESS_hm "
        f"{out['held_out_geomean_ratio_hm']}, bias-based {out['held_out_geomean_ratio_bias']}; "
        f"wins every held-out target by bias: {out['wins_every_held_out_by_bias']}"
    )
    return out


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
    e = sub.add_parser("mams-evolve", help="evolve sample_tuned's MAMS tuner settings")
    e.add_argument("--generations", type=int, default=8)
    e.add_argument("--population", type=int, default=8)
    e.add_argument("--budget-s", type=float, default=900.0)
    e.add_argument("--seeds", default="0,1,2", help="training seeds (shared by all candidates)")
    e.add_argument("--seed", type=int, default=0, help="the search's key")
    e.add_argument("--chains", type=int, default=16)
    e.add_argument("--draws", type=int, default=2000)
    e.add_argument("--name", default="mams-evolved")
    e.add_argument("--train", default=",".join(TRAIN), help="training targets")
    e.add_argument("--l-factor-lo", type=float, default=0.05, help="l_factor's lower bound")
    e.add_argument("--l-factor-hi", type=float, default=4.0, help="l_factor's upper bound")
    e.add_argument("--acc-lo", type=float, default=0.5, help="target_acceptance's lower bound")
    e.add_argument("--acc-hi", type=float, default=0.97, help="target_acceptance's upper bound")
    e.add_argument(
        "--warmup-fractions",
        default=",".join(map(str, WARMUP_FRACTIONS)),
        help="warm-up fractions searched (one: fixed; each new one compiles a new warm-up)",
    )
    e.add_argument("--out", default="experiments/results/evolve_sampler")
    v = sub.add_parser("mams-validate", help="a tuner preset against the default")
    v.add_argument("--preset", required=True)
    v.add_argument("--seeds", default="101,102,103")
    v.add_argument("--targets", default=",".join(HELD_OUT + TRAIN))
    v.add_argument("--chains", type=int, default=16)
    v.add_argument("--draws", type=int, default=2000)
    v.add_argument("--json", default=None)
    args, rest = ap.parse_known_args()
    if args.cmd in ("mams-evolve", "mams-validate"):
        print(f"load average {os.getloadavg()[0]:.1f}, jax {jax.__version__}", flush=True)
        out = mams_evolve(args) if args.cmd == "mams-evolve" else mams_validate(args)
        if getattr(args, "json", None):
            from idf_jax._io import atomic_write_json

            atomic_write_json(args.json, out)
        return
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
