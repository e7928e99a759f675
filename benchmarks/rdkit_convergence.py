"""How far RDKit's MMFFOptimizeMoleculeConfs converges: |grad E| of its final geometries
under idf's float64 MMFF94 gradient (kcal/mol/A, the 2-norm over all 3n coordinates of a
conformer, the quantity idf's `gtol` bounds), next to RDKit's own gradient there.

RDKit's BFGS (Code/Numerics/Optimizer/BFGSOpt.h, ForceField.cpp) stops when
max_i |0.1 g_i| max(|x_i|, 1) / max(0.1 E, 1) < forceTol (1e-4 by default), or when a
step moves no coordinate by more than 1.2e-7 relative (TOLX), or at maxIters.

    PYTHONPATH=$PWD python benchmarks/rdkit_convergence.py [--conformers 64] [--seed 11]
        [--smiles ...]
"""

from __future__ import annotations

import argparse
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from rdkit import Chem
from rdkit.Chem import rdDistGeom, rdForceFieldHelpers

from capsules.molecular import MMFFEnergy, exact_bucket, mmff_parameters

BENCHMARK = ["O", "N", "C", "C=O", "CO", "CCO", "CC(=O)O", "NCC(=O)O", "CC(C)=O", "NC(N)=O"]
HELD_OUT = ["CC(N)=O", "OCCO", "CCN", "C=CC=O", "CC#N", "NC=O", "COC", "OC=O", "CC=O", "C1CO1"]


def rdkit_final(smiles: str, num: int, seed: int, max_iters: int = 2000):
    """RDKit's ETKDG + MMFF result: (molecule, positions (C, n, 3), RDKit |grad| (C,),
    not-converged flags (C,))."""
    m = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = rdDistGeom.ETKDGv3()
    params.randomSeed = seed
    ids = list(rdDistGeom.EmbedMultipleConfs(m, numConfs=num, params=params))
    res = rdForceFieldHelpers.MMFFOptimizeMoleculeConfs(m, maxIters=max_iters)
    props = rdForceFieldHelpers.MMFFGetMoleculeProperties(m)
    pos, own = [], []
    for i in ids:
        pos.append(m.GetConformer(i).GetPositions())
        ff = rdForceFieldHelpers.MMFFGetMoleculeForceField(m, props, confId=i)
        own.append(float(np.linalg.norm(ff.CalcGrad())))
    return m, np.stack(pos), np.array(own), np.array([r[0] != 0 for r in res])


def idf_grad_norms(smiles: str, x: np.ndarray) -> np.ndarray:
    """|grad E| (float64, idf's MMFF94) at each of x (C, n, 3)."""
    p = mmff_parameters(Chem.AddHs(Chem.MolFromSmiles(smiles)))
    with jax.enable_x64(True):
        energy = MMFFEnergy.from_parameters(p, exact_bucket(p))
        g = jax.vmap(jax.grad(lambda z: energy(z)))(jnp.asarray(x, jnp.float64))
        return np.sqrt(np.sum(np.asarray(g) ** 2, axis=(1, 2)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--conformers", type=int, default=64)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--smiles", nargs="+", default=None, help="default: both sets")
    args = ap.parse_args(argv)
    sets = {"given": args.smiles} if args.smiles else {"benchmark": BENCHMARK, "held out": HELD_OUT}
    out: dict = {"load_average": os.getloadavg(), "seed": args.seed, "sets": {}}
    qs = [0.5, 0.9, 0.99, 1.0]
    for name, smiles in sets.items():
        ours, theirs, stuck = [], [], 0
        per_mol = {}
        for s in smiles:
            _, x, own, nc = rdkit_final(s, args.conformers, args.seed)
            gn = idf_grad_norms(s, x)
            ours.append(gn)
            theirs.append(own)
            stuck += int(nc.sum())
            per_mol[s] = {"median": float(np.median(gn)), "max": float(gn.max())}
        ours_a, theirs_a = np.concatenate(ours), np.concatenate(theirs)
        row = {
            "conformers": int(len(ours_a)),
            "idf_grad_quantiles": dict(zip(map(str, qs), np.quantile(ours_a, qs).tolist())),
            "rdkit_grad_quantiles": dict(zip(map(str, qs), np.quantile(theirs_a, qs).tolist())),
            "fraction_below": {
                str(t): float(np.mean(ours_a < t)) for t in (1e-5, 1e-4, 1e-3, 3e-3, 1e-2)
            },
            "rdkit_not_converged": stuck,
            "per_molecule": per_mol,
        }
        out["sets"][name] = row
        q = row["idf_grad_quantiles"]
        print(
            f"{name} ({row['conformers']} conformers, seed {args.seed}): |grad| under idf's "
            f"gradient median {q['0.5']:.1e}, 90% {q['0.9']:.1e}, 99% {q['0.99']:.1e}, "
            f"max {q['1.0']:.1e} kcal/mol/A; below 1e-5 / 1e-4 / 1e-3 / 3e-3 / 1e-2: "
            + " / ".join(f"{v:.0%}" for v in row["fraction_below"].values())
            + f"; RDKit's own |grad| max {row['rdkit_grad_quantiles']['1.0']:.1e}; "
            f"not converged (maxIters): {stuck}",
            flush=True,
        )
    out["load_average_end"] = os.getloadavg()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
