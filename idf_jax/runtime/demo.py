"""`make demo`: the main job at a glance, on embedded defaults, in under a minute.

1. Sampling: a 4-dimensional double well, E(x) = sum_i (x_i^2 - 1)^2 * h with barrier
   height h = 2 (in units of kT at T = 1): 2^4 = 16 modes, a target where mixing matters.
   Every sampler runs on it; exact per-coordinate moments come from 1-D quadrature (the
   energy separates). A table compares them.
2. Global search: `idf.sample_equilibrium` on the 13-atom Lennard-Jones cluster from
   random starts, against its known minimum E = -44.326801 (epsilon units).
3. A plot of both (energy histograms per sampler, the LJ13 chains' best energies), written
   to the file it names (default `idf-demo.png` in the current folder).

Run:  python -m idf_jax.runtime.demo [--chains 256] [--steps 4000] [--plot FILE]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from rich.console import Console
from rich.table import Table

import idf_jax as idf

BARRIER = 2.0
DIM = 4


def double_well(x):
    """E(x) = h * sum_i (x_i^2 - 1)^2, h = 2 (energy units, kT = 1)."""
    return BARRIER * jnp.sum((x**2 - 1.0) ** 2)


def exact_second_moment(temperature: float = 1.0) -> float:
    """<x_i^2> under exp(-h (x^2 - 1)^2 / T) by quadrature."""
    grid = np.linspace(-4.0, 4.0, 400001)
    w = np.exp(-BARRIER * (grid**2 - 1.0) ** 2 / temperature)
    return float(np.sum(w * grid**2) / np.sum(w))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--chains", type=int, default=256)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plot", default="idf-demo.png", help="PNG file to write ('' for none)")
    ap.add_argument("--lj-chains", type=int, default=64)
    args = ap.parse_args(argv)

    console = Console(width=max(Console().width, 110))
    console.print(
        f"[bold]idf-jax demo[/bold]: {DIM}-d double well, barrier {BARRIER} kT, "
        f"{args.chains} chains x {args.steps} steps on {jax.devices()[0].platform.upper()} "
        f"({len(jax.devices())} device(s))"
    )
    key = jax.random.key(args.seed)
    x0 = 0.5 * jax.random.normal(key, (args.chains, DIM))
    burn = args.steps // 5
    thin = max(1, (args.steps - burn) // 400)
    burn = args.steps - thin * ((args.steps - burn) // thin)
    samplers = {
        "ula": idf.ula(double_well, 0.01),
        "mala": idf.mala(double_well, 0.02),
        "underdamped": idf.underdamped_langevin(double_well, 0.1, friction=1.0),
        "hmc": idf.hmc(double_well, 0.08, 10),
    }
    m2 = exact_second_moment()
    table = Table(title=f"Summary ({burn} burn-in steps, thin {thin}); exact <x^2> = {m2:.4f}")
    for col in (
        "sampler",
        "<E>",
        "<x^2>",
        "accept",
        "min ESS",
        "max R-hat",
        "divergent",
        "chain-steps/s",
    ):
        table.add_column(col, justify="left" if col == "sampler" else "right")
    results = {}
    energies_of = {}
    for name, s in samplers.items():
        t0 = time.perf_counter()
        trace = idf.sample(s, key, x0, args.steps, thin=thin, burn_in=burn, progress=False)
        jax.block_until_ready(trace.positions)
        seconds = time.perf_counter() - t0
        out = idf.summary(trace, print_table=False)
        energies_of[name] = np.asarray(trace.energies).ravel()
        x = np.asarray(trace.positions)
        results[name] = dict(
            mean_energy=float(np.mean(np.asarray(trace.energies))),
            second_moment=float(np.mean(x**2)),
            acceptance=out["acceptance_rate"],
            min_ess=float(np.nanmin(out["position"]["x"]["ess_bulk"])),
            max_rhat=float(np.nanmax(out["position"]["x"]["rhat"])),
            divergent=out["divergent_chains"],
            seconds=seconds,
        )
        r = results[name]
        table.add_row(
            name,
            f"{r['mean_energy']:.3f}",
            f"{r['second_moment']:.4f}",
            f"{r['acceptance']:.3f}",
            f"{r['min_ess']:.0f}",
            f"{r['max_rhat']:.3f}",
            str(r["divergent"]),
            f"{args.chains * args.steps / seconds:.3g}",
        )
    console.print(table)
    console.print(
        "ula is unadjusted (O(step) bias, no accept/reject); the others target exp(-E/T) exactly. "
        "chain-steps/s includes compilation."
    )
    results["lj13"] = _lj13(console, args)
    if args.plot:
        path = _plot(args.plot, energies_of, results["lj13"])
        console.print(f"plot written to [bold]{path}[/bold]")
    return results


LJ13_RECORD = -44.326801


def _lj13(console, args) -> dict:
    """LJ13 from random starts with the default `sample_equilibrium` call."""
    import capsules

    lj = capsules.make("molecular.lennard_jones_cluster", n=13)
    key = jax.random.key(args.seed + 1)
    x0 = lj.init(key, args.lj_chains)
    t0 = time.perf_counter()
    res = idf.sample_equilibrium(lj.energy_fn, key, x0, num_steps=3000, target=LJ13_RECORD)
    best = float(res.best_energy)
    seconds = time.perf_counter() - t0
    reached = int(res.num_reached)
    mark = "[green]reached[/green]" if reached else "[red]not reached[/red]"
    console.print(
        f"LJ13 equilibrium: best E = {best:.6f} (record {LJ13_RECORD}), {mark} by {reached} of "
        f"{args.lj_chains} chains, {seconds:.1f} s including compilation"
    )
    return dict(
        best_energy=best,
        num_reached=reached,
        seconds=seconds,
        chain_energies=np.asarray(res.energy),
    )


def _plot(path: str, energies_of: dict, lj: dict) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - depends on the install
        raise SystemExit("the demo plot needs matplotlib: pip install 'idf-jax[viz]'") from e
    from .._io import atomic_write

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for name, e in energies_of.items():
        a.hist(e[np.isfinite(e)], bins=60, histtype="step", density=True, label=name)
    a.set_xlabel("energy E(x) (kT)")
    a.set_ylabel("density")
    a.set_title(f"{DIM}-d double well, every sampler")
    a.legend()
    e = np.sort(lj["chain_energies"])
    b.plot(np.arange(e.size), e, ".", ms=4)
    b.axhline(LJ13_RECORD, color="k", lw=0.8, ls="--", label=f"record {LJ13_RECORD}")
    b.set_xlabel("chain (sorted)")
    b.set_ylabel("best energy (epsilon)")
    b.set_title("LJ13: sample_equilibrium from random starts")
    b.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
