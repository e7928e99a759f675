"""Study: Thomson minima on the sphere and shell structure of trapped Yukawa clusters.

Thomson: for N = 2..12 (and 24, 32), many random starts relaxed with L-BFGS after a
short annealing; the best energy is compared with the known minima.
Yukawa: 2-D clusters E = sum r^2 + sum exp(-kappa r)/r for N = 2..30 at kappa = 0
(Coulomb, Bedanov & Peeters 1994) and kappa = 2; shell occupations of the best minimum
are compared with the Coulomb configurations of Bedanov & Peeters.

Writes experiments/results/plasma_clusters.md and plasma_{thomson,yukawa}.png.

    PYTHONPATH=. python experiments/plasma_clusters.py [--starts 64]
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _search import anneal_scan, relax  # noqa: E402

from capsules import plasma  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "results")

# Known Thomson minima (Wales' Cambridge Cluster Database / Wikipedia "Thomson problem").
THOMSON_REF = {
    2: 0.500000000,
    3: 1.732050808,
    4: 3.674234614,
    5: 6.474691495,
    6: 9.985281374,
    7: 14.452977414,
    8: 19.675287861,
    9: 25.759986531,
    10: 32.716949460,
    11: 40.596450510,
    12: 49.165253058,
    24: 223.347074052,
    32: 412.261274651,
}

# Ground-state shell occupations (inner to outer) of 2-D Coulomb clusters in a parabolic
# trap, Bedanov & Peeters, Phys. Rev. B 49, 2667 (1994), Table I (as transcribed here).
BEDANOV_PEETERS = {
    2: (2,),
    3: (3,),
    4: (4,),
    5: (5,),
    6: (1, 5),
    7: (1, 6),
    8: (1, 7),
    9: (2, 7),
    10: (2, 8),
    11: (3, 8),
    12: (3, 9),
    13: (4, 9),
    14: (4, 10),
    15: (5, 10),
    16: (1, 5, 10),
    17: (1, 6, 10),
    18: (1, 6, 11),
    19: (1, 6, 12),
    20: (1, 7, 12),
    21: (1, 7, 13),
    22: (2, 8, 12),
    23: (2, 8, 13),
    24: (3, 8, 13),
    25: (3, 9, 13),
    26: (3, 9, 14),
    27: (4, 9, 14),
    28: (4, 10, 14),
    29: (4, 10, 15),
    30: (5, 10, 15),
}


def best_minimum(cap, key, starts, anneal_steps, relax_steps, step_size):
    x0 = cap.init(key, starts)
    if anneal_steps:
        x0 = anneal_scan(
            cap.energy_fn,
            jax.random.fold_in(key, 1),
            x0,
            0.1,
            1e-4,
            anneal_steps,
            step_size,
            project=cap.project,
        )
    x, e = relax(cap.energy_fn, x0, relax_steps, project=cap.project)
    e = np.where(np.isfinite(np.asarray(e)), np.asarray(e), np.inf)
    k = int(np.argmin(e))
    return np.asarray(x[k]), float(e[k]), e


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--starts", type=int, default=64)
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(OUT, exist_ok=True)
    lines = ["# Plasma capsules: Thomson minima and Yukawa cluster shells\n"]
    lines.append(f"Best of {args.starts} starts (short MALA anneal, then L-BFGS, float32).\n")
    lines.append(
        "## Thomson problem\n\n| N | best E | known minimum | difference | starts reaching it |"
    )
    lines.append("|---|---|---|---|---|")
    structures = {}
    for n, ref in THOMSON_REF.items():
        cap = plasma.thomson(n)
        x, e, all_e = best_minimum(cap, jax.random.key(n), args.starts, 500, 400, 1e-3)
        hit = int(np.sum(np.abs(all_e - ref) < 1e-5 * ref))
        lines.append(f"| {n} | {e:.6f} | {ref:.6f} | {e - ref:+.1e} | {hit}/{args.starts} |")
        print(f"thomson {n}: {e:.6f} (ref {ref:.6f}) {hit}/{args.starts}", flush=True)
        structures[n] = x
        if n in (5, 12, 32):
            with open(os.path.join(OUT, f"thomson_{n}.xyz"), "w") as f:
                f.write(cap.decode(x)["xyz"])

    fig = plt.figure(figsize=(10, 3.5))
    for i, n in enumerate((5, 12, 32)):
        ax = fig.add_subplot(1, 3, i + 1, projection="3d")
        p = structures[n]
        ax.scatter(p[:, 0], p[:, 1], p[:, 2], s=40)
        ax.set_title(f"Thomson N={n}, E={THOMSON_REF[n]:.4f}")
        ax.set_box_aspect((1, 1, 1))
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "plasma_thomson.png"), dpi=90)
    plt.close(fig)

    lines.append("\n## 2-D Yukawa clusters in a parabolic trap\n")
    lines.append(
        "E = sum r_i^2 + sum exp(-kappa r_ij)/r_ij (Bedanov-Peeters units). "
        "Shells: particles per ring, inner to outer.\n"
    )
    lines.append(
        "| N | E/N (kappa=0) | shells (kappa=0) | Bedanov-Peeters | match "
        "| E/N (kappa=2) | shells (kappa=2) |"
    )
    lines.append("|---|---|---|---|---|---|---|")
    show = {}
    matches = 0
    for n, ref in BEDANOV_PEETERS.items():
        row = [str(n)]
        for kappa in (0.0, 2.0):
            cap = plasma.yukawa_trap(n, kappa)
            x, e, _ = best_minimum(cap, jax.random.key(100 + n), args.starts, 0, 600, 0)
            shells = cap.decode(x)["shells"]
            if kappa == 0.0:
                ok = shells == ref
                matches += ok
                row += [f"{e / n:.6f}", str(shells), str(ref), "yes" if ok else "**no**"]
                if n in (10, 19, 30):
                    show[n] = x
                    with open(os.path.join(OUT, f"yukawa_{n}.xyz"), "w") as f:
                        f.write(cap.decode(x)["xyz"])
            else:
                row += [f"{e / n:.6f}", str(shells)]
        lines.append("| " + " | ".join(row) + " |")
        print(" ".join(row), flush=True)
    lines.append(
        f"\nShell configurations matching Bedanov & Peeters: {matches}/{len(BEDANOV_PEETERS)}.\n"
    )
    lines.append("Command: `PYTHONPATH=. python experiments/plasma_clusters.py`\n")
    with open(os.path.join(OUT, "plasma_clusters.md"), "w") as f:
        f.write("\n".join(lines))

    fig, ax = plt.subplots(1, 3, figsize=(10, 3.5))
    for a, (n, x) in zip(ax, show.items()):
        c = x - x.mean(axis=0)
        a.scatter(c[:, 0], c[:, 1], s=30)
        r = np.linalg.norm(c, axis=1)
        for rad in np.unique(np.round(r, 1)):
            a.add_patch(plt.Circle((0, 0), rad, fill=False, color="gray", lw=0.5))
        a.set_aspect("equal")
        a.set_title(f"N={n} shells {plasma.shell_occupations(c)}")
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "plasma_yukawa.png"), dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
