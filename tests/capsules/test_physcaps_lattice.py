"""Lattice capsules and checkerboard block Gibbs: known answers (Onsager, Yang, exact
enumeration), exact energy book-keeping, jit / vmap use, and bad input."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import capsules
import idf_jax as idf
from capsules import lattice


def _exact_moments(L, energy, temperature, observable):
    """<E>/N and <observable> by enumerating every configuration (numpy, float64)."""
    e = energy.astype(np.float64)
    w = np.exp(-(e - e.min()) / temperature)
    w /= w.sum()
    return float((w * e).sum()) / L**2, float((w * observable).sum())


def _chain_mean_and_error(per_chain):
    """Mean over independent chains and its standard error (chains are independent)."""
    per_chain = np.asarray(per_chain, np.float64)
    return per_chain.mean(), per_chain.std(ddof=1) / np.sqrt(per_chain.size)


# --------------------------------------------------------------------------- known answers


def test_exact_formulas():
    # Onsager at T_c: u = -sqrt(2) J; Yang vanishes at T_c, values from the closed forms.
    assert lattice.onsager_energy(lattice.ISING_TC) == pytest.approx(-np.sqrt(2), abs=1e-6)
    assert lattice.yang_magnetization(1.5) == pytest.approx(0.986500, abs=1e-6)
    assert lattice.yang_magnetization(3.0) == 0.0
    assert lattice.potts_tc(2) == pytest.approx(lattice.ISING_TC / 2)


@pytest.mark.parametrize("temperature", [1.5, 2.0, 3.0])
def test_onsager_energy_and_yang_magnetisation_L64(temperature):
    """L=64: energy per spin within 1 % of Onsager and, below T_c, <|m|> within 2 % of
    Yang (finite-size corrections at these temperatures are far below both tolerances)."""
    cap = lattice.ising(64)
    sampler = idf.block_gibbs(cap, temperature)
    key = jax.random.key(0)
    chains = 4
    # below T_c start ordered (no coarsening needed), above T_c start hot
    x0 = jnp.ones((chains, 64, 64), jnp.int8) if temperature < 2.2 else cap.init(key, chains)
    trace = idf.sample(sampler, key, x0, 300, burn_in=100, thin=5)
    u = np.asarray(trace.energies) / 64**2
    exact = lattice.onsager_energy(temperature)
    assert abs(u.mean() / exact - 1) < 0.01, (u.mean(), exact)
    if temperature < lattice.ISING_TC:
        m = np.abs(np.asarray(trace.positions, np.float64).mean(axis=(-1, -2)))
        m_exact = lattice.yang_magnetization(temperature)
        assert abs(m.mean() / m_exact - 1) < 0.02, (m.mean(), m_exact)
    # the state's integer book-keeping equals the capsule's energy of the recorded spins
    e_fn = jax.vmap(jax.vmap(cap.energy_fn))(trace.positions)
    np.testing.assert_array_equal(np.asarray(e_fn), np.asarray(trace.energies))
    assert trace.stats["flip_fraction"].shape == (chains,)
    assert not np.any(np.asarray(trace.stats["diverged"]))


def test_ising_exact_enumeration_L4_with_field():
    """4x4 periodic Ising with a field: MC <E>/N and <m> agree with the sum over all 2^16
    configurations within 4 standard errors (error from independent chains)."""
    L, J, h, T = 4, 1.0, 0.3, 2.5
    cap = lattice.ising(L, J=J, h=h)
    configs = np.array(list(itertools.product([-1, 1], repeat=L * L)), np.int8).reshape(-1, L, L)
    energies = np.asarray(jax.jit(jax.vmap(cap.energy_fn))(jnp.asarray(configs)))
    mags = configs.reshape(len(configs), -1).mean(axis=1)
    u_exact, m_exact = _exact_moments(L, energies, T, mags)

    chains = 64
    trace = idf.sample(
        idf.block_gibbs(cap, T),
        jax.random.key(2),
        cap.init(jax.random.key(3), chains),
        1100,
        burn_in=100,
        thin=2,
    )
    u_c = np.asarray(trace.energies).mean(axis=1) / L**2
    m_c = np.asarray(trace.positions, np.float64).mean(axis=(1, 2, 3))
    u, du = _chain_mean_and_error(u_c)
    m, dm = _chain_mean_and_error(m_c)
    assert abs(u - u_exact) < 4 * du, (u, u_exact, du)
    assert abs(m - m_exact) < 4 * dm, (m, m_exact, dm)


def test_potts_exact_enumeration_L2_q3():
    """2x2 periodic 3-state Potts (each neighbour pair joined by two bonds): MC <E>/N
    agrees with the sum over all 3^4 configurations within 4 standard errors."""
    L, q, T = 2, 3, 1.3
    cap = lattice.potts(L, q)
    configs = np.array(list(itertools.product(range(q), repeat=L * L)), np.int8).reshape(-1, L, L)
    energies = np.asarray(jax.vmap(cap.energy_fn)(jnp.asarray(configs)))
    frac0 = (configs == 0).reshape(len(configs), -1).mean(axis=1)
    u_exact, f_exact = _exact_moments(L, energies, T, frac0)
    trace = idf.sample(
        idf.block_gibbs(cap, T), jax.random.key(4), cap.init(jax.random.key(5), 64), 1000, thin=2
    )
    u, du = _chain_mean_and_error(np.asarray(trace.energies).mean(axis=1) / L**2)
    f, df = _chain_mean_and_error((np.asarray(trace.positions) == 0).mean(axis=(1, 2, 3)))
    assert abs(u - u_exact) < 4 * du, (u, u_exact, du)
    assert abs(f - f_exact) < 4 * df, (f, f_exact, df)


def test_potts_q2_is_ising_at_half_coupling():
    """q=2 Potts = Ising with J/2 minus J per spin: Onsager at coupling 1/2, L=32."""
    T = 1.6  # T_c(q=2 Potts) = 1.1346
    cap = lattice.potts(32, 2)
    trace = idf.sample(
        idf.block_gibbs(cap, T),
        jax.random.key(6),
        cap.init(jax.random.key(7), 4),
        300,
        burn_in=100,
        thin=5,
    )
    u = float(np.asarray(trace.energies).mean()) / 32**2
    exact = lattice.onsager_energy(T, J=0.5) - 1.0
    assert abs(u / exact - 1) < 0.01, (u, exact)
    e_fn = jax.vmap(jax.vmap(cap.energy_fn))(trace.positions)
    np.testing.assert_array_equal(np.asarray(e_fn), np.asarray(trace.energies))


# --------------------------------------------------------------------------- transforms


def test_step_jit_vmap_and_traced_temperature():
    cap = lattice.ising(8, h=0.1)
    key = jax.random.key(0)
    x0 = cap.init(key, 3)
    s = idf.block_gibbs(cap, 2.0)
    states = jax.vmap(s.init)(x0)
    keys = jax.random.split(key, 3)
    new, info = jax.jit(jax.vmap(s.step))(keys, states)
    assert new.position.shape == (3, 8, 8) and new.position.dtype == jnp.int8
    np.testing.assert_array_equal(np.asarray(info.acceptance_rate), 1.0)
    # a traced temperature (e.g. inside tempering) gives the same draw as a concrete one
    traced = jax.jit(lambda T: jax.vmap(idf.block_gibbs(cap, T).step)(keys, states)[0].position)
    np.testing.assert_array_equal(np.asarray(traced(2.0)), np.asarray(new.position))
    # energies stay exact: carried counts equal a fresh evaluation
    np.testing.assert_allclose(
        np.asarray(new.energy), np.asarray(jax.vmap(cap.energy_fn)(new.position))
    )


def test_registry_and_decode():
    assert "lattice.ising" in capsules.available() and "lattice.potts" in capsules.available()
    cap = capsules.make("lattice.ising", L=4)
    d = cap.decode(jnp.ones((4, 4), jnp.int8))
    assert d["energy_per_spin"] == -2.0 and d["magnetization_per_spin"] == 1.0
    p = capsules.make("lattice.potts", L=4, q=3)
    assert p.decode(jnp.zeros((4, 4), jnp.int8))["order_parameter"] == 1.0


# --------------------------------------------------------------------------- bad input


def test_bad_input():
    with pytest.raises(ValueError, match="even"):
        idf.block_gibbs(lattice.ising(5), 1.0)
    with pytest.raises(ValueError, match="L"):
        lattice.ising(1)
    with pytest.raises(ValueError, match="q"):
        lattice.potts(4, 1)
    with pytest.raises(ValueError, match="temperature"):
        idf.block_gibbs(lattice.ising(4), 0.0)
    with pytest.raises(ValueError, match="model"):
        idf.block_gibbs(object(), 1.0)
    with pytest.raises(ValueError, match="shape"):
        idf.block_gibbs(lattice.ising(4), 1.0).init(jnp.ones((6, 6)))


def test_philox_known_answer_vectors():
    """The sampler's random words come from Philox-4x32-10: Random123's known-answer
    vectors (kat_vectors, philox4x32 10), under jit, and words are balanced bits."""
    from idf_jax.samplers.gibbs import _random_words, philox4x32

    kat = [
        ([0] * 4, [0] * 2, [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
        ([0xFFFFFFFF] * 4, [0xFFFFFFFF] * 2, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
        (
            [0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344],
            [0xA4093822, 0x299F31D0],
            [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1],
        ),
    ]
    f = jax.jit(lambda c, k: philox4x32(tuple(c), tuple(k)))
    for ctr, key, want in kat:
        got = f(jnp.array(ctr, jnp.uint32), jnp.array(key, jnp.uint32))
        assert [int(g) for g in got] == want
    words = np.asarray(jax.jit(lambda k: _random_words(k, 1 << 16))(jax.random.key(0)))
    bits = (words[:, None] >> np.arange(32, dtype=np.uint32)) & 1
    assert np.all(np.abs(bits.mean(axis=0) - 0.5) < 5 * 0.5 / np.sqrt(words.size))
    assert len(np.unique(words)) > words.size - 5  # no repeated stream
