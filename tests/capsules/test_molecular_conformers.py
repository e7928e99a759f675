"""Many molecules x conformers per compiled call: structures agree with RDKit's MMFF94
optimised geometry, a second call of the same bucket does not compile again, the
single-molecule path is the same, and structures export to ASE."""

from typing import Any

import jax
import numpy as np
import pytest

pytest.importorskip("rdkit")
from rdkit import Chem  # noqa: E402
from rdkit.Chem import rdDistGeom  # noqa: E402
from rdkit.Chem import rdForceFieldHelpers as H  # noqa: E402

from capsules.molecular import (  # noqa: E402
    MolecularDiffusionCapsule,
    Molecule,
    bucket_for,
    merge_buckets,
    mmff_parameters,
)
from capsules.molecular._relax import TRACES  # noqa: E402

# water, methanol, formaldehyde, acetic acid, ethanol: one bucket (ethanol's)
SMILES = ["O", "CO", "C=O", "CC(=O)O", "CCO"]
SAME_BUCKET = ["C", "CCO", "N", "OC=O", "CC"]  # other molecules, the same merged bucket


def _bonds(mol: Molecule, rd) -> np.ndarray:
    x = mol.positions
    return np.array(
        [np.linalg.norm(x[b.GetBeginAtomIdx()] - x[b.GetEndAtomIdx()]) for b in rd.GetBonds()]
    )


def _bond_array(rd, x: np.ndarray) -> np.ndarray:
    """(..., bonds) bond lengths of positions x (..., atoms, 3) of RDKit molecule rd."""
    i = np.array([b.GetBeginAtomIdx() for b in rd.GetBonds()])
    j = np.array([b.GetEndAtomIdx() for b in rd.GetBonds()])
    return np.linalg.norm(x[..., i, :] - x[..., j, :], axis=-1)


def _rdkit_minimum_from(mol: Molecule):
    """RDKit's MMFF94 optimisation started from our structure: (positions, energy)."""
    rd = Chem.AddHs(Chem.MolFromSmiles(mol.smiles))
    conf = Chem.Conformer(rd.GetNumAtoms())
    for i, p in enumerate(mol.positions):
        conf.SetAtomPosition(i, p.tolist())
    rd.AddConformer(conf, assignId=True)
    ff = H.MMFFGetMoleculeForceField(rd, H.MMFFGetMoleculeProperties(rd))
    e_here = ff.CalcEnergy()
    ff.Minimize(maxIts=10000, forceTol=1e-8, energyTol=1e-12)
    return rd, rd.GetConformer().GetPositions(), e_here, ff.CalcEnergy()


def _rdkit_best(smiles: str, num: int = 8):
    """RDKit alone: ETKDG conformers, MMFFOptimizeMoleculeConfs, the lowest energy."""
    rd = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = rdDistGeom.ETKDGv3()
    params.randomSeed = 3
    rdDistGeom.EmbedMultipleConfs(rd, num, params)
    res = H.MMFFOptimizeMoleculeConfs(rd, maxIters=5000)
    best = int(np.argmin([e for _, e in res]))
    x = rd.GetConformer(rd.GetConformers()[best].GetId()).GetPositions()
    return rd, x, res[best][1]


def embed_conformers_for(smiles: str, num: int) -> np.ndarray:
    from capsules.molecular import embed_conformers

    return embed_conformers(Chem.AddHs(Chem.MolFromSmiles(smiles)), num, 7)


