"""`idf equilibrium`: anneal a capsule to its low-energy states and save them."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from ..._io import atomic_write_bytes, atomic_write_json
from ._common import (
    capsule_and_params,
    console,
    leaf_arrays,
    load_yaml,
    pick,
    project_path,
    save_figure,
    save_npz,
)

__all__ = ["equilibrium"]


def equilibrium(
    capsule: str | None = typer.Option(
        None, help="registered capsule name", show_default="config capsule.name"
    ),
    param: list[str] | None = typer.Option(
        None,
        "--param",
        "-p",
        help="capsule parameter KEY=VALUE (repeat)",
        show_default="config capsule.params",
    ),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="project config.yaml", show_default="none"
    ),
    chains: int | None = typer.Option(
        None, min=1, show_default="config equilibrium.chains, else 16"
    ),
    steps: int | None = typer.Option(
        None, min=1, show_default="config equilibrium.steps, else 2000"
    ),
    relax: bool | None = typer.Option(
        None,
        help="finish with a deterministic relaxation",
        show_default="config equilibrium.relax, else relax",
    ),
    seed: int | None = typer.Option(None, min=0, show_default="config equilibrium.seed, else 0"),
    out: Path | None = typer.Option(
        None,
        help="results folder",
        show_default="config equilibrium.out, else results/equilibrium; in the --config project",
    ),
    plots: bool = typer.Option(True),
    method: str | None = typer.Option(
        None,
        help="auto | anneal | basin_hopping | parallel_tempering | population",
        show_default="none: the configured annealing job (auto with --target / --progress)",
    ),
    target: float | None = typer.Option(
        None, help="known best energy: report the first hit", show_default="none"
    ),
    progress: bool = typer.Option(False, help="show a progress bar (basin hopping)"),
    hop_loop: str | None = typer.Option(
        None,
        "--hop-loop",
        help="basin-hopping loop: auto | async | sync",
        show_default="auto (async with L-BFGS, sync with FIRE)",
    ),
    local: str | None = typer.Option(
        None,
        "--local",
        help="basin-hopping local minimiser: lbfgs | fire",
        show_default="lbfgs",
    ),
    active_chains: int | None = typer.Option(
        None,
        "--active-chains",
        min=1,
        help="basin hopping: chains searched at a time (more chains run as batches)",
        show_default="a rule from the energy's cost per evaluation",
    ),
):
    """Search a capsule's low-energy states (idf.sample_equilibrium) and save them.

    With --method, --target, --progress, --hop-loop, --local or --active-chains the search
    runs here with
    the capsule's own moves (`Capsule.moves`) and reports its accounting (local
    minimisations, energy evaluations, the first hit of --target); otherwise it runs as
    the service's job.
    For basin hopping --steps is each chain's budget of energy evaluations.

    Example: idf equilibrium --capsule molecular.lennard_jones_cluster --param n=13 --chains 64
    """
    import numpy as np

    from ...thermo.basin_hopping import HOP_LOOPS
    from ...thermo.local_min import LOCAL_METHODS
    from ..service.jobs import EquilibriumJob, run_equilibrium

    if hop_loop is not None and hop_loop not in ("auto", *HOP_LOOPS):
        raise typer.BadParameter(
            f"must be one of auto, {', '.join(HOP_LOOPS)}; got {hop_loop!r}",
            param_hint="--hop-loop",
        )
    if local is not None and local not in LOCAL_METHODS:
        raise typer.BadParameter(
            f"must be one of {', '.join(LOCAL_METHODS)}; got {local!r}", param_hint="--local"
        )
    if method == "anneal" and (hop_loop is not None or local is not None):
        raise typer.BadParameter(
            "--hop-loop and --local choose the basin-hopping search; --method anneal has none",
            param_hint="--method",
        )
    if method == "anneal" and active_chains is not None:
        raise typer.BadParameter(
            "--active-chains batches the basin-hopping search; --method anneal has none",
            param_hint="--method",
        )
    if hop_loop == "async" and local == "fire":
        raise typer.BadParameter(
            "the async loop runs L-BFGS iterations; --local fire needs --hop-loop sync or auto",
            param_hint="--hop-loop",
        )

    cfg = load_yaml(config)
    ccap, ceq = cfg.get("capsule", {}) or {}, cfg.get("equilibrium", {}) or {}
    name, params = capsule_and_params(capsule, param, ccap)
    job = EquilibriumJob(
        capsule=name,
        params=params,
        chains=pick(chains, ceq, "chains", 16),
        steps=pick(steps, ceq, "steps", 2000),
        seed=pick(seed, ceq, "seed", 0),
        relax=pick(relax, ceq, "relax", True),
    )
    out_dir = project_path(out, config, ceq, "out", "results/equilibrium")
    con = console()
    from rich.status import Status

    direct = (
        method is not None
        or target is not None
        or progress
        or hop_loop is not None
        or local is not None
        or active_chains is not None
    )
    t0 = time.perf_counter()
    if direct:
        res, cap, summary = _search_here(
            job,
            method or "auto",
            target,
            progress,
            hop_loop or "auto",
            local or "lbfgs",
            active_chains,
        )
    else:
        with Status(
            f"searching {job.chains} chains of {job.capsule} for {job.steps} steps", console=con
        ):
            res, cap, summary = run_equilibrium(job)
    elapsed = time.perf_counter() - t0
    energies = np.asarray(summary["energy_per_chain"], dtype=float)
    from rich.table import Table

    t = Table(title=f"equilibrium: {job.capsule} ({elapsed:.1f} s)")
    for c in ("best energy", "median", "worst", "chains within 1e-4 of best"):
        t.add_column(c, justify="right")
    best = float(np.nanmin(energies))
    t.add_row(
        f"{best:.6f}",
        f"{np.nanmedian(energies):.6f}",
        f"{np.nanmax(energies):.6f}",
        str(int(np.sum(np.abs(energies - best) <= 1e-4 * max(1.0, abs(best))))),
    )
    con.print(t)
    if direct:
        con.print(
            f"{summary['num_minimisations']} local minimisations, "
            f"{summary['num_evaluations']:.3g} energy evaluations"
            + (
                f"; target {target} first reached at hop {summary['first_hit_hop']} after "
                f"{summary['hit_evaluations']:.3g} evaluations, "
                f"{summary['time_to_target'] or 0:.1f} s "
                f"({summary['fraction_reached']:.0%} of chains)"
                if target is not None and summary["first_hit_hop"] >= 0
                else ""
            )
        )
    arrays = {f"position_{k}": v for k, v in leaf_arrays(res.position).items()}
    arrays["energy"] = energies
    save_npz(out_dir / "equilibrium.npz", arrays)
    written = [out_dir / "equilibrium.npz"]
    summary.update(capsule=job.capsule, params=dict(job.params), elapsed_s=elapsed)
    atomic_write_json(out_dir / "summary.json", summary)
    written.append(out_dir / "summary.json")
    import jax

    best_x = jax.tree.map(lambda l: np.asarray(l)[summary["best_chain"]], res.position)
    decoded = cap.decode(best_x)
    for meth, fname in (("to_xyz", "best.xyz"),):
        fn = getattr(decoded, meth, None)
        if callable(fn):
            atomic_write_bytes(out_dir / fname, str(fn()).encode())
            written.append(out_dir / fname)
    if plots:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(np.sort(energies), "o", ms=3)
        ax.set_xlabel("chain (sorted)")
        ax.set_ylabel("best energy")
        ax.set_title(f"{job.capsule}: best energy per chain")
        fig.tight_layout()
        save_figure(fig, out_dir / "equilibrium.png")
        plt.close(fig)
        written.append(out_dir / "equilibrium.png")
    con.print("wrote " + ", ".join(str(p) for p in written))


def _search_here(
    job,
    method: str,
    target: float | None,
    progress: bool,
    hop_loop: str = "auto",
    local: str = "lbfgs",
    active_chains: int | None = None,
):
    """`idf.sample_equilibrium` on the job's capsule with its moves; (res, capsule, summary)."""
    import jax
    import numpy as np

    from ...thermo.anneal import sample_equilibrium
    from ..service.jobs import build_capsule

    cap = build_capsule(job.capsule, job.params)
    k_init, k_run = jax.random.split(jax.random.key(job.seed))
    res = sample_equilibrium(
        cap.energy_fn,
        k_run,
        cap.init(k_init, job.chains),
        num_steps=job.steps,
        method=method,
        moves=cap.moves if method != "anneal" else None,
        constraints=list(cap.constraints) or None,
        relax=job.relax,
        project=cap.project,
        target=target,
        progress=progress,
        hop_loop=hop_loop,
        local=local,
        active_chains=active_chains,
    )
    energies = np.asarray(res.energy, dtype=np.float64)
    summary = {
        "chains": job.chains,
        "method": method,
        "hop_loop": hop_loop,
        "local": local,
        "active_chains": active_chains,
        "energy_per_chain": [float(v) for v in energies],
        "best_energy": float(res.best_energy),
        "best_chain": int(res.best_chain),
        "num_minimisations": int(res.num_minimisations),
        "num_evaluations": float(res.num_evaluations),
        "first_hit_hop": int(res.first_hit_hop),
        "hit_evaluations": float(res.hit_evaluations),
        "time_to_target": _finite_or_none(res.time_to_target),
        "fraction_reached": float(res.fraction_reached),
    }
    return res, cap, summary


def _finite_or_none(v) -> float | None:
    import math

    f = float(v)
    return f if math.isfinite(f) else None
