"""Study: ground states of the AB off-lattice protein model for Fibonacci sequences.

Method (2-D, Stillinger 1993 form, the state is the N-2 bend angles; 3-D, Irbäck 1997
form, bond vectors): the library's global search, `idf.sample_equilibrium` with its
default method (parallel-tempering basin hopping) and the capsule's chain moves
(`Capsule.moves`: 2-D pivots, crankshafts and local refolds of the bend angles, a random
rotation of the chain's tail in 3-D), random starts from the capsule's `init`, L-BFGS
relaxations (`local="lbfgs"`), a float64 final relaxation of every chain's best fold. Compared with published lowest energies. Writes
experiments/results/ab_protein.md, ab_protein_structures.png and XYZ files.

    PYTHONPATH=. python experiments/ab_protein.py [--chains 256] [--budget 200000] [--lengths 13,21]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import numpy as np

import idf_jax as idf
from capsules import biomedical

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
    ap.add_argument("--chains", type=int, default=256)
    ap.add_argument("--budget", type=int, default=200_000, help="evaluations per chain (N=13)")
    ap.add_argument("--lengths", default="13,21,34,55", help="2-D Fibonacci lengths")
    ap.add_argument("--no-3d", action="store_true")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(OUT, exist_ok=True)
    rows, structs = [], {}
    lengths = [int(s) for s in args.lengths.split(",")]
    todo = [(n, 2) for n in lengths] + ([] if args.no_3d else [(13, 3)])
    for n, dim in todo:
        ref = REFERENCE[(n, dim)]
        cap = biomedical.ab_protein(biomedical.fibonacci_sequence(n), dim=dim)
        budget = args.budget * -(-(n - 2) // 11)  # longer chains get a larger budget
        t0 = time.perf_counter()
        k_init, k_run = jax.random.split(jax.random.key(n + dim))
        res = idf.sample_equilibrium(
            cap.energy_fn,
            k_run,
            cap.init(k_init, args.chains),
            num_steps=budget,
            moves=cap.moves,
            target=ref,
            stop_at_target=True,
            precision="float64",
            progress=True,
        )
        be = np.asarray(res.energy)
        k = int(np.argmin(be))
        dt = time.perf_counter() - t0
        rows.append((n, dim, float(be[k]), ref, int(np.sum(be < ref + 1e-3)), args.chains, dt))
        d = cap.decode(np.asarray(res.position)[k])
        structs[(n, dim)] = (d["positions"], cap.params["sequence"], float(be[k]))
        with open(os.path.join(OUT, f"ab_protein_{n}_{dim}d.xyz"), "w") as f:
            f.write(d["xyz"])
        print(f"N={n} dim={dim}: best {be[k]:.4f} (published {ref}) in {dt:.0f} s", flush=True)

    with open(os.path.join(OUT, "ab_protein.md"), "w") as f:
        f.write("# AB off-lattice protein model: Fibonacci sequences\n\n")
        f.write(
            f"`idf.sample_equilibrium` (method 'auto': parallel-tempering basin hopping) with "
            f"the capsule's chain moves, {args.chains} chains from random starts, a budget of "
            f"{args.budget} x ceil((N-2)/11) energy evaluations per chain, stopped at the "
            "published value, float64 final relaxation. Times on a shared 2-core CPU.\n\n"
        )
        f.write("| N | dim | best E found | published lowest | chains within 1e-3 | wall s |\n")
        f.write("|---|---|---|---|---|---|\n")
        for n, dim, e, ref, hit, chains, dt in rows:
            f.write(f"| {n} | {dim} | {e:.4f} | {ref:.4f} | {hit}/{chains} | {dt:.0f} |\n")
        f.write(
            "\n2-D: Stillinger 1993 form; 3-D: Irbäck 1997 form (see capsules/biomedical.py). "
            "Published values are quoted from the literature as cited in the script and were "
            "not re-derived here.\n\n"
        )
        f.write(
            f"Command: `PYTHONPATH=. python experiments/ab_protein.py {' '.join(sys.argv[1:])}`\n"
        )

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
