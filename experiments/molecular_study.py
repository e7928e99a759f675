"""Molecular capsule study -> experiments/results/molecular.md (+ PNG, XYZ).

1. LJ7 and LJ13: anneal many chains with `idf.sample_equilibrium` (adaptive MALA,
   geometric schedule, container constraint of the capsule), relax with L-BFGS in
   float64, and count the chains that reach the Cambridge Cluster Database minima
   (LJ7 -16.505384, LJ13 -44.326801) to 1e-4.
2. MMFF94 parity: JAX energy and gradient vs RDKit's MMFFGetMoleculeForceField at
   jittered ETKDG conformers of 35 molecules (float64).
3. Minimisation: L-BFGS (float64, vmapped over a padded batch) from the same ETKDG start
   as RDKit's MMFFOptimizeMolecule; energies side by side.
4. MolecularDiffusionCapsule().generate_equilibrium_structure for a few formulas/SMILES.

    PYTHONPATH=$PWD python experiments/molecular_study.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from rdkit import Chem  # noqa: E402
from rdkit.Chem import AllChem  # noqa: E402
from rdkit.Chem import rdForceFieldHelpers as H  # noqa: E402

import idf_jax as idf  # noqa: E402
from capsules.molecular import (  # noqa: E402
    LJ_GLOBAL_MINIMA,
    MolecularDiffusionCapsule,
    Molecule,
    batch_parameters,
    lennard_jones_cluster,
    mmff_energy_batch,
    mmff_parameters,
    pad_positions,
    relax,
)

OUT = os.path.join(os.path.dirname(__file__), "results")
PARITY = [
    "O",
    "C",
    "N",
    "O=C=O",
    "C#N",
    "CC#N",
    "CC#C",
    "C=C",
    "CCO",
    "CC(=O)O",
    "CC(C)=O",
    "CC(N)=O",
    "CNC(C)=O",
    "NC(N)=O",
    "c1ccccc1",
    "c1ccncc1",
    "Oc1ccccc1",
    "Nc1ccccc1",
    "Clc1ccccc1",
    "c1ccsc1",
    "c1c[nH]cn1",
    "o1cccc1",
    "CS(C)=O",
    "CC(=O)[O-]",
    "C[NH3+]",
    "C[N+](=O)[O-]",
    "C1CC1",
    "C1CCC1",
    "C1CCCCC1",
    "FC(F)F",
    "OP(=O)(O)OC",
    "Cn1cnc2c1c(=O)n(C)c(=O)n2C",
    "CC(=O)Oc1ccccc1C(=O)O",
    "CC(=O)NC(C)C(=O)NC",
    "BrCCBr",
]
MINIMISE = [
    "CCO",
    "CC(N)=O",
    "Oc1ccccc1",
    "CC(=O)NC",
    "CC(=O)Oc1ccccc1C(=O)O",
    "Cn1cnc2c1c(=O)n(C)c(=O)n2C",
]


def lj_study(n, chains, steps, key):
    cap = lennard_jones_cluster(n)
    x0 = cap.init(key, chains)
    res = idf.sample_equilibrium(
        cap.energy_fn,
        jax.random.fold_in(key, 1),
        x0,
        num_steps=steps,
        schedule=idf.schedules.geometric(0.5, 0.01),
        constraints=list(cap.constraints),
        relax="fire",
        relax_steps=300,
        target=LJ_GLOBAL_MINIMA[n],
        record_every=steps // 50,
    )
    with jax.enable_x64(True):
        pol = relax(
            cap.energy_fn,
            jnp.asarray(np.asarray(res.position), jnp.float64),
            max_steps=1000,
            gtol=1e-8,
        )
        e = np.asarray(pol.energy)
        pos = np.asarray(pol.position)
    hit = np.abs(e - LJ_GLOBAL_MINIMA[n]) < 1e-4
    best = int(np.argmin(e))
    cap.decode(pos[best]).write_xyz(os.path.join(OUT, f"lj{n}_best.xyz"))
    return {
        "n": n,
        "chains": chains,
        "steps": steps,
        "hits": int(hit.sum()),
        "best": float(e[best]),
        "target": LJ_GLOBAL_MINIMA[n],
        "trace": np.asarray(res.energy_trace),
        "temps": np.asarray(res.temperatures),
        "relaxed": e,
    }


def parity_study(rng):
    mols, xs = [], []
    for s in PARITY:
        m = Chem.AddHs(Chem.MolFromSmiles(s))
        AllChem.EmbedMolecule(m, randomSeed=7)
        mols.append(m)
        xs.append(m.GetConformer().GetPositions() + rng.normal(0, 0.05, (m.GetNumAtoms(), 3)))
    with jax.enable_x64(True):
        batch = batch_parameters([mmff_parameters(m) for m in mols])
        e, g = jax.jit(
            lambda X: jax.value_and_grad(lambda X: jnp.sum(mmff_energy_batch(batch, X)))(X)
        )(pad_positions(batch, xs))
        e = np.asarray(mmff_energy_batch(batch, pad_positions(batch, xs)))
        g = np.asarray(g)
    rows = []
    for s, m, x, ei, gi, n in zip(PARITY, mols, xs, e, g, batch.num_atoms):
        ff = H.MMFFGetMoleculeForceField(m, H.MMFFGetMoleculeProperties(m))
        er = ff.CalcEnergy(x.ravel().tolist())
        gr = np.asarray(ff.CalcGrad(x.ravel().tolist()))
        rows.append(
            (
                s,
                int(n),
                float(ei),
                er,
                abs(float(ei) - er),
                float(np.max(np.abs(gi[:n].ravel() - gr))),
            )
        )
    return rows


def minimise_study():
    mols, xs, e_rd = [], [], []
    for s in MINIMISE:
        m = Chem.AddHs(Chem.MolFromSmiles(s))
        AllChem.EmbedMolecule(m, randomSeed=11)
        xs.append(m.GetConformer().GetPositions())
        mm = Chem.Mol(m)
        H.MMFFOptimizeMolecule(mm, maxIters=20000)
        e_rd.append(H.MMFFGetMoleculeForceField(mm, H.MMFFGetMoleculeProperties(mm)).CalcEnergy())
        mols.append(m)
    with jax.enable_x64(True):
        batch = batch_parameters([mmff_parameters(m) for m in mols])
        X = pad_positions(batch, xs)
        res = relax(
            lambda X: jnp.sum(mmff_energy_batch(batch, X)), X[None], max_steps=5000, gtol=1e-6
        )
        e = np.asarray(mmff_energy_batch(batch, res.position[0]))
        e0 = np.asarray(mmff_energy_batch(batch, X))
        pos = np.asarray(res.position[0])
    for s, m, n, p, ei in zip(MINIMISE, mols, batch.num_atoms, pos, e):
        Molecule(tuple(a.GetSymbol() for a in m.GetAtoms()), p[:n], float(ei), smiles=s).write_xyz(
            os.path.join(OUT, f"mmff_min_{Chem.MolToInchiKey(m)[:8]}.xyz")
        )
    return list(zip(MINIMISE, e0, e, e_rd))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    os.makedirs(OUT, exist_ok=True)
    t0 = time.time()
    chains, steps = (32, 2000) if args.quick else (128, 6000)
    lj = [
        lj_study(7, chains, steps, jax.random.key(7)),
        lj_study(13, chains, steps, jax.random.key(13)),
    ]
    t_lj = time.time() - t0
    parity = parity_study(np.random.default_rng(0))
    t_par = time.time() - t0 - t_lj
    mins = minimise_study()
    t_min = time.time() - t0 - t_lj - t_par
    gen = []
    opt = MolecularDiffusionCapsule(num_chains=8, num_steps=400)
    for q in ["H2O", "CH4O", "CC(=O)NC"]:
        mol = opt.generate_equilibrium_structure(q, temperature=300)
        mol.write_xyz(os.path.join(OUT, f"equilibrium_{mol.formula}.xyz"))
        gen.append((q, mol.smiles, mol.formula, mol.energy, max(opt.last_run["relaxed_grad_norm"])))
    t_gen = time.time() - t0 - t_lj - t_par - t_min

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for r, ax in zip(lj, axes[:2]):
        tr = r["trace"]
        for c in range(min(16, tr.shape[0])):
            ax.plot(tr[c], lw=0.6, alpha=0.6)
        ax.axhline(r["target"], color="k", ls="--", label=f"CCD minimum {r['target']}")
        ax.set_title(f"LJ{r['n']}: annealing energy per chain (16 of {r['chains']})")
        ax.set_xlabel(f"record (every {r['steps'] // 50} steps)")
        ax.set_ylabel("E / eps")
        ax.set_ylim(r["target"] - 1, r["target"] + 25)
        ax.legend()
    d = np.array([p[4] for p in parity])
    axes[2].semilogy(range(len(parity)), np.maximum(d, 1e-16), "o")
    axes[2].axhline(1e-3, color="r", ls="--", label="1e-3 kcal/mol")
    axes[2].set_xticks(range(len(parity)))
    axes[2].set_xticklabels([p[0] for p in parity], rotation=90, fontsize=6)
    axes[2].set_ylabel("|E_jax - E_rdkit| (kcal/mol)")
    axes[2].set_title("MMFF94 parity with RDKit")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "molecular.png"), dpi=110)

    L = [
        "# Molecular capsule study",
        "",
        f"Command: `PYTHONPATH=$PWD python experiments/molecular_study.py{' --quick' if args.quick else ''}`"
        f" (CPU, shared loaded machine; wall {time.time() - t0:.0f} s: LJ {t_lj:.0f} s, parity "
        f"{t_par:.0f} s, minimisation {t_min:.0f} s, generate {t_gen:.0f} s).",
        "",
        "## 1. Lennard-Jones clusters: annealing + relaxation",
        "",
        "`idf.sample_equilibrium` (adaptive MALA, T geometric 0.5 -> 0.01 eps, container "
        "constraint of the capsule, FIRE relax), then float64 L-BFGS to |grad| <= 1e-8.",
        "",
        "| cluster | chains | steps | chains at CCD minimum (1e-4) | best E | CCD minimum |",
        "|---|---|---|---|---|---|",
    ]
    for r in lj:
        L.append(
            f"| LJ{r['n']} | {r['chains']} | {r['steps']} | {r['hits']} / {r['chains']} "
            f"({100 * r['hits'] / r['chains']:.0f}%) | {r['best']:.6f} | {r['target']:.6f} |"
        )
    L += [
        "",
        "Best structures: `lj7_best.xyz`, `lj13_best.xyz`. Plot: `molecular.png`.",
        "",
        "## 2. MMFF94 energy parity with RDKit (float64, ETKDG conformers jittered by 0.05 A)",
        "",
        "| SMILES | atoms | E jax (kcal/mol) | E RDKit | abs diff | max abs grad diff |",
        "|---|---|---|---|---|---|",
    ]
    for s, n, ej, er, de, dg in parity:
        L.append(f"| `{s}` | {n} | {ej:.6f} | {er:.6f} | {de:.1e} | {dg:.1e} |")
    L += [
        "",
        f"Max |dE| over {len(parity)} molecules: {max(p[4] for p in parity):.1e} kcal/mol; "
        f"max |dgrad|: {max(p[5] for p in parity):.1e} kcal/mol/A.",
        "",
        "## 3. Minimisation from the same ETKDG start: JAX L-BFGS vs RDKit MMFFOptimizeMolecule",
        "",
        "| SMILES | E start | E jax L-BFGS | E RDKit optimised | jax - RDKit |",
        "|---|---|---|---|---|",
    ]
    for s, e0, ej, er in mins:
        L.append(f"| `{s}` | {e0:.4f} | {ej:.6f} | {er:.6f} | {ej - er:+.1e} |")
    L += [
        "",
        "## 4. MolecularDiffusionCapsule().generate_equilibrium_structure(q, 300 K)",
        "",
        "| input | SMILES | formula | E (kcal/mol) | max |grad| over chains |",
        "|---|---|---|---|---|",
    ]
    for q, s, f, e, gn in gen:
        L.append(f"| `{q}` | `{s}` | {f} | {e:.6f} | {gn:.1e} |")
    L += ["", "XYZ files: `equilibrium_*.xyz`, `mmff_min_*.xyz`."]
    with open(os.path.join(OUT, "molecular.md"), "w") as f:
        f.write("\n".join(L) + "\n")
    print("\n".join(L))


if __name__ == "__main__":
    main()
