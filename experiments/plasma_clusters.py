"""Study: Thomson minima on the sphere and shell structure of trapped Yukawa clusters.

Thomson: for N = 2..12 (and 24, 32), many random starts annealed with
`idf.sample_equilibrium` (projected MALA on the sphere, then relaxation); the best energy
is compared with the known minima.
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
import idf_jax as idf  # noqa: E402
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


KAPPA2 = (6, 10, 12, 16, 19, 20)  # sizes also run with screening kappa = 2


def best_minimum(cap, key, starts, num_steps):
    """idf.sample_equilibrium from `starts` random states; (best x, best E, all E)."""
    res = idf.sample_equilibrium(
        cap.energy_fn,
        key,
        cap.init(key, starts),
        num_steps=num_steps,
        project=cap.project,
        relax_steps=500,
    )
    e = np.asarray(res.energy, np.float64)
    e = np.where(np.isfinite(e), e, np.inf)
    return np.asarray(res.best_position), float(res.best_energy), e


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--starts", type=int, default=32)
    ap.add_argument("--max-n", type=int, default=20, help="largest Yukawa cluster")
    ap.add_argument("--steps", type=int, default=1000, help="annealing steps per start")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(OUT, exist_ok=True)
    lines = ["# Plasma capsules: Thomson minima and Yukawa cluster shells\n"]
    lines.append(
        f"Best of {args.starts} starts: `idf.sample_equilibrium`, {args.steps} annealing steps "
        "then FIRE relaxation (its default), energies in float32 (the small negative "
        "differences are float32 rounding of the pair sums).\n"
    )
    lines.append(
        "## Thomson problem\n\n| N | best E | known minimum | difference | starts reaching it |"
    )
    lines.append("|---|---|---|---|---|")
    structures = {}
    for n, ref in THOMSON_REF.items():
        cap = plasma.thomson(n)
        x, e, all_e = best_minimum(cap, jax.random.key(n), args.starts, args.steps)
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
        if n > args.max_n:
            continue
        row = [str(n)]
        for kappa in (0.0, 2.0) if n in KAPPA2 else (0.0,):
            cap = plasma.yukawa_trap(n, kappa)
            x, e, _ = best_minimum(cap, jax.random.key(100 + n), args.starts, args.steps)
            shells = cap.decode(x)["shells"]
            if kappa == 0.0:
                ok = shells == ref
                matches += ok
                row += [f"{e / n:.6f}", str(shells), str(ref), "yes" if ok else "**no**"]
                if n in (10, 19, args.max_n):
                    show[n] = x
                    with open(os.path.join(OUT, f"yukawa_{n}.xyz"), "w") as f:
                        f.write(cap.decode(x)["xyz"])
            else:
                row += [f"{e / n:.6f}", str(shells)]
        if n not in KAPPA2:
            row += ["", ""]
        lines.append("| " + " | ".join(row) + " |")
        print(" ".join(row), flush=True)
    lines.append(
        f"\nShell configurations matching Bedanov & Peeters: {matches}/{sum(n <= args.max_n for n in BEDANOV_PEETERS)}.\n"
    )
    cmd = " ".join(["PYTHONPATH=. python experiments/plasma_clusters.py", *sys.argv[1:]])
    lines.append(f"Command: `{cmd}`\n")
    with open(os.path.join(OUT, "plasma_clusters.md"), "w") as f:
        f.write("\n".join(lines))

    fig, ax = plt.subplots(1, len(show), figsize=(3.4 * len(show), 3.5), squeeze=False)
    for a, (n, x) in zip(ax[0], show.items()):
        c = x - x.mean(axis=0)
        a.scatter(c[:, 0], c[:, 1], s=30)
        r = np.sort(np.linalg.norm(c, axis=1))
        start = 0
        for size in plasma.shell_occupations(c):  # one circle per shell, at its mean radius
            rad = r[start : start + size].mean()
            start += size
            a.add_patch(plt.Circle((0, 0), rad, fill=False, color="gray", lw=0.5))
        a.set_aspect("equal")
        a.set_title(f"N={n} shells {plasma.shell_occupations(c)}")
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "plasma_yukawa.png"), dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
