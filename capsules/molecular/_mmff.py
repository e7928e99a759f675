"""MMFF94 parameters of a molecule, every one taken per term from RDKit.

RDKit (the `molecular` extra, imported lazily) types the atoms and supplies, term by
term, the MMFF94 parameters (`MMFFGetMoleculeProperties`: bond stretch, angle bend,
stretch-bend, out-of-plane, torsion, vdW, partial charges); the energy itself is a pure
JAX function of the (n, 3) coordinates in angstrom, in kcal/mol (`_terms`, `_energy`),
so conformers can be minimised and sampled in vmapped batches. Terms are enumerated
exactly as RDKit's MMFF builder does (Halgren, J. Comput. Chem. 17, 490 (1996)):

    bond      E = 143.9325/2 kb dr^2 (1 + cs dr + 7/12 cs^2 dr^2),   cs = -2 / A
    angle     E = 0.043844/2 ka dt^2 (1 + cb dt),  cb = -0.006981317 / deg  (dt in deg)
              E = 143.9325 ka (1 + cos t)             for linear centres (types 4, 53, 61)
    str-bend  E = 2.51210 (kIJK dr_ij + kKJI dr_kj) dt    (not for linear centres)
    oop       E = 0.043844/2 koop chi^2   (Wilson angle chi in deg, 3 per trivalent atom)
    torsion   E = 1/2 (V1 (1 + cos p) + V2 (1 - cos 2p) + V3 (1 + cos 3p))
    vdW       E = eps (1.07 R*/(r + 0.07 R*))^7 (1.12 R*^7/(r^7 + 0.12 R*^7) - 2)
    Coulomb   E = 332.0716 s qi qj / (D (r + 0.05)^m),  s = 0.75 for 1-4 pairs, m = 1
              (constant dielectric) or 2 (distance-dependent)

Non-bonded pairs: atoms three or more bonds apart within one fragment (RDKit's default
ignoreInterfragInteractions=True); RDKit's 100 A non-bonded cut-off is not applied.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

__all__ = ["MMFFParameters", "mmff_parameters", "parse_smiles"]

_LINEAR_TYPES = frozenset({4, 53, 61})  # MMFFPROP.PAR 'lin' flag
_TORSION_BOND_SMARTS = "[!$(*#*)&!D1]~[!$(*#*)&!D1]"  # RDKit's default torsion bonds


@dataclasses.dataclass(frozen=True)
class MMFFParameters:
    """Index and parameter arrays (numpy, float64) of every MMFF94 term of one molecule.

    Shapes: bonds (nb, 2) with kb (mdyn/A), r0 (A); angles (na, 3) (i, centre, k) with
    ka (mdyn A / rad^2), theta0 (deg), linear (bool); stretch-bends (ns, 3) with kba_ijk,
    kba_kji (mdyn / rad), r0_ij, r0_kj, theta0; oops (no, 4) (i, centre, k, l: l out of
    plane) with koop; torsions (nt, 4) with v (nt, 3) kcal/mol; vdW pairs (nv, 2) with
    r_star (A), eps (kcal/mol); electrostatic pairs (ne, 2) with qq = 332.0716 s qi qj / D.
    """

    smiles: str
    elements: tuple[str, ...]
    atom_types: np.ndarray
    charges: np.ndarray
    bonds: np.ndarray
    kb: np.ndarray
    r0: np.ndarray
    angles: np.ndarray
    ka: np.ndarray
    theta0: np.ndarray
    linear: np.ndarray
    stbn: np.ndarray
    kba_ijk: np.ndarray
    kba_kji: np.ndarray
    stbn_r0_ij: np.ndarray
    stbn_r0_kj: np.ndarray
    stbn_theta0: np.ndarray
    oops: np.ndarray
    koop: np.ndarray
    torsions: np.ndarray
    v: np.ndarray
    vdw_pairs: np.ndarray
    r_star: np.ndarray
    eps: np.ndarray
    ele_pairs: np.ndarray
    qq: np.ndarray
    distance_dielectric: bool
    variant: str

    @property
    def num_atoms(self) -> int:
        return len(self.elements)


# ------------------------------------------------------------------ RDKit side


def _rdkit():
    try:
        from rdkit import Chem, rdBase
        from rdkit.Chem import rdForceFieldHelpers
    except ImportError as e:  # pragma: no cover - rdkit is in the molecular extra
        raise ImportError("MMFF94 molecules need RDKit: pip install 'idf-jax[molecular]'") from e
    rdBase.DisableLog("rdApp.*")
    return Chem, rdForceFieldHelpers


def parse_smiles(smiles: str):
    """RDKit molecule with explicit hydrogens; ValueError for an empty or invalid SMILES."""
    Chem, _ = _rdkit()
    if not isinstance(smiles, str) or not smiles.strip():
        raise ValueError(f"SMILES must be a non-empty string, got {smiles!r}")
    mol = Chem.MolFromSmiles(smiles.strip())
    if mol is None:
        raise ValueError(f"RDKit cannot parse SMILES {smiles!r}; check the string")
    return Chem.AddHs(mol)


def _f64(a, shape_tail=()):
    return np.asarray(a, dtype=np.float64).reshape((-1, *shape_tail))


def _i32(a, width):
    return np.asarray(a, dtype=np.int32).reshape(-1, width)


def mmff_parameters(
    smiles_or_mol: Any,
    *,
    variant: str = "MMFF94",
    dielectric_constant: float = 1.0,
    distance_dielectric: bool = False,
) -> MMFFParameters:
    """Type a molecule with RDKit and collect the MMFF94 parameters of every term.

    Args:
        smiles_or_mol: a SMILES string (hydrogens are added) or an RDKit Mol that
            already has explicit hydrogens.
        variant: "MMFF94" or "MMFF94s".
        dielectric_constant: D > 0 in the Coulomb term.
        distance_dielectric: use the distance-dependent dielectric D r.

    Raises ValueError for an invalid SMILES or a molecule MMFF94 cannot type.
    """
    Chem, H = _rdkit()
    if variant not in ("MMFF94", "MMFF94s"):
        raise ValueError(f"variant must be 'MMFF94' or 'MMFF94s', got {variant!r}")
    if not np.isfinite(dielectric_constant) or dielectric_constant <= 0:
        raise ValueError(f"dielectric_constant must be positive, got {dielectric_constant!r}")
    if isinstance(smiles_or_mol, str):
        mol = parse_smiles(smiles_or_mol)
        smiles = smiles_or_mol.strip()
    else:
        mol = smiles_or_mol
        smiles = Chem.MolToSmiles(Chem.RemoveHs(mol))
    if mol.GetNumAtoms() < 2:
        raise ValueError(f"need at least 2 atoms for a force field, got {mol.GetNumAtoms()}")
    if not H.MMFFHasAllMoleculeParams(mol):
        raise ValueError(f"MMFF94 has no parameters for some atom of {smiles!r}")
    props = H.MMFFGetMoleculeProperties(mol, mmffVariant=variant)
    if props is None:
        raise ValueError(f"MMFF94 cannot type the atoms of {smiles!r}")
    n = mol.GetNumAtoms()
    types = np.array([props.GetMMFFAtomType(i) for i in range(n)], dtype=np.int32)
    charges = np.array([props.GetMMFFPartialCharge(i) for i in range(n)], dtype=np.float64)

    bonds, kb, r0 = [], [], []
    for b in mol.GetBonds():
        i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        p = props.GetMMFFBondStretchParams(mol, i, j)
        if p is not None:
            bonds.append((i, j))
            kb.append(p[1])
            r0.append(p[2])

    def bond_r0(i, j):
        p = props.GetMMFFBondStretchParams(mol, i, j)
        if p is None:
            raise ValueError(f"no MMFF94 bond parameters for atoms {i}-{j} of {smiles!r}")
        return p[2]

    angles, ka, theta0, linear = [], [], [], []
    stbn, kij, kkj, sr0ij, sr0kj, st0 = [], [], [], [], [], []
    for atom in mol.GetAtoms():
        if atom.GetDegree() < 2:
            continue
        j = atom.GetIdx()
        nbrs = [a.GetIdx() for a in atom.GetNeighbors()]
        is_lin = int(types[j]) in _LINEAR_TYPES
        for a in range(len(nbrs)):
            for c in range(a + 1, len(nbrs)):
                i, k = nbrs[a], nbrs[c]
                p = props.GetMMFFAngleBendParams(mol, i, j, k)
                if p is not None:
                    angles.append((i, j, k))
                    ka.append(p[1])
                    theta0.append(p[2])
                    linear.append(is_lin)
                if is_lin:
                    continue
                s = props.GetMMFFStretchBendParams(mol, i, j, k)
                if s is not None:
                    pa = props.GetMMFFAngleBendParams(mol, i, j, k)
                    stbn.append((i, j, k))
                    kij.append(s[1])
                    kkj.append(s[2])
                    sr0ij.append(bond_r0(i, j))
                    sr0kj.append(bond_r0(k, j))
                    st0.append(pa[2])

    oops, koop = [], []
    for atom in mol.GetAtoms():
        if atom.GetDegree() != 3:
            continue
        j = atom.GetIdx()
        a0, a2, a3 = (a.GetIdx() for a in atom.GetNeighbors())
        k = props.GetMMFFOopBendParams(mol, a0, j, a2, a3)
        if k is None:
            continue
        for quad in ((a0, j, a2, a3), (a0, j, a3, a2), (a2, j, a3, a0)):
            oops.append(quad)
            koop.append(k)

    torsions, v = [], []
    query = Chem.MolFromSmarts(_TORSION_BOND_SMARTS)
    ok_hyb = (Chem.HybridizationType.SP2, Chem.HybridizationType.SP3)
    for j, k in mol.GetSubstructMatches(query, uniquify=True, maxMatches=1000):
        bond = mol.GetBondBetweenAtoms(j, k)
        aj, ak = mol.GetAtomWithIdx(j), mol.GetAtomWithIdx(k)
        if aj.GetHybridization() not in ok_hyb or ak.GetHybridization() not in ok_hyb:
            continue
        for b1 in aj.GetBonds():
            if b1.GetIdx() == bond.GetIdx():
                continue
            i = b1.GetOtherAtomIdx(j)
            for b2 in ak.GetBonds():
                if b2.GetIdx() in (bond.GetIdx(), b1.GetIdx()):
                    continue
                l = b2.GetOtherAtomIdx(k)
                if l == i:  # three-membered ring
                    continue
                p = props.GetMMFFTorsionParams(mol, i, j, k, l)
                if p is not None:
                    torsions.append((i, j, k, l))
                    v.append(p[1:4])

    topo = Chem.GetDistanceMatrix(mol)  # bonds between atoms; 1e8 across fragments
    vdw_pairs, r_star, eps, ele_pairs, qq = [], [], [], [], []
    for i in range(n):
        for j in range(i + 1, n):
            d = topo[i, j]
            if d < 3 or d > n:
                continue
            p = props.GetMMFFVdWParams(i, j)
            if p is not None:
                vdw_pairs.append((i, j))
                r_star.append(p[2])
                eps.append(p[3])
            if abs(charges[i]) > 1e-10 and abs(charges[j]) > 1e-10:
                scale = 0.75 if d == 3 else 1.0
                ele_pairs.append((i, j))
                qq.append(332.0716 * scale * charges[i] * charges[j] / dielectric_constant)

    return MMFFParameters(
        smiles=smiles,
        elements=tuple(a.GetSymbol() for a in mol.GetAtoms()),
        atom_types=types,
        charges=charges,
        bonds=_i32(bonds, 2),
        kb=_f64(kb),
        r0=_f64(r0),
        angles=_i32(angles, 3),
        ka=_f64(ka),
        theta0=_f64(theta0),
        linear=np.asarray(linear, dtype=bool).reshape(-1),
        stbn=_i32(stbn, 3),
        kba_ijk=_f64(kij),
        kba_kji=_f64(kkj),
        stbn_r0_ij=_f64(sr0ij),
        stbn_r0_kj=_f64(sr0kj),
        stbn_theta0=_f64(st0),
        oops=_i32(oops, 4),
        koop=_f64(koop),
        torsions=_i32(torsions, 4),
        v=_f64(v, (3,)),
        vdw_pairs=_i32(vdw_pairs, 2),
        r_star=_f64(r_star),
        eps=_f64(eps),
        ele_pairs=_i32(ele_pairs, 2),
        qq=_f64(qq),
        distance_dielectric=bool(distance_dielectric),
        variant=variant,
    )
