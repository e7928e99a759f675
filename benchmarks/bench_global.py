"""Global search side by side: idf.sample_equilibrium vs scipy basinhopping vs ASE.

Same machine, one process, the same instances and random starts (the capsule's `init`):

- idf: the default call (method "auto", the capsule's moves), `chains` chains, stopped
  at the first hit (`stop_at_target`); timed warm (compiled once on another seed) and
  cold (compilation included) — the ratios use the warm time;
- scipy: `scipy.optimize.basinhopping` with L-BFGS-B local steps and its defaults
  (T = 1, stepsize 0.5, adaptive), float64; LJ energy and gradient in vectorised NumPy
  (a jitted JAX call costs more in dispatch than the 26-atom energy itself), the AB
  energy as the capsule's JAX energy, jitted before the clock starts; stopped by a
  callback at the first hit;
- ASE (LJ only): `ase.optimize.basin.BasinHopping` with its FIRE optimiser on ASE's
  `LennardJones` calculator (eps = sigma = 1), T = 0.8, dr = 0.35.

Equal budgets: every peer gets the same wall-clock cap per run (`--cap` seconds) and
the same evaluation cap (idf's chains x budget); a run that does not reach the target
within its cap counts as a miss (its time is the cap, a lower bound).

    PYTHONPATH=. python benchmarks/bench_global.py [--instances lj26,ab13] [--seeds 5] [--cap 120]
        [--hop-loop auto|sync|async] [--no-scipy] [--no-ase] [--seed0 0]
        [--active-chains rule|N|rule,128] [--cold-budget N] [--idf-kw JSON]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "experiments"))
from global_search import (  # noqa: E402  # pyright: ignore[reportMissingImports]  (path set above)
    KNOWN,
    capsule_for,
    tolerance,
)

import idf_jax as idf  # noqa: E402


class _Hit(Exception):
    pass


def _lj_numpy(z):
    """LJ energy and gradient (eps = sigma = 1) of flat coordinates, NumPy float64."""
    x = z.reshape(-1, 3)
    d = x[:, None, :] - x[None, :, :]
    r2 = np.sum(d * d, axis=-1)
    np.fill_diagonal(r2, np.inf)
    s6 = r2**-3
    e = 2.0 * np.sum(s6 * s6 - s6)  # each pair twice: 4 eps / 2
    f = (24.0 * s6 - 48.0 * s6 * s6) / r2  # dE/d(r) / r per pair
    g = np.sum(f[:, :, None] * d, axis=1)
    return e, g.ravel()


def run_idf(name, seed, chains, budget, hop_loop="auto", active_chains=None, extra=None):
    cap = capsule_for(name)
    known = KNOWN[name]
    k_init, k_run = jax.random.split(jax.random.key(seed))
    t0 = time.perf_counter()
    res = idf.sample_equilibrium(
        cap.energy_fn,
        k_run,
        cap.init(k_init, chains),
        num_steps=budget,
        moves=cap.moves,
        constraints=list(cap.constraints) or None,
        project=cap.project,
        target=known,
        target_tol=tolerance(name, known),
        stop_at_target=True,
        hop_loop=hop_loop,
        active_chains=active_chains,
        **(extra or {}),
    )
    wall = time.perf_counter() - t0
    hit = int(res.first_hit_hop) >= 0
    return {
        "hit": hit,
        "best": float(res.best_energy),
        "time": float(res.time_to_target) if hit else wall,
        "evals": float(res.hit_evaluations) if hit else float(res.num_evaluations),
        "after_hit_s": wall - float(res.time_to_target) if hit else float("nan"),
        "load": os.getloadavg()[0],
    }


def run_scipy(name, seed, cap_s, max_evals):
    from scipy.optimize import basinhopping

    cap = capsule_for(name)
    known = KNOWN[name]
    tol = tolerance(name, known)
    x0 = np.asarray(cap.init(jax.random.split(jax.random.key(seed))[0], 1)[0], np.float64)
    shape = x0.shape
    with jax.enable_x64(True):
        if name.startswith("lj"):
            vg = _lj_numpy  # vectorised NumPy: no per-call dispatch overhead
        else:
            jitted = jax.jit(jax.value_and_grad(lambda z: cap.energy_fn(z.reshape(shape))))
            jitted(jnp.asarray(x0.ravel()))  # compile outside the timing
            vg = lambda z: jitted(jnp.asarray(z))  # noqa: E731
        count = [0]
        t0 = time.perf_counter()

        def fun(z):
            count[0] += 1
            if count[0] > max_evals or time.perf_counter() - t0 > cap_s:
                raise TimeoutError
            e, g = vg(z)
            return float(e), np.asarray(g, np.float64)

        def callback(x, f, accept):
            if f <= known + tol:
                raise _Hit

        try:
            basinhopping(
                fun,
                x0.ravel(),
                niter=10**9,
                minimizer_kwargs={"method": "L-BFGS-B", "jac": True},
                callback=callback,
                seed=seed,  # pyright: ignore[reportCallIssue]  (scipy's legacy keyword, kept: same stream as earlier runs)
            )
            hit = False
        except _Hit:
            hit = True
        except TimeoutError:
            hit = False
    return {"hit": hit, "time": time.perf_counter() - t0, "evals": float(count[0])}


def run_ase(name, seed, cap_s):
    from ase import Atoms
    from ase.calculators.lj import LennardJones
    from ase.optimize import FIRE
    from ase.optimize.basin import BasinHopping

    cap = capsule_for(name)
    known = KNOWN[name]
    x0 = np.asarray(cap.init(jax.random.split(jax.random.key(seed))[0], 1)[0], np.float64)
    atoms = Atoms("Ar" + str(len(x0)), positions=x0)
    atoms.calc = LennardJones(sigma=1.0, epsilon=1.0, rc=1e3)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        bh = BasinHopping(
            atoms,
            temperature=0.8,
            dr=0.35,
            optimizer=FIRE,
            fmax=1e-3,
            logfile=None,  # pyright: ignore[reportArgumentType]  (ASE takes None: no log)
            trajectory=os.path.join(d, "lowest.traj"),
            optimizer_logfile=None,  # pyright: ignore[reportArgumentType]
            local_minima_trajectory=os.path.join(d, "minima.traj"),
        )
        hit = False
        while time.perf_counter() - t0 < cap_s:
            bh.run(1)
            if bh.Emin <= known + tolerance(name, known):
                hit = True
                break
    return {"hit": hit, "time": time.perf_counter() - t0, "evals": float("nan")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", default="lj26,ab13")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--chains", type=int, default=128)
    ap.add_argument("--budget", type=int, default=100_000)
    ap.add_argument("--cap", type=float, default=120.0, help="wall seconds per peer run")
    ap.add_argument("--no-ase", action="store_true")
    ap.add_argument("--no-scipy", action="store_true", help="idf only (e.g. chain-count studies)")
    ap.add_argument("--seed0", type=int, default=0, help="first seed")
    ap.add_argument(
        "--cold-budget",
        type=int,
        default=None,
        help="budget of the compiling run on seed 1000 (default: --budget; the budget is "
        "data, so a small one compiles the same loop: idf_cold_s then times less search)",
    )
    ap.add_argument(
        "--hop-loop", default="auto", help="idf basin-hopping loop: auto | sync | async"
    )
    ap.add_argument(
        "--active-chains",
        default="rule",
        help="idf active_chains: 'rule' (the default rule) or an int; a comma list runs "
        "each side by side (e.g. 'rule,128': the rule against all 128 chains at once); "
        "the first is the 'idf' row",
    )
    ap.add_argument(
        "--idf-kw",
        default="{}",
        help="extra keyword arguments of the idf call, as JSON (e.g. '{\"relax_steps\": 2500}')",
    )
    args = ap.parse_args()
    extra = json.loads(args.idf_kw)
    actives = [None if a == "rule" else int(a) for a in args.active_chains.split(",")]
    labels = ["idf"] + [f"idf_active{a or 'rule'}" for a in actives[1:]]
    out = {}
    for name in args.instances.split(","):
        colds = [
            run_idf(
                name, 1000, args.chains, args.cold_budget or args.budget, args.hop_loop, a, extra
            )
            for a in actives
        ]  # compiles
        cold = colds[0]
        rows = {lab: [] for lab in labels} | {"scipy": [], "ase": []}
        for seed in range(args.seed0, args.seed0 + args.seeds):
            for lab, a in zip(labels, actives):
                rows[lab].append(
                    run_idf(name, seed, args.chains, args.budget, args.hop_loop, a, extra)
                )
            if not args.no_scipy:
                rows["scipy"].append(run_scipy(name, seed, args.cap, args.chains * args.budget))
            if name.startswith("lj") and not args.no_ase:
                rows["ase"].append(run_ase(name, seed, args.cap))
            print(name, seed, {k: v[-1] for k, v in rows.items() if v}, flush=True)
        summary = {"idf_cold_s": cold["time"], "load_avg": os.getloadavg()[0]}
        summary["idf_cold_s_each"] = [round(c["time"], 2) for c in colds]
        for peer, rs in rows.items():
            if rs:
                summary[peer] = {
                    "success": f"{sum(r['hit'] for r in rs)}/{len(rs)}",
                    "median_s": float(np.median([r["time"] for r in rs])),
                    "times": [round(r["time"], 2) for r in rs],
                    "evals": [float(f"{r['evals']:.3g}") for r in rs],
                    "hits": [bool(r["hit"]) for r in rs],
                }
                if all("best" in r for r in rs):
                    summary[peer]["best"] = [round(r["best"], 4) for r in rs]
        if rows["idf"]:
            t_idf = summary["idf"]["median_s"]
            for peer in ("scipy", "ase"):
                if peer in summary:
                    summary[peer]["median_over_idf"] = summary[peer]["median_s"] / t_idf
                    for lab in labels[1:]:
                        t = summary[lab]["median_s"]
                        summary[peer][f"median_over_{lab}"] = summary[peer]["median_s"] / t
        out[name] = summary
        print(name, json.dumps(summary), flush=True)
    print(json.dumps({"args": vars(args), "results": out}, indent=1))


if __name__ == "__main__":
    main()