def test_many_molecules_match_rdkit_geometry_and_compile_once():
    opt = MolecularDiffusionCapsule(num_chains=2, num_steps=50)
    mols = opt.generate_equilibrium_structures(SMILES, num_conformers=8, key=jax.random.key(1))
    assert [m.smiles for m in mols] == SMILES
    run = opt.last_run
    assert len(run["molecules"]) == len(SMILES) and run["seconds"]["relax"] > 0
    for mol in mols:
        assert mol.positions.shape == (len(mol.elements), 3)  # unpadded
        rd, x_rd, e_here, e_min = _rdkit_minimum_from(mol)
        # our energy is RDKit's energy at our structure, and that structure is a minimum:
        # RDKit's own optimiser started there moves no bond length by more than 1e-4 A
        assert abs(e_here - mol.energy) < 1e-5, mol.smiles
        assert e_min > mol.energy - 1e-5, mol.smiles
        d_rd = np.array(
            [
                np.linalg.norm(x_rd[b.GetBeginAtomIdx()] - x_rd[b.GetEndAtomIdx()])
                for b in rd.GetBonds()
            ]
        )
        np.testing.assert_allclose(_bonds(mol, rd), d_rd, atol=1e-4, err_msg=mol.smiles)
        # and RDKit's best of 8 conformers from its own ETKDG + MMFF: same bond lengths
        # (to the spread between conformers) and energy
        rd2, x2, e2 = _rdkit_best(mol.smiles)
        d2 = np.array(
            [
                np.linalg.norm(x2[b.GetBeginAtomIdx()] - x2[b.GetEndAtomIdx()])
                for b in rd2.GetBonds()
            ]
        )
        np.testing.assert_allclose(_bonds(mol, rd2), d2, atol=2e-3, err_msg=mol.smiles)
        assert mol.energy < e2 + 1e-3, (mol.smiles, mol.energy, e2)
    # a second call with other molecules of the same merged bucket and count: no compile
    params = [mmff_parameters(s) for s in SAME_BUCKET]
    assert merge_buckets([bucket_for(p) for p in params])._asdict() == run["bucket"]
    before = dict(TRACES)
    again = opt.generate_equilibrium_structures(
        SAME_BUCKET, num_conformers=8, key=jax.random.key(2)
    )
    assert dict(TRACES) == before
    assert all(abs(m.energy - _rdkit_minimum_from(m)[3]) < 1e-5 for m in again)


def test_single_molecule_path_no_annealing_and_errors():
    opt = MolecularDiffusionCapsule(num_chains=2, num_steps=50)
    water = opt.generate_equilibrium_structure("H2O")
    assert water.elements == ("O", "H", "H") and abs(water.energy) < 1e-6
    assert set(opt.last_run) >= {"relaxed_energies", "relaxed_grad_norm", "best_index", "bucket"}
    before = dict(TRACES)
    ammonia = opt.generate_equilibrium_structure("NH3")  # same bucket as water
    assert dict(TRACES) == before and ammonia.formula == "H3N"
    assert max(opt.last_run["relaxed_grad_norm"]) < 1e-5
    # no annealing: ETKDG conformers straight into L-BFGS (the same compiled chunk)
    plain = MolecularDiffusionCapsule(num_chains=2, num_steps=0)
    methane = plain.generate_equilibrium_structure("CH4")
    assert dict(TRACES) == before
    assert np.all(np.isnan(plain.last_run["annealed_energies"]))
    d = np.linalg.norm(methane.positions[1:] - methane.positions[0], axis=-1)
    np.testing.assert_allclose(d, d[0], atol=1e-5)  # tetrahedral, four equal C-H bonds
    one_string: Any = "O"  # a string, not a list of them
    with pytest.raises(ValueError, match="list"):
        opt.generate_equilibrium_structures(one_string)
    with pytest.raises(ValueError, match="num_conformers"):
        opt.generate_equilibrium_structures(["O"], num_conformers=0)
    with pytest.raises(ValueError, match="num_steps"):
        MolecularDiffusionCapsule(num_steps=-1)
    with pytest.raises(ValueError, match="ambiguous"):
        opt.generate_equilibrium_structures(["O", "C2H6O"])


def test_structures_export_to_ase():
    ase = pytest.importorskip("ase")
    opt = MolecularDiffusionCapsule(num_chains=2, num_steps=50)
    mol = opt.generate_equilibrium_structure("CH4O")
    atoms = mol.to_ase()
    assert isinstance(atoms, ase.Atoms) and atoms.get_chemical_formula() == "CH4O"
    assert atoms.info["smiles"] == "CO" and atoms.info["energy"] == mol.energy
    np.testing.assert_allclose(atoms.positions, mol.positions)
    assert (
        abs(atoms.get_distance(0, 1) - np.linalg.norm(mol.positions[1] - mol.positions[0])) < 1e-12
    )


