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
        show_default="config equilibrium.out, else results/equilibrium",
    ),
    plots: bool = typer.Option(True),
):
    """Anneal a capsule to its low-energy states (idf.sample_equilibrium) and save them.

    Example: idf equilibrium --capsule molecular.lennard_jones_cluster --param n=13 --chains 64
    """
    import numpy as np

    from ..service.jobs import EquilibriumJob, run_equilibrium

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
    out_dir = Path(pick(out, ceq, "out", "results/equilibrium"))
    con = console()
    from rich.status import Status

    with Status(
        f"annealing {job.chains} chains of {job.capsule} for {job.steps} steps", console=con
    ):
        t0 = time.perf_counter()
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
