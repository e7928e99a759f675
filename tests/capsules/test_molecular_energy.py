"""The MMFF94 energy as an equinox Module: padded tables equal the unpadded energy, padded
rows and atoms contribute exactly zero, float32 / float64, jit / vmap / grad, and one
compilation for two molecules of different sizes in one bucket."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("rdkit")
from rdkit import Chem  # noqa: E402
from rdkit.Chem import rdDistGeom  # noqa: E402
from rdkit.Chem import rdForceFieldHelpers as H  # noqa: E402

from capsules.molecular import (  # noqa: E402
    Bucket,
    MMFFEnergy,
    bucket_for,
    exact_bucket,
    from_smiles,
    merge_buckets,
    mmff_parameters,
    stack_energies,
)
from capsules.molecular._energy import dummy_positions  # noqa: E402

VG = jax.jit(lambda e, x: jax.value_and_grad(e)(x))  # one compilation per bucket and dtype
BIG = Bucket(atoms=64, bond=64, angle=128, oop=64, torsion=128, pair=512)


def _embedded(smiles, seed=7):
    m = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert rdDistGeom.EmbedMolecule(m, randomSeed=seed) == 0
    return m, m.GetConformer().GetPositions()


def _pad(e: MMFFEnergy, x):
    return np.concatenate([x, dummy_positions(e.capacity - len(x))])


def test_padded_module_equals_unpadded_energy_terms_and_gradient_float64():
    terms = jax.jit(lambda e, x: e.terms(x))
    terms_and_grad = jax.jit(lambda e, x: (e.terms(x), jax.grad(e)(x)))
    with jax.enable_x64(True):
        for s in ["CC(=O)[O-]", "c1ccccc1O"]:  # Coulomb pairs, out-of-plane, torsions
            m, x = _embedded(s)
            p = mmff_parameters(m)
            ref = {
                k: float(v)
                for k, v in terms(MMFFEnergy.from_parameters(p, exact_bucket(p)), x).items()
            }
            ff = H.MMFFGetMoleculeForceField(m, H.MMFFGetMoleculeProperties(m))
            assert abs(sum(ref.values()) - ff.CalcEnergy(x.ravel().tolist())) < 1e-3, s
            g_rd = np.asarray(ff.CalcGrad(x.ravel().tolist())).reshape(-1, 3)
            for e in (MMFFEnergy.from_parameters(p), MMFFEnergy.from_parameters(p, BIG)):
                assert e.num_atoms() == p.num_atoms and e.capacity >= p.num_atoms
                tol = 1e-11 * (1.0 + sum(abs(v) for v in ref.values()))
                t, g = terms_and_grad(e, _pad(e, x))
                for k, v in t.items():
                    assert abs(float(v) - ref[k]) < tol, (s, k)
                g = np.asarray(g)
                np.testing.assert_allclose(g[: p.num_atoms], g_rd, atol=1e-6, err_msg=s)
                assert np.all(g[p.num_atoms :] == 0.0)  # padded atoms: exactly no force
            # unpadded x is padded inside the call: the same value
            e = MMFFEnergy.from_parameters(p)
            assert abs(float(e(x)) - float(e(_pad(e, x)))) < 1e-11 * (1.0 + abs(float(e(x))))


def test_padded_rows_contribute_exactly_zero_whatever_they_hold():
    with jax.enable_x64(True):
        m, x = _embedded("CC(=O)O")
        p = mmff_parameters(m)
        e = MMFFEnergy.from_parameters(p, BIG)
        xp = jnp.asarray(_pad(e, x))
        rng = np.random.default_rng(0)
        garbage = e
        for name, t in e.tables.items():
            pad = ~np.asarray(t.mask)
            index = np.asarray(t.index)
            idx = np.where(pad[:, None], rng.integers(0, p.num_atoms, index.shape), index)
            garbage = eqx.tree_at(lambda z: z.tables[name].index, garbage, idx.astype(np.int32))
            for k, v in t.params.items():
                v = np.asarray(v)
                if v.dtype == bool:
                    continue
                noisy = np.where(pad.reshape((-1,) + (1,) * (v.ndim - 1)), 1e6, v)
                garbage = eqx.tree_at(lambda z: z.tables[name].params[k], garbage, noisy)
        (v0, g0), (v1, g1) = VG(e, xp), VG(garbage, xp)
        assert float(v0) == float(v1)
        np.testing.assert_array_equal(g0, g1)
        # every row masked, all atoms on one point (degenerate geometry): 0, no NaN
        empty = e
        for name, t in e.tables.items():
            empty = eqx.tree_at(lambda z: z.tables[name].mask, empty, np.zeros_like(t.mask))
        v, g = VG(empty, jnp.zeros((e.capacity, 3)))
        assert float(v) == 0.0 and np.all(np.asarray(g) == 0.0)


def test_float32_and_float64():
    m, x = _embedded("CCO")
    e = MMFFEnergy.from_parameters(mmff_parameters(m))
    v32, g32 = VG(e, jnp.asarray(_pad(e, x), jnp.float32))
    assert v32.dtype == jnp.float32 and g32.dtype == jnp.float32
    with jax.enable_x64(True):
        v64, g64 = VG(e, jnp.asarray(_pad(e, x), jnp.float64))
        assert v64.dtype == jnp.float64 and g64.dtype == jnp.float64
        v64, g64 = float(v64), np.asarray(g64)
    assert abs(float(v32) - v64) < 1e-5 * (1.0 + abs(v64))
    np.testing.assert_allclose(np.asarray(g32), g64, atol=1e-3 * (1.0 + np.abs(g64).max()))


def test_jit_vmap_and_grad_of_the_module():
    with jax.enable_x64(True):
        smiles = ["O", "N", "C"]
        ms, ps, xs = [], [], []
        for s in smiles:
            m, x = _embedded(s)
            ms.append(m)
            ps.append(mmff_parameters(m))
            xs.append(x)
        bucket = merge_buckets([bucket_for(p) for p in ps])
        es = [MMFFEnergy.from_parameters(p, bucket) for p in ps]
        X = jnp.asarray(np.stack([_pad(e, x) for e, x in zip(es, xs)]))
        stacked = stack_energies(es)
        v, g = jax.jit(jax.vmap(VG))(stacked, X)
        for i, (p, x) in enumerate(zip(ps, xs)):
            ff = H.MMFFGetMoleculeForceField(ms[i], H.MMFFGetMoleculeProperties(ms[i]))
            assert abs(float(v[i]) - ff.CalcEnergy(x.ravel().tolist())) < 1e-3
            v1, g1 = VG(es[i], X[i])
            assert abs(float(v1) - float(v[i])) < 1e-12
            np.testing.assert_allclose(g1, g[i], atol=1e-12)
        # parameters are leaves too: the bond energy is linear in every kb
        e, x = es[2], X[2]

        def with_kb(kb):
            return eqx.tree_at(lambda z: z.tables["bond"].params["kb"], e, kb)(x)

        kb = jnp.asarray(e.tables["bond"].params["kb"])
        dkb = jax.jit(jax.grad(with_kb))(kb)
        bond = float(jax.jit(lambda e, x: e.terms(x)["bond"])(e, x))
        assert abs(float(jnp.sum(kb * dkb)) - bond) < 1e-10 * (1.0 + abs(bond))
    with pytest.raises(ValueError, match="share one bucket"):
        stack_energies([MMFFEnergy.from_parameters(ps[0]), MMFFEnergy.from_parameters(ps[0], BIG)])


def test_two_molecules_of_different_sizes_in_one_bucket_compile_once():
    water, methane = from_smiles("O").energy_fn, from_smiles("C").energy_fn
    assert isinstance(water, MMFFEnergy) and isinstance(methane, MMFFEnergy)
    assert water.bucket == methane.bucket
    assert water.num_atoms() == 3 and methane.num_atoms() == 5
    traces = []

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def energy_and_grad(e, x):
        traces.append(1)
        return jax.value_and_grad(e)(x)

    for smiles, e in (("O", water), ("C", methane)):
        m, x = _embedded(smiles)
        v, g = energy_and_grad(e, jnp.asarray(_pad(e, x), jnp.float32))
        ff = H.MMFFGetMoleculeForceField(m, H.MMFFGetMoleculeProperties(m))
        assert abs(float(v) - ff.CalcEnergy(x.ravel().tolist())) < 1e-3 * (1 + abs(float(v)))
    assert len(traces) == 1


def test_shape_errors_and_buckets():
    e = from_smiles("O").energy_fn
    with pytest.raises(ValueError, match="shaped"):
        e(jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match="shaped"):
        e(jnp.zeros((9, 3)))
    p = mmff_parameters("CCO")
    assert bucket_for(p) == Bucket(atoms=16, bond=8, angle=16, oop=8, torsion=16, pair=16)
    with pytest.raises(ValueError, match="bucket holds"):
        MMFFEnergy.from_parameters(p, bucket_for(mmff_parameters("O")))
