"""Study: ground states of the AB off-lattice protein model for Fibonacci sequences.

Method, 2-D (Stillinger 1993 form; the state is the N-2 bend angles): population pivot
basin hopping (`_search.pivot_basin_hopping`): thousands of uniform random folds relaxed by
Adam, the lowest `--pool` kept as chains; each hop redraws 1-3 bend angles (a pivot move),
relaxes, and takes the new minimum by a Metropolis test; every chain's best is polished by
L-BFGS at the end. 3-D (Irbäck 1997 form; bond vectors): basin hopping with random kicks
of all bond vectors and L-BFGS relaxation. Compared with published lowest energies.
Writes experiments/results/ab_protein.md, ab_protein_structures.png and
ab_protein_progress.png (best energy vs round), and XYZ files.

    PYTHONPATH=. python experiments/ab_protein.py [--pool 512] [--rounds 30] [--lengths 13,21]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _search import basin_hopping, pivot_basin_hopping, relax  # noqa: E402

from capsules import biomedical  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "results")

# Lowest published energies for the Fibonacci sequences, 2-D: Hsu, Mehra & Grassberger,
# Phys. Rev. E 68, 037703 (2003), PERM (N=13: -3.2941, below Stillinger et al.'s 1993
# -3.2235). 3-D N=13 as reported for the Irbäck form in later studies.
REFERENCE = {
    (13, 2): -3.2941,
    (21, 2): -6.1980,
    (34, 2): -10.8060,
    (55, 2): -18.9110,
    (13, 3): -26.5066,
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--starts", type=int, default=8192, help="2-D random starts")
    ap.add_argument("--pool", type=int, default=512, help="2-D chains kept from the starts")
    ap.add_argument("--rounds", type=int, default=30, help="2-D rounds of 10 pivot hops")
    ap.add_argument("--chains", type=int, default=32, help="3-D chains")
    ap.add_argument("--hops", type=int, default=100, help="3-D hops")
    ap.add_argument("--relax-steps", type=int, default=150, help="3-D L-BFGS steps per hop")
    ap.add_argument("--lengths", default="13,21,34,55", help="2-D Fibonacci lengths")
    ap.add_argument("--no-3d", action="store_true")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(OUT, exist_ok=True)
    rows, curves, structs = [], {}, {}
    lengths = [int(s) for s in args.lengths.split(",")]
    todo = [(n, 2) for n in lengths] + ([] if args.no_3d else [(13, 3)])
    for n, dim in todo:
        ref = REFERENCE[(n, dim)]
        cap = biomedical.ab_protein(biomedical.fibonacci_sequence(n), dim=dim)
        t0 = time.perf_counter()
        if dim == 2:
            rounds = args.rounds * -(-(n - 2) // 11)  # longer chains get more rounds
            bx, be, curve = pivot_basin_hopping(
                cap.energy_fn,
                jax.random.key(n),
                n - 2,
                starts=args.starts,
                pool=args.pool,
                rounds=rounds,
                log=lambda r, e: print(f"  N={n} round {r}: best {e:.4f}", flush=True),
            )
            order = np.argsort(np.asarray(be))[:64]
            bx, be = relax(cap.energy_fn, bx[order], 2000)  # L-BFGS polish of the best 64
            chains = args.pool
        else:
            # kicks shrink with chain length so a hop perturbs a fold rather than erasing it
            bx, be, hist = basin_hopping(
                cap.energy_fn,
                jax.random.key(n + dim),
                cap.init(jax.random.key(n), args.chains),
                args.hops,
                args.relax_steps,
                0.3 * float(np.sqrt(13 / n)),
                0.3,
                method="lbfgs",
            )
            curve = list(np.asarray(hist).min(axis=0))
            bx, be = relax(cap.energy_fn, bx, 500)  # polish the best of each chain
            chains = args.chains
        be = np.asarray(be)
        k = int(np.argmin(be))
        dt = time.perf_counter() - t0
        rows.append((n, dim, float(be[k]), ref, int(np.sum(be < ref + 1e-3)), chains, dt))
        curves[(n, dim)] = np.asarray(curve)
        d = cap.decode(bx[k])
        structs[(n, dim)] = (d["positions"], cap.params["sequence"], float(be[k]))
        with open(os.path.join(OUT, f"ab_protein_{n}_{dim}d.xyz"), "w") as f:
            f.write(d["xyz"])
        print(f"N={n} dim={dim}: best {be[k]:.4f} (published {ref}) in {dt:.0f} s", flush=True)

    with open(os.path.join(OUT, "ab_protein.md"), "w") as f:
        f.write("# AB off-lattice protein model: Fibonacci sequences\n\n")
        f.write(
            f"2-D: population pivot basin hopping, {args.starts} uniform random starts relaxed "
            f"by Adam, the lowest {args.pool} kept as chains, {args.rounds} x ceil((N-2)/11) rounds "
            "of 10 hops (1-3 bend angles redrawn uniformly, Adam relaxation, Metropolis at "
            "T = 0.15), then 2000 L-BFGS steps (float64) on the 64 best chains' minima. 3-D: basin "
            f"hopping, {args.chains} chains x {args.hops} hops, kicks 0.3 sqrt(13/N) on all bond "
            f"vectors, {args.relax_steps} L-BFGS steps per hop. float32 elsewhere; times on "
            "a shared 2-core CPU.\n\n"
        )
        f.write(
            "| N | dim | best E found | published lowest | polished minima within 1e-3 | wall s |\n"
        )
        f.write("|---|---|---|---|---|---|\n")
        for n, dim, e, ref, hit, chains, dt in rows:
            hits = f"{hit}/{min(chains, 64) if dim == 2 else chains}"
            f.write(f"| {n} | {dim} | {e:.4f} | {ref:.4f} | {hits} | {dt:.0f} |\n")
        f.write(
            "\n2-D: Stillinger 1993 form; 3-D: Irbäck 1997 form (see capsules/biomedical.py). "
            "The 2-D N=13 value is reproduced; for N=21 and 34 this search budget stops short of the PERM values (longer chains need far more hops than the rounds grow by). Published values are quoted from the literature "
            "as cited in the script and were not re-derived here.\n\n"
        )
        f.write(
            f"Command: `PYTHONPATH=. python experiments/ab_protein.py {' '.join(sys.argv[1:])}`\n"
        )

    fig, ax = plt.subplots(figsize=(6, 4))
    for (n, dim), c in curves.items():
        ax.plot(c - REFERENCE[(n, dim)], label=f"N={n}, {dim}-D (before polish)")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel("round (2-D: 10 pivot hops; 3-D: one hop)")
    ax.set_ylabel("best E - published lowest")
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "ab_protein_progress.png"), dpi=90)
    plt.close(fig)

    keys = [k for k in structs if k[1] == 2]
    fig, ax = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.4))
    for a, key in zip(np.atleast_1d(ax), keys):
        pos, seq, e = structs[key]
        a.plot(pos[:, 0], pos[:, 1], "k-", lw=1)
        col = ["tab:red" if c == "A" else "tab:blue" for c in seq]
        a.scatter(pos[:, 0], pos[:, 1], c=col, s=40, zorder=3)
        a.set_aspect("equal")
        a.set_title(f"N={key[0]}  E={e:.4f}")
        a.axis("off")
    fig.suptitle("2-D AB minima (red A hydrophobic, blue B)")
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "ab_protein_structures.png"), dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
