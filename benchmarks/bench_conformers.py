"""Conformers of small molecules: idf (padded MMFF94 Modules, one compiled call per bucket)
vs RDKit (ETKDG + MMFFOptimizeMoleculeConfs), side by side.

Molecules (C, H, N, O; 3 to 10 atoms with hydrogens): water, ammonia, methane,
formaldehyde, methanol, ethanol, acetic acid, glycine, acetone, urea.

(a) cold: a fresh Python process (this script re-run as a child) imports idf and
    relaxes all ten with `MolecularDiffusionCapsule().generate_equilibrium_structures`
    (defaults: 8 ETKDG conformers each, 600 annealing steps, L-BFGS to 1e-6); the time
    is measured from the process's start (imports and compilation included).
(b) warm: for C conformers per molecule (all ten molecules x C in one compiled call,
    compilation excluded by a warm-up call of the same shapes), the same ETKDG starts
    (same seeds) are relaxed by idf (`relax_conformers`, float64 L-BFGS to
    |grad| < 1e-5 kcal/mol/A, no annealing) and by RDKit (MMFFOptimizeMoleculeConfs,
    maxIters 2000, one thread); reported: seconds per conformer of each (embedding
    included for both, it is the same RDKit call), the ratio idf / RDKit, and the largest
    bond-length and energy difference between the two minima of every conformer (bond
    lengths sorted, over the conformers where both reach the same minimum).

    PYTHONPATH=$PWD python benchmarks/bench_conformers.py [--conformers 64 256]
        [--molecules water ethanol ...] [--gtol 1e-5 1e-3] [--memory 8 16]
        [--method lbfgs bfgs] [--skip-cold] [--skip-warm]
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()  # before any import below (the cold figure adds the
# interpreter start-up, read from /proc where available)

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

MOLECULES = {
    "water": "O",
    "ammonia": "N",
    "methane": "C",
    "formaldehyde": "C=O",
    "methanol": "CO",
    "ethanol": "CCO",
    "acetic acid": "CC(=O)O",
    "glycine": "NCC(=O)O",
    "acetone": "CC(C)=O",
    "urea": "NC(N)=O",
}


def _process_age() -> float:
    """Seconds since this process started (Linux /proc; else since the script started)."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = float(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _T0


def cold_child() -> dict:
    """(a), run in a fresh process: everything from the process start."""
    from capsules.molecular import MolecularDiffusionCapsule

    imported = _process_age()
    cpu0 = time.process_time()
    opt = MolecularDiffusionCapsule()
    mols = opt.generate_equilibrium_structures(list(MOLECULES.values()))
    total = _process_age()
    return {
        "seconds_from_process_start": total,
        "imports_done_at": imported,
        "cpu_seconds_after_imports": time.process_time() - cpu0,
        "phases": opt.last_run["seconds"],
        "bucket": opt.last_run["bucket"],
        "energies": {m.smiles: m.energy for m in mols},
        "max_grad_norm": max(max(r["relaxed_grad_norm"]) for r in opt.last_run["molecules"]),
    }


def _bond_lengths(mol, x):
    import numpy as np

    i = np.array([b.GetBeginAtomIdx() for b in mol.GetBonds()])
    j = np.array([b.GetEndAtomIdx() for b in mol.GetBonds()])
    return np.linalg.norm(x[..., i, :] - x[..., j, :], axis=-1)


