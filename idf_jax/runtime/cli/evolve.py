"""`idf evolve`: the library tunes itself on instances with known answers, saves presets.

- `idf evolve equilibrium`: evolve `sample_equilibrium`'s configuration on a capsule
  with a known record (LJ clusters, Thomson), fitness = cost to reach the record.
- `idf evolve sampler`: tune MALA / HMC settings for effective samples per gradient.
- `idf evolve presets`: list the packaged presets.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Any

import typer

from ._common import capsule_and_params, console, parse_params

__all__ = ["app", "known_record"]

app = typer.Typer(
    name="evolve",
    help=(
        "Evolve the library's own configurations on tasks with known answers; save presets.\n\n"
        "Examples:\n\n"
        "  idf evolve equilibrium --capsule molecular.lennard_jones_cluster --param n=13 "
        "--budget-s 300\n\n"
        "  idf evolve sampler --capsule plasma.thomson --param n=12 --sampler mala\n\n"
        "  idf evolve presets"
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)


def known_record(capsule: str, params: dict[str, Any]) -> float | None:
    """The published best energy of a capsule instance, where the package knows one."""
    n = params.get("n")
    if not isinstance(n, int):
        return None
    if capsule == "molecular.lennard_jones_cluster" and not set(params) - {"n"}:
        from capsules.molecular import LJ_GLOBAL_MINIMA

        return LJ_GLOBAL_MINIMA.get(n)
    if capsule == "plasma.thomson":
        from capsules.plasma import THOMSON_MINIMA

        return THOMSON_MINIMA.get(n)
    return None


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.replace(" ", "").split(",") if s]
    except ValueError as e:
        raise typer.BadParameter(f"seeds are integers, got {text!r}", param_hint="--seeds") from e
    if not seeds:
        raise typer.BadParameter("give at least one seed", param_hint="--seeds")
    return seeds


def _command() -> str:
    return "idf " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else "idf evolve"


def _versions() -> dict[str, str]:
    import jax

    import idf_jax

    try:
        import evosax

        evo = getattr(evosax, "__version__", "installed")
    except ImportError:  # pragma: no cover
        evo = "missing"
    return {"idf_jax": idf_jax.__version__, "jax": jax.__version__, "evosax": str(evo)}


@app.command("equilibrium")
def equilibrium(
    capsule: str = typer.Option(..., help="registered capsule name (continuous states)"),
    param: list[str] | None = typer.Option(
        None, "--param", "-p", help="capsule KEY=VALUE", show_default="the capsule's defaults"
    ),
    target: float | None = typer.Option(None, help="record energy (default: the known one)"),
    chains: int = typer.Option(16, min=1, help="chains per run"),
    seeds: str = typer.Option("0,1", help="comma-separated seeds (runs per configuration)"),
    budget_s: float = typer.Option(300.0, "--budget-s", min=1.0, help="wall-clock budget"),
    generations: int = typer.Option(20, min=1, help="most generations"),
    population: int = typer.Option(8, min=2, help="configurations per generation"),
    strategy: str = typer.Option("CMA_ES", help="evosax strategy"),
    metric: str = typer.Option(
        "evaluations",
        help="'evaluations' (cost per chain that reached the record), 'ert' (expected "
        "evaluations to the record, runs stop there) or 'energy' (gap at the budget)",
    ),
    fix: list[str] | None = typer.Option(
        None,
        "--fix",
        help="sample_equilibrium KEY=VALUE held fixed in the search (and saved in the preset)",
        show_default="none",
    ),
    include: str | None = typer.Option(
        None, help="comma-separated options to tune (default: all the installed version takes)"
    ),
    name: str | None = typer.Option(None, help="preset name (default: <capsule>-<params>)"),
    out: Path = typer.Option(Path("results/evolve"), help="folder for the preset"),
    seed: int = typer.Option(0, min=0, help="seed of the search itself"),
):
    """Evolve idf.sample_equilibrium's configuration on a capsule instance; save a preset.

    Example: idf evolve equilibrium --capsule molecular.lennard_jones_cluster --param n=13
    --budget-s 300 --seeds 0,1,2
    """
    import jax

    import idf_jax.evolve as ev

    from ..service.jobs import build_capsule

    cap_name, params = capsule_and_params(capsule, param, {})
    cap = build_capsule(cap_name, params)
    rec = target if target is not None else known_record(cap_name, params)
    if rec is None:
        raise typer.BadParameter(
            f"no known record for {cap_name} {params}; pass --target", param_hint="--target"
        )
    task = ev.EquilibriumTask(
        name=f"{cap_name} {params}",
        energy_fn=cap.energy_fn,
        init=cap.init,
        target=float(rec),
        constraints=tuple(cap.constraints),
        project=cap.project,
        chains=chains,
        moves=cap.moves,  # to every basin-hopping run, as `idf equilibrium` passes them
    )
    space = ev.equilibrium_space(
        include=[s.strip() for s in include.split(",") if s.strip()] if include else None
    )
    seed_list = _seeds(seeds)
    fixed = parse_params(fix)
    overlap = sorted(set(fixed) & set(space))
    if overlap:
        raise typer.BadParameter(
            f"{overlap} are both fixed and tuned; leave them out of --include", param_hint="--fix"
        )
    con = console()
    con.print(f"tuning {', '.join(space)} on {task.name} (record {rec}), seeds {seed_list}")
    t0 = time.perf_counter()
    res, report = ev.tune_equilibrium(
        [task],
        jax.random.key(seed),
        seeds=seed_list,
        space=space,
        fixed=fixed,
        metric=metric,
        strategy=strategy,
        population_size=population,
        num_generations=generations,
        time_budget_s=budget_s,
        progress=True,
    )
    elapsed = time.perf_counter() - t0
    from rich.table import Table

    t = Table(title=f"evolve equilibrium: {task.name} ({elapsed:.0f} s)")
    for c in ("", "fitness", "successes / runs", "evaluations", "config"):
        t.add_column(c)
    for label, cfg, fit, det in (
        ("defaults", report["baseline_config"], report["baseline_fitness"], report["baseline"]),
        ("evolved", report["best_config"], report["best_fitness"], report["best"] or {}),
    ):
        t.add_row(
            label,
            f"{fit:.4f}",
            f"{det.get('successes', '?')} / {det.get('runs', '?')}",
            str(det.get("evaluations", "?")),
            ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in cfg.items()
            ),
        )
    con.print(t)
    pname = name or (cap_name.split(".")[-1] + "".join(f"-{k}{v}" for k, v in params.items()))
    path = ev.save_preset(
        out,
        pname,
        {**fixed, **report["best_config"]},
        target="sample_equilibrium",
        provenance={
            "command": _command(),
            "capsule": cap_name,
            "params": params,
            "record": rec,
            "chains": chains,
            "seeds": seed_list,
            "budget_s": budget_s,
            "seconds": elapsed,
            "strategy": res.strategy,
            "generations": res.num_generations,
            "evaluations": res.num_evaluations,
            "metric": metric,
            "fixed": fixed,
            "fitness": report["best_fitness"],
            "details": report["best"],
            "baseline_config": report["baseline_config"],
            "baseline_fitness": report["baseline_fitness"],
            "baseline": report["baseline"],
            "versions": _versions(),
        },
    )
    con.print(f"wrote {path}")


@app.command("sampler")
def sampler(
    capsule: str = typer.Option(..., help="registered capsule name (continuous states)"),
    param: list[str] | None = typer.Option(
        None, "--param", "-p", help="capsule KEY=VALUE", show_default="the capsule's defaults"
    ),
    kind: str = typer.Option("mala", "--sampler", help="'mala' or 'hmc'"),
    chains: int = typer.Option(8, min=1),
    steps: int = typer.Option(500, min=2, help="steps per chain (burn-in: a fifth)"),
    budget_s: float = typer.Option(300.0, "--budget-s", min=1.0),
    generations: int = typer.Option(10, min=1),
    population: int = typer.Option(8, min=2),
    name: str | None = typer.Option(None, help="preset name (default: <sampler>-<capsule>)"),
    out: Path = typer.Option(Path("results/evolve"), help="folder for the preset"),
    seed: int = typer.Option(0, min=0),
):
    """Tune a sampler's settings for effective samples per gradient evaluation; save a preset.

    Example: idf evolve sampler --capsule plasma.thomson --param n=12 --sampler mala
    """
    import jax

    import idf_jax.evolve as ev

    from ..service.jobs import build_capsule

    cap_name, params = capsule_and_params(capsule, param, {})
    cap = build_capsule(cap_name, params)
    k_init, k_run = jax.random.split(jax.random.key(seed))
    x0 = cap.init(k_init, chains)
    t0 = time.perf_counter()
    res = ev.tune_sampler(
        cap.energy_fn,
        x0,
        k_run,
        sampler=kind,
        num_steps=steps,
        burn_in=steps // 5,
        population_size=population,
        num_generations=generations,
        time_budget_s=budget_s,
        progress=True,
    )
    elapsed = time.perf_counter() - t0
    ess_per_grad = 10.0 ** (-res.best_fitness)
    con = console()
    con.print(
        f"{kind} on {cap_name} {params}: {res.best_params} -> {ess_per_grad:.4g} effective "
        f"samples per gradient ({res.num_evaluations} runs, {elapsed:.0f} s)"
    )
    pname = name or f"{kind}-{cap_name.split('.')[-1]}"
    path = ev.save_preset(
        out,
        pname,
        res.best_params,
        target=kind,
        provenance={
            "command": _command(),
            "capsule": cap_name,
            "params": params,
            "chains": chains,
            "steps": steps,
            "seeds": [seed],
            "budget_s": budget_s,
            "seconds": elapsed,
            "fitness": res.best_fitness,
            "ess_per_gradient": ess_per_grad,
            "versions": _versions(),
        },
    )
    con.print(f"wrote {path}")


@app.command("presets")
def presets():
    """List the packaged presets (name, target, fitness, the command that made them)."""
    import idf_jax.evolve as ev

    con = console()
    for n in ev.available_presets():
        rec = ev.presets.read_preset(n)
        prov = rec.get("provenance", {})
        con.print(
            f"{n}: {rec['target']} {rec['config']}  (fitness {prov.get('fitness')}; "
            f"{prov.get('command', '')})"
        )
