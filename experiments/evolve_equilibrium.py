"""Study: evolved `sample_equilibrium` presets against the hand-set defaults, and transfer.

For every instance (LJ clusters with their Cambridge Cluster Database records, Thomson
problems, the 2-D AB protein model of the length-13 Fibonacci sequence), every configuration (the defaults: method "auto" = parallel tempering of
basin hopping; plain basin hopping; each evolved preset) and every held-out seed (never
used in a search), one `sample_equilibrium` run of `--chains` chains from the capsule's
random starts, with the capsule's `moves` for every basin-hopping configuration (as
`idf equilibrium` passes them; the search's tasks carry them too), stopping once a chain is within 1e-3 of the record (`stop_at_target`).

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

`--search` runs the search that produces a preset instead (see `search`): one CMA-ES
search over the data options of the default method (parallel-tempering basin hopping)
on several small instances at once (`--train`, training seeds 0.., few chains, a small
budget per instance), fitness the mean over instances of log10(ERT) (`metric="ert_mean"`
of `idf.evolve.tune_equilibrium`: a run that never reaches the record costs its whole
budget, twice over when no run of that instance reaches it). It writes the preset and
the search record to experiments/results/<name>.preset.json and
evolve_<name>_search.{json,md}, then re-ranks the search's `--validate-top` best
configurations and the defaults on validation seeds from 100 (`validate`; alone:
`--validate --name NAME`) and keeps the best of them there as the preset, which is then
measured by this script's default
mode on held-out seeds and held-out instances:

    nice -n 5 env PYTHONPATH=. python experiments/evolve_equilibrium.py --search \\
        --train lj13,lj19,thomson32,ab8 --name multi-hopping --budget-s 3000

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
HELD_OUT_SEED0 = 1000  # the searches use seeds below this; held-out seeds start here
HOPPING = ("auto", "basin_hopping", "parallel_tempering", "population")


# Thomson records beyond the capsule's closed forms: the table of Wikipedia's "Thomson
# problem" (best known energies, Wales' Cambridge Cluster Database)
THOMSON_RECORDS = {24: 223.347074052, 32: 412.261274651, 72: 2255.001190975}
# 2-D AB model, Fibonacci length 8 (BABABBAB): no published value at
# hand; the lowest energy of 3 runs of 32 chains x 20 000 evaluations of the defaults
# (seeds 500-502, 2026-12-03), which all three reached (-1.4681642 .. -1.4681654): a
# measured reference, used for training only (held-out AB-13 has the published record)
AB_REFERENCE_2D = {8: -1.468165}


def instance(name: str):
    if name.startswith("lj"):
        n = int(name[2:])
        return molecular.lennard_jones_cluster(n), molecular.LJ_GLOBAL_MINIMA[n]
    if name.startswith("thomson"):
        n = int(name[7:])
        rec = {**plasma.THOMSON_MINIMA, **THOMSON_RECORDS}.get(n)
        if rec is None:
            raise SystemExit(f"no known Thomson minimum for N = {n}")
        return plasma.thomson(n), rec
    if name.startswith("ab"):  # 2-D AB model, Fibonacci sequence of length N
        n = int(name[2:])
        rec = {**AB_REFERENCE_2D, **biomedical.AB_KNOWN_MINIMA_2D}.get(n)
        if rec is None:
            raise SystemExit(f"no known AB minimum for length {n}")
        seq = biomedical.fibonacci_sequence(n)
        return biomedical.ab_protein(seq, dim=2), rec
    raise SystemExit(f"unknown instance {name!r} (ljN, thomsonN or abN)")


# What the search tunes: the options of the default method (parallel-tempering basin
# hopping, async loop, L-BFGS) that `sample_equilibrium` exposes. All but `replicas` and
# `relax_steps` are data (one compile per instance for the whole search); `replicas`
# (ladder length) and `relax_steps` (final polish length) are loop sizes, choices over a
# few values. Left out: `num_steps` (the caller's budget), `temperature` (absolute energy
# units: does not transfer between instances), `method` / `local` / `hop_loop` (each a
# separate pipeline; measured by hand, global_search.md), `moves` (callables).
SEARCH_SPACE = {
    "target_acceptance": ev.Real(0.1, 0.9),
    "adapt_rate": ev.Real(0.02, 2.0, log=True),  # centre 0.2, the hopping default
    "relax_gtol": ev.Real(1e-4, 1e-1, log=True),
    "relax_steps": ev.Choice([250, 500, 1000]),
    "exchange_every": ev.Int(2, 50, log=True),
    "replicas": ev.Choice([4, 8]),
}


def _task(name: str, chains: int, budget: int) -> ev.EquilibriumTask:
    cap, record = instance(name)
    return ev.EquilibriumTask(
        name,
        cap.energy_fn,
        cap.init,
        record,
        constraints=tuple(cap.constraints),
        project=cap.project,
        chains=chains,
        num_steps=budget,
        moves=cap.moves,  # the capsule's moves, as `idf equilibrium` passes them
    )


def search(args) -> None:
    """The multi-instance search: `tune_equilibrium` on `--train`, the preset written."""
    names = [t for t in args.train.split(",") if t]
    budgets = {k: int(v) for k, v in (kv.split("=") for kv in args.train_budget.split(",") if kv)}
    tasks = [_task(t, args.train_chains, budgets.get(t, 3000)) for t in names]
    seeds = list(range(args.train_seeds))
    assert max(seeds) < HELD_OUT_SEED0
    command = "python experiments/evolve_equilibrium.py " + " ".join(sys.argv[1:])
    log: list[dict] = []
    t0, load0 = time.perf_counter(), os.getloadavg()[0]

    def on_eval(f, cfg, det):
        per = det.get("tasks", {})
        log.append({"fitness": f, "config": cfg, "tasks": per, "load": os.getloadavg()[0]})
        terms = " ".join(
            f"{k}={v['runs_reached']}/{v['seed_runs']}:{v['ert']:.0f}" for k, v in per.items()
        )
        print(
            f"[{time.perf_counter() - t0:6.0f}s] #{len(log) - 1} fit {f:.4f} {terms} {cfg}",
            flush=True,
        )

    res, report = ev.tune_equilibrium(
        tasks,
        jax.random.key(args.search_key),
        seeds=seeds,
        space=SEARCH_SPACE,
        metric="ert_mean",
        population_size=args.population,
        num_generations=args.generations,
        time_budget_s=args.budget_s,
        checkpoint=args.checkpoint,
        on_evaluation=on_eval,
    )
    elapsed = time.perf_counter() - t0
    best = dict(report["best_config"])
    prov = {
        "command": command,
        "instances": {t.name: {"record": t.target, "num_steps": t.num_steps} for t in tasks},
        "chains": args.train_chains,
        "seeds": seeds,
        "budget_s": args.budget_s,
        "seconds": elapsed,
        "load_start": load0,
        "load_end": os.getloadavg()[0],
        "strategy": res.strategy,
        "generations": res.num_generations,
        "evaluations": res.num_evaluations,
        "metric": "ert_mean",
        "space": {k: repr(v) for k, v in SEARCH_SPACE.items()},
        "fitness": report["best_fitness"],
        "details": report["best"],
        "baseline_config": report["baseline_config"],
        "baseline_fitness": report["baseline_fitness"],
        "baseline": report["baseline"],
        "results": f"experiments/results/evolve_{args.name}_search.md",
    }
    preset = ev.save_preset(
        os.path.join(OUT, f"{args.name}.preset.json"), args.name, best, provenance=prov
    )
    atomic_write_json(
        os.path.join(OUT, f"evolve_{args.name}_search.json"), {"provenance": prov, "log": log}
    )
    lines = [
        f"# The search that produced the preset `{args.name}` (`experiments/evolve_equilibrium.py --search`)",
        "",
        f"Command ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {load0:.1f} at the "
        f"start, {prov['load_end']:.1f} at the end, {elapsed:.0f} s): `{command}`",
        "",
        f"Preset: `experiments/results/{args.name}.preset.json`. Training instances (record, "
        f"evaluations per chain): "
        + ", ".join(f"{t.name} ({t.target}, {t.num_steps})" for t in tasks)
        + f"; {args.train_chains} chains, seeds {seeds[0]}-{seeds[-1]}; "
        f"{res.num_generations} generations of {args.population}, {len(log)} configurations "
        "with the baseline. Fitness = mean over instances of log10(ERT) (lower is better).",
        "",
        "| configuration | fitness | " + " | ".join(f"{t.name} runs / ERT" for t in tasks) + " |",
        "|---|---:|" + "---:|" * len(tasks),
    ]
    for label, f, det, cfg in (
        ("defaults", report["baseline_fitness"], report["baseline"], report["baseline_config"]),
        ("evolved", report["best_fitness"], report["best"], best),
    ):
        per = det.get("tasks", {})
        cells = " | ".join(
            f"{per[t.name]['runs_reached']}/{per[t.name]['seed_runs']} / {per[t.name]['ert']:.4g}"
            for t in tasks
        )
        lines.append(f"| {label} `{cfg}` | {f:.4f} | {cells} |")
    lines += [
        "",
        "Selected on these training seeds, the evolved figure is optimistic (winner's curse); "
        "experiments/results/evolve_equilibrium.md measures the preset on held-out seeds and "
        "held-out instances.",
    ]
    atomic_write_bytes(
        os.path.join(OUT, f"evolve_{args.name}_search.md"), ("\n".join(lines) + "\n").encode()
    )
    print(f"wrote {preset}")
    if args.validate_top > 0:
        validate(args)


VALIDATION_SEED0 = 100  # validation seeds: neither training (0..) nor held-out (1000..)


def validate(args) -> None:
    """Re-rank the search's best configurations on fresh validation seeds.

    The training fitness of the search's winner is optimistic (the best of many noisy
    scores on the same seeds); the `--validate-top` best distinct configurations of the
    search log and the defaults are scored again on `--validate-seeds` seeds from
    VALIDATION_SEED0, same instances, chains and budgets, and the best of them on
    these seeds becomes the preset (rewritten with the validation in its provenance).
    """
    rec_path = os.path.join(OUT, f"evolve_{args.name}_search.json")
    rec = json.loads(open(rec_path).read())
    prov = rec["provenance"]
    tasks = [
        _task(name, prov["chains"], int(v["num_steps"])) for name, v in prov["instances"].items()
    ]
    seeds = list(range(VALIDATION_SEED0, VALIDATION_SEED0 + args.validate_seeds))
    ranked, seen = [], set()
    for e in sorted(rec["log"][1:], key=lambda e: e["fitness"]):
        k = json.dumps(e["config"], sort_keys=True)
        if k not in seen:
            seen.add(k)
            ranked.append(e)
        if len(ranked) == args.validate_top:
            break
    base = rec["log"][0]
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    rows = []
    for label, e in [("defaults", base)] + [(f"train #{i + 1}", e) for i, e in enumerate(ranked)]:
        f, det = ev.tuning.equilibrium_fitness(e["config"], tasks, seeds, metric="ert_mean")
        rows.append(
            {"label": label, "config": e["config"], "train_fitness": e["fitness"],
             "fitness": f, "tasks": det["tasks"]}
        )  # fmt: skip
        print(f"validate {label}: train {e['fitness']:.4f} validation {f:.4f}", flush=True)
    best = min(rows[1:], key=lambda r: r["fitness"])
    val = {
        "command": "python experiments/evolve_equilibrium.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "seeds": seeds,
        "load_start": load0,
        "seconds": time.perf_counter() - t0,
        "rows": rows,
        "selected": best["label"],
        "beats_defaults_on_validation": best["fitness"] < rows[0]["fitness"],
    }
    rec["validation"] = val
    atomic_write_json(rec_path, rec)
    ev.save_preset(
        os.path.join(OUT, f"{args.name}.preset.json"),
        args.name,
        best["config"],
        provenance={**prov, "validation": {k: v for k, v in val.items() if k != "rows"},
                    "validation_fitness": best["fitness"],
                    "validation_baseline_fitness": rows[0]["fitness"]},
    )  # fmt: skip
    md = os.path.join(OUT, f"evolve_{args.name}_search.md")
    lines = [
        open(md).read().rstrip(),
        "",
        f"## Validation ({val['date']}, load {load0:.1f}, {val['seconds']:.0f} s): "
        f"`{val['command']}`",
        "",
        f"The {len(ranked)} best distinct configurations of the search and the defaults, "
        f"scored again on validation seeds {seeds[0]}-{seeds[-1]} (same instances, chains, "
        f"budgets); the preset is the best of them here: **{best['label']}**"
        + ("" if val["beats_defaults_on_validation"] else " (it does not beat the defaults here)")
        + ".",
        "",
        "| configuration | training fitness | validation fitness | "
        + " | ".join(f"{t.name} runs / ERT" for t in tasks)
        + " |",
        "|---|---:|---:|" + "---:|" * len(tasks),
    ]
    for r in rows:
        cells = " | ".join(
            f"{r['tasks'][t.name]['runs_reached']}/{r['tasks'][t.name]['seed_runs']} / "
            f"{r['tasks'][t.name]['ert']:.4g}"
            for t in tasks
        )
        cfg = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r["config"].items()}
        lines.append(
            f"| {r['label']} `{cfg}` | {r['train_fitness']:.4f} | {r['fitness']:.4f} | {cells} |"
        )
    atomic_write_bytes(md, ("\n".join(lines) + "\n").encode())
    print(f"validated: {best['label']} -> {args.name}.preset.json")


def _call(cap, record, cfg, seed, chains):
    k_init, k_run = jax.random.split(jax.random.key(seed))
    x0 = cap.init(k_init, chains)
    # the capsule's moves for every basin-hopping configuration, as `idf equilibrium` and
    # the search (`EquilibriumTask.moves`) pass them; annealing takes none
    moves = cap.moves if ev.tuning._hopping(cfg) else None
    t0 = time.perf_counter()
    res = idf.sample_equilibrium(
        cap.energy_fn,
        k_run,
        x0,
        constraints=list(cap.constraints) or None,
        project=cap.project,
        target=record,
        stop_at_target=True,
        **{"moves": moves, **cfg},
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


# Appended to the name of every basin-hopping configuration, whose runs get the capsule's
# moves (since 2026-12-04); the rows of earlier calls, named without it, ran without them
# (the default Gaussian kick of every coordinate).
MOVES_TAG = " + capsule moves"


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
    return {(k + MOVES_TAG if ev.tuning._hopping(c) else k): c for k, c in out.items()}


def _fmt(x: float | None, spec: str) -> str:
    """A number, or "-" for never (inf, stored as null in the JSON)."""
    return "-" if x is None or not math.isfinite(x) else format(x, spec)


def write_md(rows: dict, meta: dict) -> str:
    lines = [
        "# Evolved presets vs hand-set defaults (`experiments/evolve_equilibrium.py`)",
        "",
        "Generated from experiments/results/evolve_equilibrium.json (the script merges every "
        "call's rows). Held-out seeds from 1000 (the searches used seeds below 100, the "
        "validation of `--search` seeds 100-115); success = a "
        "chain within 1e-3 of the record; runs stop at the record. ERT = evaluations of all "
        "runs (until the first hit, or all they spent) per run that reached the record. "
        "Wall times on a shared 2-core CPU machine (load average in the last column), "
        "noisy; evaluations are exact. Configurations named with "
        f"`{MOVES_TAG.strip()}` got the capsule's basin-hopping moves (`Capsule.moves`: "
        "LJ `cluster_move`, Thomson `sphere_move`, AB 2-D `chain_move_2d`), as "
        "`idf equilibrium` passes them; rows without it (calls before 2026-12-04) ran "
        "with the default Gaussian kick.",
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
    ap.add_argument("--search", action="store_true", help="run the preset search (search())")
    ap.add_argument("--train", default="lj13,lj19,thomson32,ab8", help="search instances")
    ap.add_argument("--train-seeds", type=int, default=8, help="training seeds 0..N-1")
    ap.add_argument("--train-chains", type=int, default=8)
    ap.add_argument(
        "--train-budget",
        default="lj13=3000,lj19=4000,thomson32=3000,ab8=8000",
        help="per-chain evaluation budget of each training instance",
    )
    ap.add_argument("--population", type=int, default=12)
    ap.add_argument("--generations", type=int, default=60)
    ap.add_argument("--budget-s", type=float, default=3300.0, help="search wall-time budget")
    ap.add_argument("--search-key", type=int, default=0)
    ap.add_argument("--checkpoint", default=None, help="search checkpoint file (resume)")
    ap.add_argument("--name", default="multi-hopping", help="preset name")
    ap.add_argument("--validate-top", type=int, default=6, help="configurations re-ranked")
    ap.add_argument("--validate-seeds", type=int, default=16)
    ap.add_argument(
        "--validate", action="store_true", help="only the validation of a finished search"
    )
    args = ap.parse_args()
    if args.search:
        search(args)
        return
    if args.validate:
        validate(args)
        return
    budgets = dict(kv.split("=") for kv in args.budget.split(",") if kv)
    seeds = list(range(HELD_OUT_SEED0, HELD_OUT_SEED0 + args.seeds))
    json_path = os.path.join(OUT, "evolve_equilibrium.json")
    mine: dict = {"rows": {}, "configs": {}}  # this call's rows, merged into the file

    def merged(call: dict | None = None) -> dict:
        """The file as it is now (another call may have written it) with this call's rows."""
        data = {"rows": {}, "meta": {"calls": [], "configs": {}}}
        if os.path.isfile(json_path):
            data = json.loads(open(json_path).read())
        data["rows"].update(mine["rows"])
        data["meta"]["configs"].update(mine["configs"])
        if call is not None:
            data["meta"]["calls"].append(call)
        return data

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
            mine["rows"][f"{inst}|{name}"] = r
            mine["configs"][name] = cfg
            print(
                f"{inst} {name}: reached {r['reached']}/{r['seeds']} ERT {r['ert']:.4g} "
                f"s/run {r['s_per_run']:.2f} first {r['first_call_s']:.1f} best {r['best']:.6f} "
                f"load {r['load']:.1f}",
                flush=True,
            )
            atomic_write_json(json_path, merged())
    data = merged(
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