def warm(
    names: list[str],
    num: int,
    seed: int = 11,
    gtols: tuple[float, ...] = (1e-5,),
    caps: tuple[int | None, ...] = (None,),
    repeats: int = 1,
    f32_tols: tuple[float | None, ...] = (None,),
    memories: tuple[int | None, ...] = (None,),
    methods: tuple[str, ...] = ("lbfgs",),
) -> list[dict]:
    """(b) for `num` conformers of every molecule in `names`: one result per tolerance
    in `gtols` (kcal/mol/A), float32 iteration cap in `caps` (None: the library's
    default; 2000: unbounded), float32 tolerance in `f32_tols` (None: the default),
    L-BFGS memory in `memories` and method in `methods` ("lbfgs", "bfgs"), every variant and RDKit timed `repeats` times, alternated, in this one process."""
    import jax
    import numpy as np
    from rdkit import Chem
    from rdkit.Chem import rdDistGeom, rdForceFieldHelpers

    from capsules.molecular import _relax, embed_conformers, mmff_parameters, relax_conformers

    smiles = [MOLECULES.get(n, n) for n in names]  # a name, or a SMILES (--smiles)
    mols = [Chem.AddHs(Chem.MolFromSmiles(s)) for s in smiles]

    variants = [
        (gtol, cap, tol, mem, method)
        for method in methods
        for gtol in gtols
        for cap in caps
        for tol in f32_tols
        for mem in memories
    ]

    def idf_run(relax_steps, variant):
        gtol, cap, tol, mem, method = variant
        t0, c0 = time.perf_counter(), time.process_time()
        params = [mmff_parameters(m) for m in mols]
        confs = [embed_conformers(m, num, seed) for m in mols]
        t_embed = time.perf_counter() - t0
        timings: dict = {}
        sets = relax_conformers(
            params,
            confs,
            key=jax.random.key(0),
            relax_steps=relax_steps,
            gtol=gtol,
            float32_max_iter=cap,
            float32_gtol=tol,
            memory=mem,
            method=method,
            timings=timings,
        )
        timings["total_cpu"] = time.process_time() - c0
        return time.perf_counter() - t0, t_embed, timings, sets

    def rdkit_run():
        t_rd, t_rd_embed, rd_pos, rd_e, rd_gmax, not_conv = 0.0, 0.0, [], [], 0.0, 0
        c_rd = 0.0
        for m in mols:
            m = Chem.Mol(m)
            t0, c0 = time.perf_counter(), time.process_time()
            params = rdDistGeom.ETKDGv3()
            params.randomSeed = seed
            ids = list(rdDistGeom.EmbedMultipleConfs(m, numConfs=num, params=params))
            t1 = time.perf_counter()
            res = rdForceFieldHelpers.MMFFOptimizeMoleculeConfs(m, maxIters=2000)
            t_rd += time.perf_counter() - t0
            c_rd += time.process_time() - c0
            t_rd_embed += t1 - t0
            not_conv += sum(int(r[0] != 0) for r in res)
            pos = np.stack([m.GetConformer(i).GetPositions() for i in ids])
            rd_pos.append(pos[np.arange(num) % len(ids)])
            rd_e.append(np.array([r[1] for r in res])[np.arange(num) % len(ids)])
            props = rdForceFieldHelpers.MMFFGetMoleculeProperties(m)
            for i in ids:
                ff = rdForceFieldHelpers.MMFFGetMoleculeForceField(m, props, confId=i)
                rd_gmax = max(rd_gmax, float(np.linalg.norm(ff.CalcGrad())))
        return t_rd, t_rd_embed, c_rd, rd_pos, rd_e, rd_gmax, not_conv

    # compiles every shape the timed runs use: the (bucket, molecules, conformers) grid
    # and the smaller grids the still-running conformers are gathered into (the same
    # starts and cap give the same ones)
    for v in variants:
        idf_run(2000, v)
    traces = dict(_relax.TRACES)
    runs: dict = {v: [] for v in variants}
    rd_runs = []
    for _ in range(repeats):
        for v in variants:
            runs[v].append(idf_run(2000, v))
        rd_runs.append(rdkit_run())
    assert dict(_relax.TRACES) == traces, "the timed runs compiled again"
    t_rd = float(np.mean([r[0] for r in rd_runs]))
    t_rd_embed = float(np.mean([r[1] for r in rd_runs]))
    c_rd = float(np.mean([r[2] for r in rd_runs]))
    _, _, _, rd_pos, rd_e, rd_gmax, not_conv = rd_runs[-1]
    count = num * len(mols)
    out = []
    first_sets = runs[variants[0]][-1][3]
    for gtol, cap, tol, mem, method in variants:
        r_v = runs[(gtol, cap, tol, mem, method)]
        t_idf = float(np.mean([r[0] for r in r_v]))
        t_idf_embed = float(np.mean([r[1] for r in r_v]))
        tims = [r[2] for r in r_v]
        timings, sets = tims[-1], r_v[-1][3]

        def mean(key, tims=tims):
            return float(np.mean([t[key] for t in tims]))

        # the same start can end in different minima (the two optimisers take different
        # paths), or in the same one with equivalent atoms swapped (a methyl turned by
        # 120 degrees): bond lengths are compared sorted, over the conformers whose
        # energies agree
        d_energy = [s.energies - e for s, e in zip(sets, rd_e)]
        same = [np.abs(d) < 1e-4 for d in d_energy]
        d_bond = [
            np.max(
                np.abs(np.sort(_bond_lengths(m, s.positions)) - np.sort(_bond_lengths(m, p))),
                axis=-1,
            )
            for m, s, p in zip(mols, sets, rd_pos)
        ]
        d_same = max(float(np.max(d[k], initial=0.0)) for d, k in zip(d_bond, same))
        # against the first variant (the same starts, idf's other tolerance or cap)
        d_e_first = [s.energies - f.energies for s, f in zip(sets, first_sets)]
        same_first = [np.abs(d) < 1e-4 for d in d_e_first]
        d_bond_first = max(
            float(
                np.max(
                    np.abs(
                        np.sort(_bond_lengths(m, s.positions))
                        - np.sort(_bond_lengths(m, f.positions))
                    )[k],
                    initial=0.0,
                )
            )
            for m, s, f, k in zip(mols, sets, first_sets, same_first)
        )
        out.append(
            {
                "conformers_per_molecule": num,
                "gtol": gtol,
                "float32_max_iter": cap,
                "float32_gtol": tol,
                "memory": mem,
                "method": method,
                "repeats": repeats,
                "molecules": names,
                "idf_s_per_conformer": t_idf / count,
                "idf_s_per_conformer_runs": [r[0] / count for r in r_v],
                "rdkit_s_per_conformer": t_rd / count,
                "ratio_idf_over_rdkit": t_idf / t_rd,
                "ratio_cpu_idf_over_rdkit": mean("total_cpu") / c_rd,
                "idf_relax_s_per_conformer": mean("relax") / count,
                "idf_relax_cpu_s_per_conformer": mean("relax_cpu") / count,
                "idf_relax_iterations_mean": timings["relax_iterations_mean"],
                "idf_relax_iterations_max": timings["relax_iterations_max"],
                "idf_float32_iterations_mean": timings["relax_float32_iterations_mean"],
                "idf_float32_iterations_max": timings["relax_float32_iterations_max"],
                "idf_float32_capped": timings["relax_float32_capped"],
                "idf_float64_iterations_mean": timings["relax_float64_iterations_mean"],
                "idf_float64_iterations_quantiles": timings["relax_float64_iterations_quantiles"],
                "idf_relax_passes": timings["relax_passes"],
                "embed_s_per_conformer": t_idf_embed / count,
                "rdkit_mmff_s_per_conformer": (t_rd - t_rd_embed) / count,
                "same_minimum": int(sum(int(k.sum()) for k in same)),
                "max_bond_length_difference_A": d_same,
                "max_bond_length_difference_all_A": max(float(np.max(d)) for d in d_bond),
                "max_energy_idf_minus_rdkit": float(max(np.max(d) for d in d_energy)),
                "min_energy_idf_minus_rdkit": float(min(np.min(d) for d in d_energy)),
                "same_minimum_as_first_variant": int(sum(int(k.sum()) for k in same_first)),
                "max_bond_length_difference_first_variant_A": d_bond_first,
                "max_abs_energy_difference_first_variant": float(
                    max(np.max(np.abs(d)) for d in d_e_first)
                ),
                "idf_max_grad_norm": float(max(np.max(s.grad_norms) for s in sets)),
                "rdkit_max_grad_norm": rd_gmax,
                "rdkit_not_converged": not_conv,
            }
        )
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description="Conformers of small molecules: idf vs RDKit")
    ap.add_argument("--conformers", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--molecules", nargs="+", default=list(MOLECULES), choices=list(MOLECULES))
    ap.add_argument(
        "--gtol",
        type=float,
        nargs="+",
        default=[1e-5],
        help="idf's L-BFGS tolerances to compare, kcal/mol/A (warm)",
    )
    ap.add_argument(
        "--float32-max-iter",
        type=int,
        nargs="+",
        default=[None],
        help="float32 L-BFGS iteration caps to compare in this process (2000: unbounded; "
        "default: the library's FLOAT32_MAX_ITER)",
    )
    ap.add_argument(
        "--float32-gtol",
        type=float,
        nargs="+",
        default=[None],
        help="float32 stage tolerances to compare (default: the library's FLOAT32_GTOL)",
    )
    ap.add_argument(
        "--memory",
        type=int,
        nargs="+",
        default=[None],
        help="L-BFGS memories to compare (default: the library's MEMORY)",
    )
    ap.add_argument(
        "--method",
        nargs="+",
        default=["lbfgs"],
        choices=["lbfgs", "bfgs", "lbfgs_bfgs"],
        help="relaxations to compare in this process: L-BFGS, dense BFGS per conformer, "
        "L-BFGS in float32 then dense BFGS in float64",
    )
    ap.add_argument("--repeats", type=int, default=1, help="timed runs of each, alternated")
    ap.add_argument("--seed", type=int, default=11, help="ETKDG seed (warm)")
    ap.add_argument(
        "--smiles", nargs="+", default=None, help="other molecules (warm), instead of --molecules"
    )
    ap.add_argument("--skip-cold", action="store_true")
    ap.add_argument("--skip-warm", action="store_true")
    ap.add_argument("--cold-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.smiles:
        args.molecules = list(args.smiles)
    if args.cold_child:
        print(json.dumps(cold_child()))
        return
    out: dict = {"load_average": os.getloadavg() if hasattr(os, "getloadavg") else None}
    if not args.skip_cold:
        child = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--cold-child"],
            capture_output=True,
            text=True,
            check=True,
        )
        out["cold"] = json.loads((child.stdout or "").strip().splitlines()[-1])
        c = out["cold"]
        print(
            f"(a) cold, 10 molecules x 8 conformers: {c['seconds_from_process_start']:.1f} s from "
            f"process start (imports done at {c['imports_done_at']:.1f} s; "
            f"anneal {c['phases']['anneal']:.1f} s, relax {c['phases']['relax']:.1f} s; "
            f"target <= 40 s)",
            flush=True,
        )
    if not args.skip_warm:
        out["warm"] = []
        for num in args.conformers:
            for r in warm(
                args.molecules,
                num,
                seed=args.seed,
                gtols=tuple(args.gtol),
                caps=tuple(args.float32_max_iter),
                repeats=args.repeats,
                f32_tols=tuple(args.float32_gtol),
                memories=tuple(args.memory),
                methods=tuple(args.method),
            ):
                out["warm"].append(r)
                print(
                    f"(b) {num} conformers x {len(args.molecules)} molecules, gtol "
                    f"{r['gtol']:.0e}, float32 cap "
                    f"{r['float32_max_iter']}, float32 gtol {r['float32_gtol']}, memory {r['memory']}, "
                    f"method {r['method']} (seed {args.seed}, load now "
                    f"{os.getloadavg()[0]:.1f}): "
                    f"idf {1e3 * r['idf_s_per_conformer']:.2f} ms/conformer "
                    f"(relax {1e3 * r['idf_relax_s_per_conformer']:.2f}, CPU "
                    f"{1e3 * r['idf_relax_cpu_s_per_conformer']:.2f}; L-BFGS iterations mean "
                    f"{r['idf_relax_iterations_mean']:.0f}, max {r['idf_relax_iterations_max']}), RDKit "
                    f"{1e3 * r['rdkit_s_per_conformer']:.2f} (MMFF "
                    f"{1e3 * r['rdkit_mmff_s_per_conformer']:.2f}), embedding "
                    f"{1e3 * r['embed_s_per_conformer']:.2f}; ratio idf/RDKit "
                    f"{r['ratio_idf_over_rdkit']:.2f} (target <= 1; CPU time "
                    f"{r['ratio_cpu_idf_over_rdkit']:.2f}); same minimum for "
                    f"{r['same_minimum']}/{num * len(args.molecules)}, there max |d bond| "
                    f"{r['max_bond_length_difference_A']:.1e} A (all: "
                    f"{r['max_bond_length_difference_all_A']:.1e}); E(idf) - E(RDKit) in "
                    f"[{r['min_energy_idf_minus_rdkit']:.1e}, {r['max_energy_idf_minus_rdkit']:.1e}]; "
                    f"float32 iterations mean {r['idf_float32_iterations_mean']:.0f}, max "
                    f"{r['idf_float32_iterations_max']}, {r['idf_float32_capped']} capped; "
                    f"float64 iterations mean {r['idf_float64_iterations_mean']:.1f}, "
                    f"quantiles 50/90/99/100% {r['idf_float64_iterations_quantiles']}; "
                    f"idf max |grad| {r['idf_max_grad_norm']:.1e}, RDKit {r['rdkit_max_grad_norm']:.1e}; "
                    f"vs the first variant: same minimum {r['same_minimum_as_first_variant']}, "
                    f"max |d bond| there {r['max_bond_length_difference_first_variant_A']:.1e} A, "
                    f"max |dE| {r['max_abs_energy_difference_first_variant']:.1e}",
                    flush=True,
                )
                for p in r["idf_relax_passes"]:
                    print(
                        f"    pass: {p['dtype']} grid {p['molecules']} x {p['conformers']}, {p['running']} "
                        f"running, {p['iterations']} iterations, {p['seconds']:.3f} s "
                        f"({p['cpu_seconds']:.3f} s CPU)",
                        flush=True,
                    )
    out["load_average_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(json.dumps(out, default=float))


if __name__ == "__main__":
    main()