@pytest.mark.slow
def test_compacted_passes_reach_the_same_minima(monkeypatch):
    """A large grid runs a first pass, then gathers its still-running conformers into a
    smaller grid (forced here on a small one): every conformer converges, to the minimum
    a single pass reaches."""
    from capsules.molecular import _conformers, embed_conformers

    smiles = ["CCO", "CC(=O)O"]
    params = [mmff_parameters(s) for s in smiles]
    confs = [embed_conformers(Chem.AddHs(Chem.MolFromSmiles(s)), 16, 5) for s in smiles]
    single = _conformers.relax_conformers(params, confs, key=jax.random.key(0))
    monkeypatch.setattr(_conformers, "FULL_OPTIMIZATION_ITEMS", 8)
    monkeypatch.setattr(_conformers, "COMPACT_BELOW", 0.3)
    timings: dict = {}
    passes = _conformers.relax_conformers(params, confs, key=jax.random.key(0), timings=timings)
    shapes = {(p["dtype"], p["molecules"], p["conformers"]) for p in timings["relax_passes"]}
    assert len(shapes) > 2, timings["relax_passes"]  # smaller grids in both dtypes ran
    for a, b in zip(single, passes):
        assert np.all(b.grad_norms < 1e-5)
        same = np.abs(a.energies - b.energies) < 1e-6
        assert same.mean() >= 0.8, (a.energies, b.energies)


