"""Study: evolved `sample_equilibrium` presets against the hand-set defaults, and transfer.

For every instance (LJ clusters with their Cambridge Cluster Database records, Thomson
problems, the 2-D AB protein model of the length-13 Fibonacci sequence), every configuration (the defaults: method "auto" = parallel tempering of
basin hopping; plain basin hopping; each evolved preset) and every held-out seed (never
used in a search), one `sample_equilibrium` run of `--chains` chains from the capsule's
random starts, stopping once a chain is within 1e-3 of the record (`stop_at_target`).

Reported per (instance, configuration), the measures of benchmarking studies (COCO):
- runs that reached the record / seeds (a run = one seed, all its chains);
- ERT, the expected running time in energy-and-gradient evaluations: the evaluations of
  every run, until its first hit (`hit_evaluations`) or all it spent
  (`num_evaluations`), summed, per run that reached the record (exact counts);
- wall seconds per run (warm: one warm-up run per configuration and instance first,
  its time reported as "first call s", compile included) and wall ERT (seconds of all
  runs per run that reached the record: "time to the record");
- the best energy found.

Basin-hopping configurations get the instance's per-chain evaluation budget as
`num_steps` (`--budget`, e.g. lj13=3000); an annealing preset keeps its own `num_steps`
(annealing steps). Transfer: a preset tuned on a small instance (its provenance says
which) is run unchanged on the larger ones.

Each call measures the instances it is given and merges them into
experiments/results/evolve_equilibrium.json (rows keyed by instance and configuration),
then rewrites experiments/results/evolve_equilibrium.md from all rows (followed by the
hand-written reading in evolve_equilibrium.notes.md), so a study is run
as one short call per instance on a shared machine:

    nice -n 5 env PYTHONPATH=. python experiments/evolve_equilibrium.py --instances lj13 \\
        --seeds 5 --presets lj13-anneal,lj19-hopping
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import idf_jax as idf  # noqa: E402
import idf_jax.evolve as ev  # noqa: E402
from capsules import biomedical, molecular, plasma  # noqa: E402
from idf_jax._io import atomic_write_bytes, atomic_write_json  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "results")
HELD_OUT_SEED0 = 1000  # the searches used seeds 0..9; held-out seeds start here
HOPPING = ("auto", "basin_hopping", "parallel_tempering", "population")


def instance(name: str):
    if name.startswith("lj"):
        n = int(name[2:])
        return molecular.lennard_jones_cluster(n), molecular.LJ_GLOBAL_MINIMA[n]
    if name.startswith("thomson"):
        n = int(name[7:])
        return plasma.thomson(n), plasma.THOMSON_MINIMA[n]
    if name.startswith("ab"):  # 2-D AB model, Fibonacci sequence of length N
        n = int(name[2:])
        if n not in biomedical.AB_KNOWN_MINIMA_2D:
            raise SystemExit(f"no known AB minimum for length {n}")
        seq = biomedical.fibonacci_sequence(n)
        return biomedical.ab_protein(seq, dim=2), biomedical.AB_KNOWN_MINIMA_2D[n]
    raise SystemExit(f"unknown instance {name!r} (ljN, thomsonN or abN)")


def _call(cap, record, cfg, seed, chains):
    k_init, k_run = jax.random.split(jax.random.key(seed))
    x0 = cap.init(k_init, chains)
    t0 = time.perf_counter()
    res = idf.sample_equilibrium(
        cap.energy_fn,
        k_run,
        x0,
        constraints=list(cap.constraints) or None,
        project=cap.project,
        target=record,
        stop_at_target=True,
        **cfg,
    )
    jax.block_until_ready(res.best_energy)
    secs = time.perf_counter() - t0
    reached = int(res.num_reached) > 0
    spent = int(res.num_evaluations)
    hit = int(res.hit_evaluations)
    return reached, (hit if reached and hit >= 0 else spent), secs, float(res.best_energy)


def run(cap, record, cfg, seeds, chains):
    first_s = _call(cap, record, cfg, HELD_OUT_SEED0 - 1, chains)[2]  # compile + warm-up
    reached, spent, secs, best = 0, 0, 0.0, math.inf
    hits = []
    for s in seeds:
        r, e, t, b = _call(cap, record, cfg, s, chains)
        reached += r
        spent += e
        secs += t
        best = min(best, b)
        if r:
            hits.append(e)
    return {
        "reached": reached,
        "seeds": len(seeds),
        "ert": spent / reached if reached else math.inf,
        "median_hit": float(np.median(hits)) if hits else math.inf,
        "s_per_run": secs / len(seeds),
        "wall_ert": secs / reached if reached else math.inf,
        "first_call_s": first_s,
        "best": best,
    }


def configs_for(preset_names: list[str], budget: int) -> dict[str, dict]:
    out = {
        "defaults (auto = parallel tempering)": {"num_steps": budget},
        "defaults, method=basin_hopping": {"num_steps": budget, "method": "basin_hopping"},
    }
    for p in preset_names:
        rec = ev.presets.read_preset(p)
        if rec["target"] != "sample_equilibrium":
            continue
        cfg = dict(rec["config"])
        if cfg.get("method", "auto") in HOPPING:
            cfg["num_steps"] = budget  # the instance's budget, not the search's
        out[f"preset {rec['name']}"] = cfg
    return out


def _fmt(x: float | None, spec: str) -> str:
    """A number, or "-" for never (inf, stored as null in the JSON)."""
    return "-" if x is None or not math.isfinite(x) else format(x, spec)


def write_md(rows: dict, meta: dict) -> str:
    lines = [
        "# Evolved presets vs hand-set defaults (`experiments/evolve_equilibrium.py`)",
        "",
        "Generated from experiments/results/evolve_equilibrium.json (the script merges every "
        "call's rows). Held-out seeds from 1000 (the searches used seeds 0-2); success = a "
        "chain within 1e-3 of the record; runs stop at the record. ERT = evaluations of all "
        "runs (until the first hit, or all they spent) per run that reached the record. "
        "Wall times on a shared 2-core CPU machine (load average in the last column), "
        "noisy; evaluations are exact.",
        "",
        "Calls:",
    ]
    for c in meta.get("calls", []):
        lines.append(f"- `{c['command']}` ({c['date']}, load {c['load']:.1f}, {c['wall_s']:.0f} s)")
    lines += ["", "Configurations:"]
    for name, cfg in sorted(meta.get("configs", {}).items()):
        shown = {k: v for k, v in cfg.items() if k != "num_steps" or cfg.get("method") == "anneal"}
        lines.append(f"- {name}: `{shown}`")
    lines.append("(basin-hopping configurations: num_steps = the budget column)")
    lines += [
        "",
        "| instance | record | configuration | chains | budget / chain | runs reached | ERT (evals) "
        "| median evals to hit | s / run (warm) | wall ERT s | first call s | best energy | load |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key in sorted(
        rows, key=lambda k: (int("".join(c for c in k.split("|")[0] if c.isdigit()) or 0), k)
    ):
        r = rows[key]
        lines.append(
            f"| {r['instance']} | {r['record']} | {r['config']} | {r['chains']} | {r['budget']} "
            f"| {r['reached']}/{r['seeds']} | {_fmt(r['ert'], '.4g')} | {_fmt(r['median_hit'], '.4g')} "
            f"| {r['s_per_run']:.2f} | {_fmt(r['wall_ert'], '.3g')} | {r['first_call_s']:.1f} "
            f"| {r['best']:.6f} | {r['load']:.1f} |"
        )
    notes = os.path.join(OUT, "evolve_equilibrium.notes.md")  # the hand-written reading
    if os.path.isfile(notes):
        lines += ["", open(notes).read().rstrip()]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", default="lj13")
    ap.add_argument("--seeds", type=int, default=5, help="held-out seeds per instance")
    ap.add_argument("--chains", type=int, default=16)
    ap.add_argument(
        "--budget",
        default="lj13=3000,lj19=3000,lj26=6000,lj31=8000",
        help="per-chain evaluation budget (num_steps) of basin hopping, per instance",
    )
    ap.add_argument(
        "--presets", default=",".join(ev.available_presets()), help="preset names or files"
    )
    ap.add_argument(
        "--configs",
        default="",
        help="only configurations containing one of these (comma-separated)",
    )
    args = ap.parse_args()
    budgets = dict(kv.split("=") for kv in args.budget.split(",") if kv)
    seeds = list(range(HELD_OUT_SEED0, HELD_OUT_SEED0 + args.seeds))
    json_path = os.path.join(OUT, "evolve_equilibrium.json")
    data = {"rows": {}, "meta": {"calls": [], "configs": {}}}
    if os.path.isfile(json_path):
        data = json.loads(open(json_path).read())
    load0, t_start = os.getloadavg()[0], time.perf_counter()
    for inst in args.instances.split(","):
        cap, record = instance(inst)
        budget = int(budgets.get(inst, 3000))
        for name, cfg in configs_for([p for p in args.presets.split(",") if p], budget).items():
            wanted = [c for c in args.configs.split(",") if c]
            if wanted and not any(c in name for c in wanted):
                continue
            r = run(cap, record, cfg, seeds, args.chains)
            r.update(
                instance=inst,
                record=record,
                config=name,
                chains=args.chains,
                budget=cfg["num_steps"],
                load=os.getloadavg()[0],
            )
            data["rows"][f"{inst}|{name}"] = r
            data["meta"]["configs"][name] = cfg
            print(
                f"{inst} {name}: reached {r['reached']}/{r['seeds']} ERT {r['ert']:.4g} "
                f"s/run {r['s_per_run']:.2f} first {r['first_call_s']:.1f} best {r['best']:.6f} "
                f"load {r['load']:.1f}",
                flush=True,
            )
            atomic_write_json(json_path, data)
    data["meta"]["calls"].append(
        {
            "command": "python experiments/evolve_equilibrium.py " + " ".join(sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load": load0,
            "wall_s": time.perf_counter() - t_start,
        }
    )
    atomic_write_json(json_path, data)
    md = os.path.join(OUT, "evolve_equilibrium.md")
    atomic_write_bytes(md, write_md(data["rows"], data["meta"]).encode())
    print(f"wrote {md}")


if __name__ == "__main__":
    main()
