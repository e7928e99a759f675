"""Capsule moves and known answers of `sample_equilibrium`'s basin hopping on small
instances: LJ7 with cluster moves, Thomson N=12 with sphere moves, a short 2-D AB chain
against an exhaustive grid (capsule code is not held to strict rank promotion, so these
live here rather than in tests/thermo)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import idf_jax as idf


def test_lj7_known_minimum_with_cluster_moves():
    from capsules.molecular import LJ_GLOBAL_MINIMA, lennard_jones_cluster

    cap = lennard_jones_cluster(7)
    res = idf.sample_equilibrium(
        cap.energy_fn,
        jax.random.key(0),
        cap.init(jax.random.key(1), 16),
        num_steps=4000,
        constraints=list(cap.constraints),
        moves=cap.moves,
        target=LJ_GLOBAL_MINIMA[7],
    )
    assert float(res.best_energy) == pytest.approx(LJ_GLOBAL_MINIMA[7], abs=1e-3)
    assert int(res.num_reached) >= 1


def test_thomson_12_known_minimum_with_sphere_moves():
    from capsules import plasma

    cap = plasma.thomson(12)
    res = idf.sample_equilibrium(
        cap.energy_fn,
        jax.random.key(0),
        cap.init(jax.random.key(1), 8),
        num_steps=3000,
        project=cap.project,
        moves=cap.moves,
        target=plasma.THOMSON_MINIMA[12],
    )
    assert float(res.best_energy) == pytest.approx(plasma.THOMSON_MINIMA[12], abs=1e-3)
    np.testing.assert_allclose(
        np.linalg.norm(np.asarray(res.best_position), axis=1), 1.0, atol=1e-5
    )


def test_ab_short_chain_matches_exhaustive_grid():
    from capsules import biomedical

    cap = biomedical.ab_protein("ABBAB")  # three bend angles
    g = np.linspace(-np.pi, np.pi, 49, endpoint=False)
    grid = jnp.asarray(np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3))
    e = np.asarray(jax.jit(jax.vmap(cap.energy_fn))(grid))
    starts = grid[np.argsort(e)[:32]]
    _, e_ref = idf.relax(cap.energy_fn, starts, method="fire", num_steps=3000, step_size=0.05)
    ref = float(np.min(np.asarray(e_ref)))
    res = idf.sample_equilibrium(
        cap.energy_fn,
        jax.random.key(0),
        cap.init(jax.random.key(1), 16),
        num_steps=4000,
        moves=cap.moves,
    )
    assert float(res.best_energy) == pytest.approx(ref, abs=1e-4)


def test_capsule_moves_keep_shapes():
    from capsules import biomedical, plasma
    from capsules.molecular import lennard_jones_cluster

    for cap in (
        lennard_jones_cluster(5),
        plasma.thomson(6),
        biomedical.ab_protein("ABBABBAB"),
        biomedical.ab_protein("ABBABBAB", dim=3),
    ):
        x = cap.init(jax.random.key(0), 1)[0]
        assert cap.moves is not None
        y = jax.jit(cap.moves)(jax.random.key(1), x, jnp.float32(0.1))
        assert y.shape == x.shape and y.dtype == x.dtype
        assert bool(jnp.all(jnp.isfinite(y))) and not bool(jnp.all(y == x))


def _lbfgs_batch(energy, project=None):
    from idf_jax.thermo.local_min import lbfgs_until_one

    return jax.jit(jax.vmap(lbfgs_until_one(energy, project), in_axes=(0, None, None, None)))


def test_matches_fire_minima_on_lj13():
    from capsules.molecular import lennard_jones_cluster
    from idf_jax.thermo import relax as _relax

    cap = lennard_jones_cluster(13)
    x0 = cap.init(jax.random.key(3), 16)
    fire = jax.jit(
        jax.vmap(
            _relax.fire_until_one(cap.energy_fn, None), in_axes=(0, None, None, None, None, None)
        )
    )
    xf, ef, _ = fire(x0, 0.005, 0.05, 0.1, 3000, 1e-4)
    # from each of FIRE's minima, slightly perturbed, L-BFGS finds the same minimum
    noise = 0.01 * jax.random.normal(jax.random.key(4), xf.shape)
    xl, el, evals = _lbfgs_batch(cap.energy_fn)(xf + noise, 2000, 1e-4, 0.1)
    np.testing.assert_allclose(np.asarray(el), np.asarray(ef), atol=1e-3)
    # from the random starts (which may fall into other minima) it needs fewer evaluations
    _, _, ev_r = _lbfgs_batch(cap.energy_fn)(x0, 2000, 1e-3, 0.1)
    _, _, ev_f = fire(x0, 0.005, 0.05, 0.1, 3000, 1e-3)
    assert np.median(np.asarray(ev_r)) < np.median(np.asarray(ev_f))


def test_projection_kept_on_the_sphere():
    from capsules import plasma

    cap = plasma.thomson(12)
    x0 = cap.init(jax.random.key(0), 4)
    x, e, _ = _lbfgs_batch(cap.energy_fn, cap.project)(x0, 2000, 1e-4, 0.1)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(x), axis=-1), 1.0, atol=1e-5)
    assert float(jnp.min(e)) == pytest.approx(49.165253, abs=1e-3)


def test_chain_move_2d_has_crankshafts_that_keep_the_tail_direction():
    from capsules.biomedical import chain_move_2d

    x = jax.random.uniform(jax.random.key(0), (11,), minval=-1.0, maxval=1.0)
    keys = jax.random.split(jax.random.key(1), 300)
    y = jax.jit(jax.vmap(lambda k: chain_move_2d(k, x, jnp.float32(0.0))))(keys)
    changed = np.sum(np.abs(np.asarray(y) - np.asarray(x)) > 1e-6, axis=1)
    # the tail's direction is the sum of the bend angles: a crankshaft keeps it
    kept = np.abs(np.sum(np.asarray(y), axis=1) - float(jnp.sum(x))) < 1e-5
    crank = kept & (changed == 2)
    assert 0.2 < np.mean(crank) < 0.5  # one move kind in three
    assert np.all(changed <= 3)  # every move kind touches at most 3 angles (scale 0)


@pytest.mark.parametrize("n", [5, 13, 34, 55])
def test_ab_2d_starts_are_clash_free(n):
    """The 2-D capsule's `init` grows self-avoiding chains: every non-bonded pair at least
    `_CLEAR_2D` apart (fully random bends put 55 % of AB-34 starts closer than 0.5), bends
    within the drawing range, and the starts are distinct draws."""
    from capsules import biomedical

    cap = biomedical.ab_protein(biomedical.fibonacci_sequence(n))
    x0 = jax.jit(cap.init, static_argnums=1)(jax.random.key(n), 64)
    assert x0.shape == (64, n - 2) and x0.dtype == jnp.float32
    clear = np.asarray(jax.jit(jax.vmap(biomedical._nonbonded_clearance_2d))(x0))
    assert np.all(clear >= biomedical._CLEAR_2D)
    assert np.all(np.abs(np.asarray(x0)) < 1.5)
    assert np.unique(np.round(np.asarray(x0), 5), axis=0).shape[0] == 64
    assert np.all(np.isfinite(np.asarray(jax.jit(jax.vmap(cap.energy_fn))(x0))))
    # the clearance agrees with the monomer positions `decode` gives
    pos = cap.decode(x0[0])["positions"]
    d = np.linalg.norm(pos[:, None] - pos[None, :], axis=-1)[np.triu_indices(n, 2)]
    assert float(np.min(d)) == pytest.approx(float(clear[0]), abs=1e-4)


def test_chain_move_2d_draws_clash_free_moves_of_one_kind():
    """`chain_move_2d` returns, of its draws of one move kind, the first that does not
    clash: from AB-34 starts its moves clash far less often than single draws, and where
    a single draw of its kind (the same first key) is clear, it is the move."""
    from capsules import biomedical

    cap = biomedical.ab_protein(biomedical.fibonacci_sequence(34))
    scale = jnp.float32(0.05)

    def single(k, xi):  # one draw, the kind drawn as chain_move_2d draws it
        k_kind, k_tries = jax.random.split(k)
        kind = jax.random.randint(k_kind, (), 0, 3)
        first = jax.random.split(k_tries, biomedical._TRIES_2D)[0]
        return biomedical._chain_move_2d_kind(first, xi, scale, kind)

    @jax.jit
    def run(x, keys):
        each = lambda f: jax.vmap(lambda ks, xi: jax.vmap(lambda k: f(k, xi))(ks))(keys, x)  # noqa: E731
        moved = each(lambda k, xi: biomedical.chain_move_2d(k, xi, scale)).reshape(-1, 32)
        once = each(single).reshape(-1, 32)
        clear = jax.vmap(biomedical._nonbonded_clearance_2d)
        return moved, once, clear(moved), clear(once)

    x = cap.init(jax.random.key(0), 8)
    moved, once, c_moved, c_once = map(
        np.asarray, run(x, jax.random.split(jax.random.key(1), (8, 32)))
    )
    lim = biomedical._CLEAR_2D
    assert np.mean(c_once < lim) > 0.2  # pivots and crankshafts often land on the chain
    assert np.mean(c_moved < lim) < 0.25 * np.mean(c_once < lim)
    first_ok = c_once >= lim
    np.testing.assert_array_equal(moved[first_ok], once[first_ok])
