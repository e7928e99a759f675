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


@pytest.mark.parametrize("m", [1, 2, 5])
def test_distinct_picks_draw_every_set_equally_often(m):
    """`_distinct_picks` (the pivots' choice of 1-3 angles, three integer draws without
    replacement) has the distribution of `permutation(m) < count`: min(count, m) distinct
    angles, every set of that size equally likely."""
    import itertools

    from capsules import biomedical

    draws = 6000
    keys = jax.random.split(jax.random.key(m), draws)
    for count in (1, 2, 3):
        f = jax.jit(jax.vmap(lambda k, c=count: biomedical._distinct_picks(k, m, c)))
        picks = np.asarray(f(keys))
        size = min(count, m)
        assert np.all(picks.sum(axis=1) == size)
        sets = list(itertools.combinations(range(m), size))
        seen = {s: 0 for s in sets}
        for row in picks:
            seen[tuple(int(i) for i in np.flatnonzero(row))] += 1
        p = 1.0 / len(sets)
        sd = np.sqrt(draws * p * (1 - p))
        for s, k in seen.items():
            assert abs(k - draws * p) <= 5 * sd + 1e-9, (count, s, k)


def test_chain_move_2d_kinds_have_their_distributions():
    """One draw of each `chain_move_2d` kind, 6000 times on an 11-angle chain: pivots
    redraw 1, 2 or 3 angles (a third each; every angle alike; new angles uniform in
    [-pi, pi)), crankshafts turn angle i by d and angle j = min(i + 1..3, m - 1) by -d
    (i uniform; j = i: only angle i), local refolds add N(0, (4 s)^2) on i .. i + span - 1, N(0, s^2) on all."""
    from capsules import biomedical

    m, draws = 11, 6000
    x = jax.random.uniform(jax.random.key(0), (m,), minval=-1.0, maxval=1.0)
    keys = jax.random.split(jax.random.key(1), draws)
    one = jax.jit(
        jax.vmap(biomedical._chain_move_2d_kind, in_axes=(0, None, None, None)),
    )
    xs = np.asarray(x)
    y = np.asarray(one(keys, x, jnp.float32(0.0), 0))
    changed = np.abs(y - xs) > 1e-7
    counts = np.bincount(changed.sum(axis=1), minlength=4)
    assert counts[0] == 0 and counts[4:].sum() == 0
    np.testing.assert_allclose(counts[1:4] / draws, 1 / 3, atol=0.03)
    np.testing.assert_allclose(changed.mean(axis=0), 2.0 / m, atol=0.03)  # E[count] / m
    new = y[changed]
    assert np.all(np.abs(new) <= np.pi)
    np.testing.assert_allclose([new.mean(), new.var()], [0.0, np.pi**2 / 3], atol=0.1)

    y = np.asarray(one(keys, x, jnp.float32(0.0), 1))
    d = y - xs
    first = np.argmax(np.abs(d) > 1e-7, axis=1)
    np.testing.assert_allclose(np.bincount(first, minlength=m) / draws, 1 / m, atol=0.02)
    inner = first < m - 1  # i = m - 1 has no partner: the last bond alone turns
    np.testing.assert_allclose(d[inner].sum(axis=1), 0.0, atol=1e-5)  # the tail keeps its direction
    assert np.all((np.abs(d[inner]) > 1e-7).sum(axis=1) == 2)

    s = 0.05
    d = np.asarray(one(keys, x, jnp.float32(s), 2)) - xs
    k = np.arange(m)
    p_near = sum(np.minimum(span, k + 1) for span in (1, 2, 3)) / (3 * m)
    np.testing.assert_allclose(d.var(axis=0) / s**2, 1 + 16 * p_near, rtol=0.12)