def test_grid_energy_and_gradient_are_the_one_molecule_modules():
    """The conformer grid's energy and gradient of every item equal the one-molecule
    `MMFFEnergy` (float64) — the minimiser's energy is the differentiable one's."""
    import jax.numpy as jnp

    from capsules.molecular._energy import MMFFEnergy
    from capsules.molecular._grid import ConformerGrid, GridItem

    params = [mmff_parameters(s) for s in ["CCO", "CC(=O)O"]]
    bucket = merge_buckets([bucket_for(p) for p in params])
    energies = [MMFFEnergy.from_parameters(p, bucket) for p in params]
    grid = ConformerGrid.from_energies(energies, 8)
    with jax.enable_x64(True):
        x = jnp.asarray(np.random.default_rng(0).normal(size=(16, bucket.atoms, 3)) * 1.5)
        e, g = jax.vmap(lambda i, xi: jax.value_and_grad(GridItem(grid, i))(xi))(jnp.arange(16), x)
        for i in (0, 7, 8, 15):
            e1, g1 = jax.value_and_grad(energies[i // 8])(x[i])
            np.testing.assert_allclose(e[i], e1, rtol=1e-12)
            np.testing.assert_allclose(g[i], g1, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_packed_energy_and_gradient_are_the_one_molecule_modules(dtype):
    """The packed layout (molecules' own tables one after the other, conformers on the
    last axis) gives every item the one-molecule `MMFFEnergy` energy and gradient:
    float64 to rounding, float32 to its precision."""
    import equinox as eqx
    import jax.numpy as jnp

    from capsules.molecular._energy import MMFFEnergy, exact_bucket
    from capsules.molecular._packed import pack, to_packed

    smiles = ["O", "CCO", "CC(=O)O", "NC(N)=O", "C=O"]
    params = [mmff_parameters(s) for s in smiles]
    layout = pack(params, [0, 1, 2, 3, 4], 6, 8)  # one empty slot
    n = max(p.num_atoms for p in params)
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        x = rng.normal(size=(6, 8, n, 3)) * 1.2
        z = jnp.asarray(to_packed(layout, x), dtype)
        e, g = eqx.filter_jit(layout.grid.value_and_grad)(z)
        assert e.dtype == jnp.dtype(dtype) and g.shape == (layout.grid.atoms, 3, 8)
        np.testing.assert_array_equal(np.asarray(e)[5], 0.0)  # the empty slot
        for m, p in enumerate(params):
            one = MMFFEnergy.from_parameters(p, exact_bucket(p))
            o, k = layout.offset[m], p.num_atoms
            for c in (0, 3, 7):
                e1, g1 = jax.value_and_grad(one)(jnp.asarray(x[m, c, :k], jnp.float64))
                gi = np.asarray(g)[o : o + k, :, c]
                if dtype == "float64":
                    np.testing.assert_allclose(e[m, c], e1, rtol=1e-12, atol=1e-10)
                    np.testing.assert_allclose(gi, g1, rtol=1e-9, atol=1e-9)
                else:
                    scale = float(np.max(np.abs(g1)))
                    np.testing.assert_allclose(e[m, c], e1, rtol=1e-4, atol=1e-3)
                    np.testing.assert_allclose(gi, g1, atol=1e-4 * scale + 1e-3)


def _run_packed_lbfgs(params, smiles, conformers, budget):
    """(pack, state, iterations run): `conformers` ETKDG conformers of each molecule
    packed into one grid and relaxed by `budget` L-BFGS iterations (memory 8, float64:
    call inside `jax.enable_x64(True)`)."""
    import equinox as eqx
    import jax.numpy as jnp

    from capsules.molecular._packed import pack, packed_lbfgs, packed_start, to_packed

    confs = [embed_conformers_for(s, conformers) for s in smiles]
    full = pack(params, list(range(len(smiles))), len(smiles), conformers)
    n = max(p.num_atoms for p in params)
    x = np.zeros((len(smiles), conformers, n, 3))
    for m, c in enumerate(confs):
        x[m, :, : c.shape[1]] = c
    start = eqx.filter_jit(lambda g, z, b: packed_start(g, z, b, 1e-5, 8))
    c0 = start(full.grid, jnp.asarray(to_packed(full, x)), np.full(x.shape[:2], budget))
    c1, k = eqx.filter_jit(packed_lbfgs)(full.grid, c0, 1e-5, 0.3, 0)
    return full, c1, k


def test_packed_compaction_moves_items_and_their_memory_exactly():
    """Moving running items (and their L-BFGS memory) to a smaller packed grid and back
    is exact, and the moved items continue where they were (same energies)."""
    import equinox as eqx
    import jax.numpy as jnp

    from capsules.molecular import _conformers
    from capsules.molecular._packed import (
        compact,
        normalise,
        restore,
    )

    smiles = ["CCO", "O", "CC(C)=O"]
    params = [mmff_parameters(s) for s in smiles]
    with jax.enable_x64(True):
        full, c1, k = _run_packed_lbfgs(params, smiles, 12, 30)
        master = normalise(c1)
        assert int(k) == 30 and np.all(master["it"][[0, 2]] == 30)  # water converged
        running = np.zeros((3, 12), bool)
        running[0, [1, 4, 5]] = running[2, [0, 2, 3, 4, 5, 6, 7, 8, 9, 11]] = True
        small, src, select, valid = _conformers._sub_layout(params, full, running)
        assert small.grid.molecules * small.grid.conformers < 36
        moved = compact(full, small, master, src, select, valid)
        e_small, _ = eqx.filter_jit(small.grid.value_and_grad)(jnp.asarray(moved["z"]))
        np.testing.assert_allclose(np.asarray(e_small)[valid], moved["e"][valid], rtol=1e-12)
        back = {k: v.copy() for k, v in master.items()}
        for key in back:
            if key != "head":
                back[key][...] = 0
        restore(full, small, back, moved, src, select, valid)
        for key in ("z", "S", "Y", "rho", "e", "alpha", "it"):
            a, b = master[key], back[key]
            if key in (
                "z",
                "S",
                "Y",
            ):  # row arrays: compare the running items' columns per molecule
                for m in range(3):
                    o, na = full.offset[m], full.natoms[m]
                    np.testing.assert_array_equal(
                        b[..., o : o + na, :, running[m]], a[..., o : o + na, :, running[m]]
                    )
            else:
                np.testing.assert_array_equal(b[..., running], a[..., running])


def test_float32_cap_hands_over_to_float64_with_the_same_minima():
    """Conformers that have not reached the float32 tolerance after `float32_max_iter`
    iterations go on in float64 (with their memory): every conformer still converges to
    the float64 tolerance, to the minimum the unbounded float32 stage reaches; a cap of 0
    is float64 throughout. A bad cap names the argument."""
    from capsules.molecular import _conformers, embed_conformers
    from idf_jax._checks import ArgumentError

    smiles = ["CCO", "NCC(=O)O"]
    params = [mmff_parameters(s) for s in smiles]
    rds = {s: Chem.AddHs(Chem.MolFromSmiles(s)) for s in smiles}
    confs = [embed_conformers(rds[s], 8, 13) for s in smiles]
    runs = {}
    for cap in (2000, 10, 0):
        timings: dict = {}
        sets = _conformers.relax_conformers(
            params, confs, key=jax.random.key(0), float32_max_iter=cap, timings=timings
        )
        runs[cap] = (sets, timings)
    assert runs[2000][1]["relax_float32_capped"] == 0
    assert runs[10][1]["relax_float32_iterations_max"] <= 10
    assert runs[10][1]["relax_float32_capped"] > 0  # the hand-over happened
    assert runs[0][1]["relax_float32_iterations_max"] == 0
    assert {p["dtype"] for p in runs[0][1]["relax_passes"]} == {"float64"}
    for cap in (10, 0):
        for smi, a, b in zip(smiles, runs[2000][0], runs[cap][0]):
            assert np.all(b.grad_norms < 1e-5), (cap, b.grad_norms)
            same = np.abs(a.energies - b.energies) < 1e-6
            assert same.mean() >= 0.75, (cap, a.energies, b.energies)
            assert abs(a.energies.min() - b.energies.min()) < 1e-6, cap
            # the same minimum up to a rigid motion: bond lengths (sorted: a methyl
            # may end turned by 120 degrees) agree
            np.testing.assert_allclose(
                np.sort(_bond_array(rds[smi], b.positions[same]), axis=-1),
                np.sort(_bond_array(rds[smi], a.positions[same]), axis=-1),
                atol=1e-4,
                err_msg=f"{cap} {smi}",
            )
    with pytest.raises(ArgumentError, match="float32_max_iter") as err:
        _conformers.relax_conformers(params, confs, key=jax.random.key(0), float32_max_iter=-1)
    assert err.value.argument == "float32_max_iter"
    with pytest.raises(ArgumentError, match="float32_gtol"):
        _conformers.relax_conformers(params, confs, key=jax.random.key(0), float32_gtol=0.0)


def test_lbfgs_memory_is_a_shape_and_reaches_the_same_minima():
    """`memory` (L-BFGS pairs kept per conformer) changes the path, not the minima: every
    conformer converges to the tolerance, the best energy per molecule is the same, and
    bond lengths agree where the energies do. A bad memory names the argument."""
    from capsules.molecular import _conformers, embed_conformers
    from idf_jax._checks import ArgumentError

    smiles = ["CCO", "NCC(=O)O"]
    params = [mmff_parameters(s) for s in smiles]
    rds = {s: Chem.AddHs(Chem.MolFromSmiles(s)) for s in smiles}
    confs = [embed_conformers(rds[s], 8, 17) for s in smiles]
    runs = {
        m: _conformers.relax_conformers(params, confs, key=jax.random.key(0), memory=m)
        for m in (8, 16)
    }
    for smi, a, b in zip(smiles, runs[8], runs[16]):
        assert np.all(a.grad_norms < 1e-5) and np.all(b.grad_norms < 1e-5)
        assert abs(a.energies.min() - b.energies.min()) < 1e-6, smi
        same = np.abs(a.energies - b.energies) < 1e-6
        assert same.mean() >= 0.75, (a.energies, b.energies)
        np.testing.assert_allclose(
            np.sort(_bond_array(rds[smi], b.positions[same]), axis=-1),
            np.sort(_bond_array(rds[smi], a.positions[same]), axis=-1),
            atol=1e-4,
            err_msg=smi,
        )
    for bad in (0, 2.5, True):
        with pytest.raises(ArgumentError, match="memory") as err:
            _conformers.relax_conformers(params, confs, key=jax.random.key(0), memory=bad)
        assert err.value.argument == "memory"


def _rdkit_relaxed_from(smiles: str, x: np.ndarray):
    """RDKit's MMFF94 optimisation of molecule `smiles` started at x: (energy there,
    energy after, positions after)."""
    rd = Chem.AddHs(Chem.MolFromSmiles(smiles))
    conf = Chem.Conformer(rd.GetNumAtoms())
    for i, p in enumerate(x):
        conf.SetAtomPosition(i, p.tolist())
    rd.AddConformer(conf, assignId=True)
    ff = H.MMFFGetMoleculeForceField(rd, H.MMFFGetMoleculeProperties(rd))
    e_here = ff.CalcEnergy()
    ff.Minimize(maxIts=10000, forceTol=1e-8, energyTol=1e-12)
    return e_here, ff.CalcEnergy(), rd.GetConformer().GetPositions()


def test_dense_bfgs_reaches_the_lbfgs_and_rdkit_minima_and_compiles_once():
    """`method="bfgs"` (a dense inverse Hessian per conformer) and "lbfgs_bfgs" (L-BFGS
    in float32, the dense BFGS in float64) change the path, not the minima: every conformer converges to the float64 tolerance, the best energy per
    molecule is L-BFGS's, bond lengths agree where the energies do, and RDKit's own
    optimiser started at the best structure stays there. A second set of molecules of
    the same bucket and grid sizes compiles nothing; a bad method names the argument."""
    from capsules.molecular import _conformers
    from idf_jax._checks import ArgumentError

    params = [mmff_parameters(s) for s in SMILES]
    rds = {s: Chem.AddHs(Chem.MolFromSmiles(s)) for s in SMILES + SAME_BUCKET}
    confs = [embed_conformers_for(s, 8) for s in SMILES]
    runs = {
        m: _conformers.relax_conformers(params, confs, key=jax.random.key(0), method=m)
        for m in ("lbfgs", "bfgs", "lbfgs_bfgs")
    }
    for smi, a, b in [
        (smi, a, b)
        for m in ("bfgs", "lbfgs_bfgs")
        for smi, a, b in zip(SMILES, runs["lbfgs"], runs[m])
    ]:
        assert b.positions.dtype == np.float64 and b.energies.dtype == np.float64
        assert np.all(a.grad_norms < 1e-5) and np.all(b.grad_norms < 1e-5), smi
        assert abs(a.energies.min() - b.energies.min()) < 1e-6, smi
        same = np.abs(a.energies - b.energies) < 1e-6
        assert same.mean() >= 0.75, (smi, a.energies, b.energies)
        np.testing.assert_allclose(
            np.sort(_bond_array(rds[smi], b.positions[same]), axis=-1),
            np.sort(_bond_array(rds[smi], a.positions[same]), axis=-1),
            atol=1e-4,
            err_msg=smi,
        )
        best = b.positions[int(np.argmin(b.energies))]
        e_here, e_rd, x_rd = _rdkit_relaxed_from(smi, best)
        assert abs(e_here - b.energies.min()) < 1e-5 and e_rd > e_here - 1e-5, smi
        np.testing.assert_allclose(
            _bond_array(rds[smi], best), _bond_array(rds[smi], x_rd), atol=1e-4, err_msg=smi
        )
    # other molecules, the same merged bucket, packed sizes and slot size: no compile
    other = [mmff_parameters(s) for s in SAME_BUCKET]
    before = dict(TRACES)
    again = _conformers.relax_conformers(
        other,
        [embed_conformers_for(s, 8) for s in SAME_BUCKET],
        key=jax.random.key(1),
        method="bfgs",
    )
    assert dict(TRACES) == before
    assert before["bfgs_run"] >= 1 and before["bfgs_start"] >= 1
    for smi, s in zip(SAME_BUCKET, again):
        assert np.all(s.grad_norms < 1e-5), smi
        e_here, e_rd, _ = _rdkit_relaxed_from(smi, s.positions[int(np.argmin(s.energies))])
        assert abs(e_here - s.energies.min()) < 1e-5 and e_rd > e_here - 1e-5, smi
    with pytest.raises(ArgumentError, match="method") as err:
        _conformers.relax_conformers(params, confs, key=jax.random.key(0), method="newton")
    assert err.value.argument == "method"


def test_dense_bfgs_state_is_masked_symmetric_and_compacts_exactly():
    """The dense BFGS inverse Hessians stay symmetric and zero on padded coordinates
    (padded atoms never move), and moving running items with their matrices to a
    smaller packed grid and back is exact."""
    import equinox as eqx
    import jax.numpy as jnp

    from capsules.molecular import _conformers
    from capsules.molecular._dense_bfgs import bfgs_start, packed_bfgs, slot_map
    from capsules.molecular._packed import compact, normalise, pack, restore, to_packed

    smiles = ["CCO", "O", "CC(C)=O"]
    params = [mmff_parameters(s) for s in smiles]
    confs = [embed_conformers_for(s, 12) for s in smiles]
    full = pack(params, [0, 1, 2], 3, 12)
    n = max(p.num_atoms for p in params)
    x = np.zeros((3, 12, n, 3))
    for m, c in enumerate(confs):
        x[m, :, : c.shape[1]] = c
    with jax.enable_x64(True):
        smap = slot_map(full)
        start = eqx.filter_jit(lambda g, s, z, b: bfgs_start(g, s, z, b, 1e-5))
        c0 = start(full.grid, smap, jnp.asarray(to_packed(full, x)), np.full((3, 12), 12))
        c1, k = eqx.filter_jit(packed_bfgs)(full.grid, smap, c0, 1e-5, 0.3, 0)
        master = normalise(c1)
        assert int(k) == 12 and "head" not in master
        h = master["H"]
        assert h.shape == (3, 12, 3 * smap.slot_atoms, 3 * smap.slot_atoms)
        np.testing.assert_allclose(h, np.swapaxes(h, -1, -2), rtol=1e-10, atol=1e-12)
        for m, p in enumerate(params):
            k3 = 3 * p.num_atoms
            assert np.all(h[m, :, k3:, :] == 0) and np.all(h[m, :, :, k3:] == 0)
            # positive definite on the molecule's own coordinates
            assert np.all(np.linalg.eigvalsh(h[m, :, :k3, :k3]) > 0)
        running = np.zeros((3, 12), bool)
        running[0, [1, 4, 5]] = running[2, [0, 2, 3, 4, 5, 6, 7, 8, 9, 11]] = True
        small, src, select, valid = _conformers._sub_layout(params, full, running)
        moved = compact(full, small, master, src, select, valid)
        assert moved["H"].shape[-1] == 3 * slot_map(small).slot_atoms
        back = {key: np.zeros_like(v) for key, v in master.items()}
        restore(full, small, back, moved, src, select, valid)
        for m, p in enumerate(params):
            r = running[m]
            np.testing.assert_array_equal(back["H"][m, r], master["H"][m, r])
            np.testing.assert_array_equal(back["fresh"][m, r], master["fresh"][m, r])
        # the moved items continue in the small grid (a larger budget) to the tolerance
        moved["budget"] = np.where(valid, 400, 0).astype(np.int32)
        c2, k2 = eqx.filter_jit(packed_bfgs)(
            small.grid, slot_map(small), jax.device_put(moved), 1e-5, 0.3, 0
        )
        c2 = normalise(c2)
        assert int(k2) >= 1 and np.all(c2["done"][valid])
        g2 = np.asarray(small.grid.dot(jnp.asarray(c2["g"]), jnp.asarray(c2["g"])))
        assert np.all(np.sqrt(g2[valid]) < 1e-5)
        assert np.all(c2["e"][valid] <= moved["e"][valid] + 1e-9)


def test_dense_matrix_from_the_lbfgs_memory_gives_the_lbfgs_direction():
    """The dense BFGS state built from an L-BFGS state (the float32 -> float64 hand-over
    of method "lbfgs_bfgs") holds the matrix the two-loop recursion applies: the same
    direction -H g at the same point (float64, to rounding)."""
    import equinox as eqx
    import jax.numpy as jnp

    from capsules.molecular._dense_bfgs import bfgs_from_lbfgs, slot_map
    from capsules.molecular._packed import (
        _direction,
        normalise,
    )

    smiles = ["CCO", "O", "NCC(=O)O"]
    params = [mmff_parameters(s) for s in smiles]
    with jax.enable_x64(True):
        full, c1, _ = _run_packed_lbfgs(params, smiles, 8, 12)
        lb = normalise(c1)  # 12 iterations: a full ring buffer of 8 pairs, rolled
        st = eqx.filter_jit(bfgs_from_lbfgs)(full.grid, slot_map(full), jax.device_put(lb), 1e-5)
        d_lb, _, _ = eqx.filter_jit(_direction)(
            full.grid,
            jnp.asarray(lb["g"]),
            jnp.asarray(lb["S"]),
            jnp.asarray(lb["Y"]),
            jnp.asarray(lb["rho"]),
            jnp.asarray(lb["gamma"]),
            jnp.int32(0),
        )
        run = ~lb["done"]
        assert run.sum() >= 8 and not np.any(np.asarray(st["fresh"])[run])
        for m in (0, 2):  # water has converged
            o, k = full.offset[m], full.natoms[m]
            a = np.asarray(st["d"])[o : o + k][..., run[m]]
            b = np.asarray(d_lb)[o : o + k][..., run[m]]
            np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9 * np.abs(b).max())
