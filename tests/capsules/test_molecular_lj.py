"""Lennard-Jones capsule: hand-derived force vs autodiff, known minima, errors, jit/vmap/grad."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import capsules
import idf_jax as idf
from capsules.molecular import (
    LJ_GLOBAL_MINIMA,
    lennard_jones_cluster,
    lj_energy,
    lj_energy_autodiff,
    relax,
)


def _icosahedron(radius):
    """Centre atom + 12 vertices of an icosahedron at `radius` (13, 3)."""
    phi = (1 + 5**0.5) / 2
    v = []
    for a in (-1, 1):
        for b in (-phi, phi):
            v += [(0, a, b), (a, b, 0), (b, 0, a)]
    v = np.array(v, dtype=np.float64)
    v *= radius / np.linalg.norm(v[0])
    return np.concatenate([np.zeros((1, 3)), v])


@pytest.mark.parametrize("n", [2, 7, 38])
def test_force_equals_autodiff_float32(n):
    x = lennard_jones_cluster(n).init(jax.random.key(n), 3)
    e1, g1 = jax.vmap(jax.value_and_grad(lj_energy))(x)
    e2, g2 = jax.vmap(jax.value_and_grad(lj_energy_autodiff))(x)
    # float32 sums in different order: relative 1e-6 of the largest term
    scale = 1.0 + float(jnp.max(jnp.abs(g2)))
    np.testing.assert_allclose(e1, e2, rtol=1e-5, atol=1e-5 * n)
    assert float(jnp.max(jnp.abs(g1 - g2))) < 1e-5 * scale


def test_force_equals_autodiff_float64_and_parameter_grads():
    with jax.enable_x64(True):
        x = jnp.asarray(lennard_jones_cluster(13).init(jax.random.key(1), 1)[0], jnp.float64)
        assert x.dtype == jnp.float64
        e1, g1 = jax.value_and_grad(lj_energy)(x, 1.3, 0.9)
        e2, g2 = jax.value_and_grad(lj_energy_autodiff)(x, 1.3, 0.9)
        np.testing.assert_allclose(e1, e2, rtol=1e-12)
        np.testing.assert_allclose(g1, g2, rtol=1e-10, atol=1e-10)
        # d/d(eps), d/d(sigma) from the custom rule (virial identity) vs autodiff
        p1 = jax.grad(lambda e, s: lj_energy(x, e, s), (0, 1))(1.3, 0.9)
        p2 = jax.grad(lambda e, s: lj_energy_autodiff(x, e, s), (0, 1))(1.3, 0.9)
        np.testing.assert_allclose(p1, p2, rtol=1e-10)


def test_dimer_minimum_and_pair_formula():
    with jax.enable_x64(True):
        r = 2.0 ** (1 / 6)
        x = jnp.array([[0.0, 0, 0], [r, 0, 0]])
        e, g = jax.value_and_grad(lj_energy)(x)
        assert abs(float(e) + 1.0) < 1e-12
        assert float(jnp.max(jnp.abs(g))) < 1e-12
        # eps and sigma scale as they should: u(r) = 4 eps ((s/r)^12 - (s/r)^6)
        x = jnp.array([[0.0, 0, 0], [1.5, 0, 0]])
        s, eps = 1.2, 0.7
        want = 4 * eps * ((s / 1.5) ** 12 - (s / 1.5) ** 6)
        assert abs(float(lj_energy(x, eps, s)) - want) < 1e-12


def test_lj13_icosahedron_relaxes_to_known_minimum():
    with jax.enable_x64(True):
        x0 = jnp.asarray(_icosahedron(1.2))[None]
        res = relax(lj_energy, x0, max_steps=500, gtol=1e-8)
        assert abs(float(res.energy[0]) - LJ_GLOBAL_MINIMA[13]) < 1e-5


def test_jit_vmap_grad_and_sampler_use_the_custom_force():
    cap = capsules.make("molecular.lennard_jones_cluster", n=7)
    x = cap.init(jax.random.key(0), 4)
    e = jax.jit(jax.vmap(cap.energy_fn))(x)
    np.testing.assert_allclose(e, jax.vmap(lj_energy_autodiff)(x), rtol=1e-5)
    trace = idf.sample(idf.mala(cap.energy_fn, 1e-3, temperature=0.1), jax.random.key(1), x, 20)
    assert trace.positions.shape == (4, 20, 7, 3)
    assert not bool(jnp.any(trace.stats["diverged"]))


def test_init_has_no_overlaps_and_container_is_inactive_there():
    cap = lennard_jones_cluster(38)
    x = np.asarray(cap.init(jax.random.key(3), 5))
    d = np.linalg.norm(x[:, :, None] - x[:, None], axis=-1) + 10 * np.eye(38)
    assert d.min() > 0.85
    (c,) = cap.constraints
    assert all(float(c.penalty(jnp.asarray(xi))) == 0.0 for xi in x)
    assert float(c.penalty(jnp.asarray(x[0]) * 3.0)) > 0.0


@pytest.mark.parametrize(
    "kwargs",
    [{"n": 1}, {"n": 0}, {"n": 2.5}, {"n": True}, {"n": 5, "epsilon": 0.0}, {"n": 5, "sigma": -1}],
)
def test_invalid_parameters_raise(kwargs):
    with pytest.raises(ValueError):
        lennard_jones_cluster(**kwargs)


def test_registry_and_decode():
    assert "molecular.lennard_jones_cluster" in capsules.available()
    cap = capsules.make("molecular.lennard_jones_cluster", n=13)
    mol = cap.decode(_icosahedron(1.1))
    assert mol.elements == ("Ar",) * 13 and mol.positions.shape == (13, 3)
    assert mol.to_xyz().splitlines()[0] == "13"


def test_lj_energy_module_parameters_are_leaves_and_relax_compiles_once():
    from capsules.molecular import LJEnergy
    from capsules.molecular._relax import TRACES

    cap = lennard_jones_cluster(13, epsilon=1.5, sigma=0.9)
    assert isinstance(cap.energy_fn, LJEnergy) and cap.energy_fn == cap.energy_fn
    with jax.enable_x64(True):
        x0 = jnp.asarray(_icosahedron(1.2))
        # E is linear in epsilon: dE/d(epsilon) = E / epsilon, through the module
        e, de = jax.value_and_grad(lambda m: m(x0))(cap.energy_fn)
        assert abs(float(de.epsilon) - float(e) / 1.5) < 1e-10
        before = TRACES["relax"]
        for eps, sigma in ((1.0, 1.0), (2.0, 1.1)):
            res = relax(LJEnergy(np.asarray(eps), np.asarray(sigma)), sigma * x0[None], gtol=1e-8)
            assert abs(float(res.energy[0]) - eps * LJ_GLOBAL_MINIMA[13]) < 1e-5 * eps
        assert TRACES["relax"] == before + 1  # one compilation for both clusters
