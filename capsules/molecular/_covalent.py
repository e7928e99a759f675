"""Covalent molecules under MMFF94: `from_smiles`, `from_formula` capsules and the
blueprint's `MolecularDiffusionCapsule`."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._base import Capsule, register
from ._energy import MMFFEnergy, dummy_positions
from ._mmff import MMFFParameters, _rdkit, mmff_parameters, parse_smiles
from ._molecule import Molecule

__all__ = [
    "from_smiles",
    "from_formula",
    "formula_to_smiles",
    "embed_conformers",
    "FORMULA_SMILES",
    "AMBIGUOUS_FORMULAS",
]

# Formulas (Hill order) whose usual reading is one compound. Isomers that are exotic
# (HNC for HCN, dioxirane for formic acid, Dewar benzene for benzene) are ignored.
FORMULA_SMILES = {
    "H2O": "O",
    "H2O2": "OO",
    "H3N": "N",
    "H4N2": "NN",
    "H2S": "S",
    "HF": "F",
    "HCl": "Cl",
    "HBr": "Br",
    "CH4": "C",
    "CH4O": "CO",
    "CH4S": "CS",
    "CH5N": "CN",
    "CH2O": "C=O",
    "CH2O2": "OC=O",
    "CO2": "O=C=O",
    "CHN": "C#N",
    "CH3F": "CF",
    "CH3Cl": "CCl",
    "CH2Cl2": "ClCCl",
    "CHCl3": "ClC(Cl)Cl",
    "CCl4": "ClC(Cl)(Cl)Cl",
    "CHF3": "FC(F)F",
    "CF4": "FC(F)(F)F",
    "CH4N2O": "NC(N)=O",
    "C2H2": "C#C",
    "C2H4": "C=C",
    "C2H6": "CC",
    "C2H3N": "CC#N",
    "C2H4O2": "CC(=O)O",
    "C3H8": "CCC",
    "C3H4": "CC#C",
    "C6H6": "c1ccccc1",
    "C6H6O": "Oc1ccccc1",
    "C6H7N": "Nc1ccccc1",
    "C5H5N": "c1ccncc1",
    "C8H10N4O2": "Cn1cnc2c1c(=O)n(C)c(=O)n2C",
    "C9H8O4": "CC(=O)Oc1ccccc1C(=O)O",
}
"""Unambiguous (in common usage) formula -> SMILES."""

AMBIGUOUS_FORMULAS = {
    "C2H6O": ("CCO (ethanol)", "COC (dimethyl ether)"),
    "C3H6O": ("CC(C)=O (acetone)", "CCC=O (propanal)", "C=CCO (allyl alcohol)"),
    "C3H8O": ("CCCO (1-propanol)", "CC(C)O (2-propanol)", "CCOC (methyl ethyl ether)"),
    "C4H10": ("CCCC (butane)", "CC(C)C (isobutane)"),
    "C3H6": ("C=CC (propene)", "C1CC1 (cyclopropane)"),
    "C2H4O": ("CC=O (acetaldehyde)", "C1CO1 (ethylene oxide)"),
    "C7H8": ("Cc1ccccc1 (toluene)", "C1=CC=CCC=C1 (cycloheptatriene)"),
    "C2H7N": ("CCN (ethylamine)", "CNC (dimethylamine)"),
}
"""Formulas with several common isomers -> examples (the error lists them)."""

_TOKEN = re.compile(r"([A-Z][a-z]?)(\d*)")


def _parse_formula(formula: str) -> dict[str, int] | None:
    """Element counts of a plain formula like 'C2H6O' (None when it is not one)."""
    f = formula.strip()
    if not f or "".join(m.group(0) for m in _TOKEN.finditer(f)) != f:
        return None
    counts: dict[str, int] = {}
    for sym, num in _TOKEN.findall(f):
        counts[sym] = counts.get(sym, 0) + (int(num) if num else 1)
    return counts


def _hill(counts: dict[str, int]) -> str:
    order = sorted(counts)
    if "C" in counts:
        order = ["C"] + (["H"] if "H" in counts else []) + [e for e in order if e not in ("C", "H")]
    return "".join(f"{e}{counts[e] if counts[e] > 1 else ''}" for e in order)


def formula_to_smiles(formula: str) -> str:
    """SMILES for an unambiguous molecular formula (any element order, e.g. 'OH2').

    Raises ValueError (asking for a SMILES) when the formula has several common isomers
    or is not in `FORMULA_SMILES`.
    """
    if not isinstance(formula, str):
        raise ValueError(f"formula must be a string, got {type(formula).__name__}")
    counts = _parse_formula(formula)
    if counts is None:
        raise ValueError(f"{formula!r} is not a molecular formula (like 'H2O' or 'C6H6')")
    hill = _hill(counts)
    if hill in AMBIGUOUS_FORMULAS:
        raise ValueError(
            f"formula {formula!r} ({hill}) is ambiguous: it has several isomers, e.g. "
            + ", ".join(AMBIGUOUS_FORMULAS[hill])
            + "; pass a SMILES string instead"
        )
    if hill not in FORMULA_SMILES:
        raise ValueError(
            f"formula {formula!r} ({hill}) is not in the table of unambiguous formulas; "
            "pass a SMILES string instead (e.g. 'CCO' for ethanol)"
        )
    return FORMULA_SMILES[hill]


def _seed(key) -> int:
    return int(jax.random.randint(key, (), 0, 2**31 - 1))


def embed_conformers(mol, num: int, seed: int) -> np.ndarray:
    """(num, n, 3) float64 ETKDGv3 conformers in angstrom (random-coordinate embedding
    as fallback); fewer distinct embeddings than `num` are cycled."""
    from rdkit.Chem import rdDistGeom

    params = rdDistGeom.ETKDGv3()
    params.randomSeed = int(seed)
    ids = list(rdDistGeom.EmbedMultipleConfs(mol, numConfs=int(num), params=params))
    if not ids:
        params.useRandomCoords = True
        ids = list(rdDistGeom.EmbedMultipleConfs(mol, numConfs=int(num), params=params))
    if not ids:
        raise ValueError("RDKit could not embed 3-D coordinates for this molecule")
    confs = np.stack([mol.GetConformer(i).GetPositions() for i in ids])
    mol.RemoveAllConformers()
    return confs[np.arange(num) % len(confs)]


@jax.jit
def _energy_at(energy: MMFFEnergy, x: Float[Array, "atoms 3"]) -> Float[Array, ""]:
    """One compiled energy per bucket (the module is an argument, not a constant)."""
    return energy(x)


def _capsule(p: MMFFParameters, mol, name: str, max_embed: int) -> Capsule:
    energy_fn = MMFFEnergy.from_parameters(p)

    def init(key: PRNGKeyArray, num_chains: int) -> Float[Array, "chains n 3"]:
        num_chains = int(num_chains)
        if num_chains < 1:
            raise ValueError(f"num_chains must be >= 1, got {num_chains}")
        k_seed, k_noise = jax.random.split(key)
        distinct = min(num_chains, max_embed)
        confs = embed_conformers(mol, distinct, _seed(k_seed))
        reps = confs[np.arange(num_chains) % distinct]
        x = jnp.asarray(reps, dtype=jnp.result_type(float))
        # replicas of one embedding get a 0.01 A jitter so that no two chains coincide
        again = jnp.asarray(np.arange(num_chains) >= distinct)[:, None, None]
        noise = 0.01 * jax.random.normal(k_noise, x.shape, x.dtype)
        return x + jnp.where(again, noise, 0.0)

    def decode(x) -> Molecule:
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (p.num_atoms, 3):
            raise ValueError(f"positions must be shaped ({p.num_atoms}, 3), got {x.shape}")
        padded = np.concatenate([x, dummy_positions(energy_fn.capacity - p.num_atoms)])
        with jax.enable_x64(True):
            e = float(_energy_at(energy_fn, jnp.asarray(padded, dtype=jnp.float64)))
        return Molecule(p.elements, x, e, smiles=p.smiles, comment=f"MMFF94 kcal/mol {name}")

    return Capsule(
        name=name,
        energy_fn=energy_fn,
        init=init,
        decode=decode,
        params={
            "smiles": p.smiles,
            "num_atoms": p.num_atoms,
            "variant": p.variant,
            "distance_dielectric": p.distance_dielectric,
        },
        description=f"{p.smiles} under {p.variant} (kcal/mol, angstrom)",
    )


@register("molecular.from_smiles", "Covalent molecule from SMILES under MMFF94 (RDKit parameters)")
def from_smiles(
    smiles: str,
    *,
    variant: str = "MMFF94",
    dielectric_constant: float = 1.0,
    distance_dielectric: bool = False,
    max_embed: int = 32,
) -> Capsule:
    """MMFF94 molecule: x shaped (n_atoms, 3) in angstrom (hydrogens explicit, in RDKit's
    atom order), energy_fn(x) in kcal/mol, equal to RDKit's MMFF94 energy. energy_fn is
    an `MMFFEnergy` module padded to the molecule's size bucket: it takes x unpadded
    or padded to `energy_fn.capacity` atoms, and `jax.jit(f)(energy_fn, x)` compiles
    once for every molecule of that bucket.

    init(key, chains): ETKDGv3 conformers (at most `max_embed` distinct, replicas
    jittered by 0.01 A) in the default float dtype; use `jax.enable_x64(True)` for
    float64. decode(x): a `Molecule`. Raises ValueError for an invalid SMILES or atoms
    MMFF94 cannot type.
    """
    mol = parse_smiles(smiles)
    p = mmff_parameters(
        mol,
        variant=variant,
        dielectric_constant=dielectric_constant,
        distance_dielectric=distance_dielectric,
    )
    p = type(p)(**{**p.__dict__, "smiles": smiles.strip()})
    return _capsule(p, mol, "molecular.from_smiles", int(max_embed))


@register("molecular.from_formula", "Covalent molecule from an unambiguous formula, MMFF94")
def from_formula(formula: str, **kwargs) -> Capsule:
    """`from_smiles(formula_to_smiles(formula))`: a ValueError asks for a SMILES when the
    formula is ambiguous (several isomers) or unknown."""
    cap = from_smiles(formula_to_smiles(formula), **kwargs)
    return Capsule(**{**cap.__dict__, "name": "molecular.from_formula"})


def resolve(formula_or_smiles: str) -> str:
    """SMILES for a formula in `FORMULA_SMILES` or a SMILES RDKit parses; ValueError
    otherwise (an ambiguous formula names its isomers)."""
    if not isinstance(formula_or_smiles, str) or not formula_or_smiles.strip():
        raise ValueError(f"need a formula or SMILES string, got {formula_or_smiles!r}")
    s = formula_or_smiles.strip()
    counts = _parse_formula(s)
    if counts is not None and _hill(counts) in FORMULA_SMILES:
        return FORMULA_SMILES[_hill(counts)]
    Chem, _ = _rdkit()
    if Chem.MolFromSmiles(s) is not None:
        return s
    if counts is not None:
        return formula_to_smiles(s)  # raises the ambiguous / unknown formula error
    raise ValueError(f"{s!r} is neither a known formula nor a valid SMILES")
