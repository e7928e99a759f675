"""MMFF94 in JAX vs RDKit: energies and gradients over 30+ molecules, minimisation,
formula / SMILES handling, the capsule and MolecularDiffusionCapsule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("rdkit")
from rdkit import Chem  # noqa: E402
from rdkit.Chem import AllChem  # noqa: E402
from rdkit.Chem import rdForceFieldHelpers as H  # noqa: E402

import capsules  # noqa: E402
from capsules.molecular import (  # noqa: E402
    MolecularDiffusionCapsule,
    Molecule,
    batch_parameters,
    formula_to_smiles,
    from_formula,
    from_smiles,
    mmff_energy_batch,
    mmff_parameters,
    pad_positions,
    relax,
)

# diverse: small inorganics, linear centres, aromatics and heteroaromatics, 3/4/6-rings,
# ions and zwitterion-like groups (1-4 scaled Coulomb), S, P, halogens, drug-like
PARITY_SMILES = [
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


def _embedded(smiles, seed=7, jitter=0.0, rng=None):
    m = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(m, randomSeed=seed) == 0
    x = m.GetConformer().GetPositions()
    if jitter:
        x = x + rng.normal(0.0, jitter, x.shape)
    return m, x


def _rdkit_ff(m, dielectric=1.0, distance=False):
    props = H.MMFFGetMoleculeProperties(m)
    props.SetMMFFDielectricConstant(dielectric)
    props.SetMMFFDielectricModel(2 if distance else 1)
    return H.MMFFGetMoleculeForceField(m, props)


def test_energy_and_gradient_equal_rdkit_over_35_molecules():
    rng = np.random.default_rng(0)
    mols, xs = zip(*[_embedded(s, jitter=0.05, rng=rng) for s in PARITY_SMILES])
    with jax.enable_x64(True):
        batch = batch_parameters([mmff_parameters(m) for m in mols])
        X = pad_positions(batch, xs)
        e, g = jax.jit(
            jax.vmap(
                jax.value_and_grad(
                    lambda a, x: mmff_energy_batch(
                        batch._replace(arrays=jax.tree.map(lambda v: v[None], a)), x[None]
                    )[0],
                    argnums=1,
                )
            )
        )(batch.arrays, X)
        e, g = np.asarray(e), np.asarray(g)  # leave no float64 jax arrays outside x64
    assert len(PARITY_SMILES) >= 20
    for s, m, x, ei, gi, n in zip(PARITY_SMILES, mols, xs, e, g, batch.num_atoms):
        ff = _rdkit_ff(m)
        e_rd = ff.CalcEnergy(x.ravel().tolist())
        g_rd = np.asarray(ff.CalcGrad(x.ravel().tolist()))
        assert abs(float(ei) - e_rd) < 1e-3, (s, float(ei), e_rd)
        np.testing.assert_allclose(gi[:n].ravel(), g_rd, atol=1e-6, err_msg=s)
        assert np.max(np.abs(gi[n:])) == 0.0  # padding contributes nothing


def test_distance_dependent_dielectric_equals_rdkit():
    smiles = ["CC(=O)[O-]", "NCC(=O)O", "CC(N)=O"]
    rng = np.random.default_rng(1)
    mols, xs = zip(*[_embedded(s, jitter=0.05, rng=rng) for s in smiles])
    with jax.enable_x64(True):
        ps = [mmff_parameters(m, dielectric_constant=4.0, distance_dielectric=True) for m in mols]
        batch = batch_parameters(ps)
        e = np.asarray(jax.jit(lambda X: mmff_energy_batch(batch, X))(pad_positions(batch, xs)))
    for s, m, x, ei in zip(smiles, mols, xs, e):
        e_rd = _rdkit_ff(m, 4.0, True).CalcEnergy(x.ravel().tolist())
        assert abs(float(ei) - e_rd) < 1e-3, (s, float(ei), e_rd)


@pytest.mark.slow  # ~10 s unloaded (L-BFGS compile); the study runs it over more molecules
def test_minimised_conformers_reach_rdkit_optimised_energies():
    smiles = ["CCO", "CC(N)=O", "c1ccccc1O", "CC(=O)NC"]
    mols, xs = zip(*[_embedded(s, seed=11) for s in smiles])
    e_rd = []
    for m in mols:
        mm = Chem.Mol(m)
        H.MMFFOptimizeMolecule(mm, maxIters=20000)
        e_rd.append(_rdkit_ff(mm).CalcEnergy())
    with jax.enable_x64(True):
        batch = batch_parameters([mmff_parameters(m) for m in mols])
        X = pad_positions(batch, xs)
        res = relax(
            lambda X: jnp.sum(mmff_energy_batch(batch, X)), X[None], max_steps=3000, gtol=1e-6
        )
        e = np.asarray(mmff_energy_batch(batch, res.position[0]))
        pos = np.asarray(res.position[0])
    for s, ei, er, m, n, xi in zip(smiles, e, e_rd, mols, batch.num_atoms, pos):
        # same basin from the same start: reach RDKit's optimised energy (not above it)
        assert float(ei) <= er + 1e-4, (s, float(ei), er)
        assert float(ei) >= er - 0.05, (s, float(ei), er)
        # and RDKit agrees with our energy at our minimum
        assert abs(_rdkit_ff(m).CalcEnergy(xi[:n].ravel().tolist()) - float(ei)) < 1e-6


def test_capsule_init_decode_xyz_ase(tmp_path):
    cap = capsules.make("molecular.from_smiles", smiles="CCO")
    x = cap.init(jax.random.key(0), 5)
    assert x.shape == (5, 9, 3) and x.dtype == jnp.float32  # default float dtype
    e32 = jax.jit(jax.vmap(cap.energy_fn))(x)
    mol = cap.decode(x[0])
    assert isinstance(mol, Molecule) and mol.formula == "C2H6O" and mol.num_atoms == 9
    assert abs(mol.energy - float(e32[0])) < 1e-3 * (1 + abs(mol.energy))
    ff = _rdkit_ff(_embedded("CCO")[0])  # same atom order as the capsule
    assert abs(ff.CalcEnergy(mol.positions.ravel().tolist()) - mol.energy) < 1e-6
    path = tmp_path / "ethanol.xyz"
    mol.write_xyz(path)
    lines = path.read_text().splitlines()
    assert lines[0] == "9" and len(lines) == 11 and lines[2].split()[0] == "C"
    ase = pytest.importorskip("ase")
    atoms = mol.to_ase()
    assert isinstance(atoms, ase.Atoms) and atoms.get_chemical_formula() == "C2H6O"
    np.testing.assert_allclose(atoms.positions, mol.positions)


def test_formulas_and_errors():
    assert formula_to_smiles("H2O") == "O" and formula_to_smiles("OH2") == "O"
    assert formula_to_smiles("C6H6") == "c1ccccc1" and formula_to_smiles("NH3") == "N"
    assert from_formula("CO2").params["smiles"] == "O=C=O"
    with pytest.raises(ValueError, match="ambiguous.*SMILES"):
        from_formula("C2H6O")
    with pytest.raises(ValueError, match="SMILES"):
        from_formula("C17H23NO3")
    with pytest.raises(ValueError, match="not a molecular formula"):
        formula_to_smiles("c1ccccc1")
    for bad in ["", "C1CC", "not a molecule", "C(C)(C)(C)(C)C"]:
        with pytest.raises(ValueError):
            from_smiles(bad)
    cap = from_smiles("O")
    with pytest.raises(ValueError, match="shaped"):
        cap.energy_fn(jnp.zeros((4, 3)))
    with pytest.raises(ValueError):
        MolecularDiffusionCapsule().generate_equilibrium_structure("C2H6O")
    with pytest.raises(ValueError):
        MolecularDiffusionCapsule(num_chains=0)


def test_generate_equilibrium_structure_water():
    opt = MolecularDiffusionCapsule(num_chains=2, num_steps=50)
    mol = opt.generate_equilibrium_structure("H2O", temperature=300)
    assert mol.elements == ("O", "H", "H") and mol.smiles == "O"
    # MMFF94 water minimum: bonds at r0 = 0.969 A, angle 103.978 deg, E = 0
    assert abs(mol.energy) < 1e-6
    d = np.linalg.norm(mol.positions[1:] - mol.positions[0], axis=-1)
    np.testing.assert_allclose(d, 0.969, atol=1e-4)
    a, b = mol.positions[1:] - mol.positions[0]
    ang = np.degrees(np.arccos(a @ b / np.linalg.norm(a) / np.linalg.norm(b)))
    assert abs(ang - 103.978) < 1e-2
