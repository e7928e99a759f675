"""sample_equilibrium(active_chains=...): a large batch of chains searched A at a time.

Batching equals consecutive searches of A chains (batch b with key fold_in(key, b)),
the first-hit accounting sums the earlier batches' work, one compilation serves every
batch, jit, checkpoints per batch, the per-chain cost rule, bad arguments."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import double_well_minimum, tilted_double_well

import idf_jax as idf
from idf_jax._checks import ArgumentError
from idf_jax.thermo import basin_hopping as bh

E_MIN, X_MIN = double_well_minimum()
WRONG = jnp.array([0.96, 0.3])  # the local well
RIGHT = jnp.array([X_MIN + 0.05, 0.1])  # the global well


def _tiny_kick(key, x, scale):
    # too small to leave a well: a chain stays in the basin it starts in
    return x + 1e-3 * jax.random.normal(key, x.shape, x.dtype)


def _starts():
    """16 chains in 4 batches of 4: batches 0 and 1 in the local well, batch 2 in the
    global one, batch 3 in the local one."""
    wells = [WRONG, WRONG, RIGHT, WRONG]
    return jnp.concatenate([jnp.tile(w[None], (4, 1)) for w in wells])


def _run(x0, key=0, **kw):
    kw.setdefault("num_steps", 300)
    kw.setdefault("method", "basin_hopping")
    return idf.sample_equilibrium(
        tilted_double_well,
        jax.random.key(key),
        x0,
        moves=_tiny_kick,
        target=E_MIN,
        target_tol=1e-4,
        **kw,
    )


@pytest.mark.parametrize("hop_loop", ["async", "sync"])
def test_batches_equal_consecutive_searches_and_their_accounting(hop_loop):
    x0 = _starts()
    res = _run(x0, active_chains=4, hop_loop=hop_loop)
    parts = [
        idf.sample_equilibrium(
            tilted_double_well,
            jax.random.fold_in(jax.random.key(0), b),
            x0[4 * b : 4 * b + 4],
            num_steps=300,
            method="basin_hopping",
            moves=_tiny_kick,
            target=E_MIN,
            target_tol=1e-4,
            hop_loop=hop_loop,
        )
        for b in range(4)
    ]
    cat = lambda f: np.concatenate([np.asarray(getattr(p, f)) for p in parts])  # noqa: E731
    np.testing.assert_array_equal(np.asarray(res.hops), cat("hops"))
    np.testing.assert_array_equal(np.asarray(res.energy), cat("energy"))
    np.testing.assert_array_equal(np.asarray(res.final_position), cat("final_position"))
    assert float(res.num_evaluations) == sum(float(p.num_evaluations) for p in parts)
    assert int(res.num_minimisations) == sum(int(p.num_minimisations) for p in parts)
    # only batch 2 starts in the global well: it is the one that hits, at hop 0
    assert [int(p.first_hit_hop) for p in parts] == [-1, -1, 0, -1]
    assert int(res.first_hit_hop) == 0
    assert int(res.num_reached) == 4
    assert np.array_equal(np.asarray(res.reached), np.arange(16) // 4 == 2)
    # first hit: all the work of batches 0 and 1, then batch 2's own work to its hit
    # (a searched batch's minimisations without the final polish of its 4 chains)
    earlier_e = sum(float(p.num_evaluations) for p in parts[:2])
    earlier_m = sum(int(p.num_minimisations) - 4 for p in parts[:2])
    assert float(res.hit_evaluations) == earlier_e + float(parts[2].hit_evaluations)
    assert float(res.hit_minimisations) == earlier_m + float(parts[2].hit_minimisations)
    assert float(res.hit_evaluations) > float(parts[2].hit_evaluations) > 0
    assert 0 < float(res.time_to_target) <= float(res.wall_time)


def test_stop_at_target_ends_with_the_batch_that_hit():
    x0 = _starts()
    full = _run(x0, active_chains=4)
    res = _run(x0, active_chains=4, stop_at_target=True)
    hops = np.asarray(res.hops)
    assert hops.shape == (16,) and np.all(hops[12:] == 0)  # batch 3 never ran
    # batches 0 and 1 missed and ran to their budget, as without stopping
    np.testing.assert_array_equal(hops[:8], np.asarray(full.hops)[:8])
    np.testing.assert_array_equal(np.asarray(res.final_position)[12:], np.asarray(x0)[12:])
    assert np.all(np.isnan(np.asarray(res.step_size)[12:]))
    assert float(res.hit_evaluations) == float(full.hit_evaluations)
    assert float(res.hit_minimisations) == float(full.hit_minimisations)
    assert float(res.num_evaluations) < float(full.num_evaluations)
    assert float(res.best_energy) == pytest.approx(E_MIN, abs=1e-5)
    assert res.energy.shape == (16,)


def test_one_compilation_for_every_batch():
    def counted():
        calls = []

        def energy(x):
            calls.append(1)
            return tilted_double_well(x)

        return energy, calls

    one, calls_one = counted()
    x8 = jnp.tile(WRONG[None], (8, 1))
    idf.sample_equilibrium(
        one, jax.random.key(0), x8, num_steps=200, method="parallel_tempering", active_chains=8
    )
    four, calls_four = counted()
    x32 = jax.random.normal(jax.random.key(3), (32, 2))
    idf.sample_equilibrium(
        four, jax.random.key(0), x32, num_steps=200, method="parallel_tempering", active_chains=8
    )
    # the four batches of 8 reuse the compiled search of one batch: as many traces as
    # one batch of 8 alone (the read-out of all 32 chains traces once, as that of 8)
    assert len(calls_one) > 0
    assert len(calls_four) == len(calls_one)


def test_batched_search_under_jit_matches_the_host():
    x0 = _starts()

    def best(key):
        res = idf.sample_equilibrium(
            tilted_double_well,
            key,
            x0,
            num_steps=300,
            method="basin_hopping",
            moves=_tiny_kick,
            target=E_MIN,
            target_tol=1e-4,
            active_chains=4,
        )
        return res.energy, res.hit_evaluations, res.first_hit_hop

    e, hit_e, hop = jax.jit(best)(jax.random.key(0))
    host = _run(x0, active_chains=4)
    np.testing.assert_allclose(np.asarray(e), np.asarray(host.energy), rtol=1e-6, atol=1e-6)
    assert float(hit_e) == float(host.hit_evaluations)
    assert int(hop) == 0


def test_checkpoint_per_batch(tmp_path):
    path = str(tmp_path / "search.npz")
    x0 = _starts()
    full = _run(x0, active_chains=4)
    part = _run(x0, active_chains=4, checkpoint=path)
    assert all((tmp_path / f"search.npz.batch{b}").exists() for b in range(4))
    np.testing.assert_array_equal(np.asarray(part.final_position), np.asarray(full.final_position))
    again = _run(x0, active_chains=4, checkpoint=path)  # resumes every finished batch
    np.testing.assert_array_equal(np.asarray(again.final_position), np.asarray(full.final_position))
    np.testing.assert_array_equal(np.asarray(again.hops), np.asarray(full.hops))
    with pytest.raises(ValueError, match="different run"):
        _run(x0, key=1, active_chains=4, checkpoint=path)


def test_op_count():
    def loop(x):
        return jax.lax.fori_loop(0, 10, lambda i, s: s + jnp.sum(jnp.sin(x) * x), 0.0)

    def once(x):
        return jnp.sum(jnp.sin(x) * x)

    x = jnp.ones(50)
    n_loop = bh._op_count(jax.make_jaxpr(loop)(x).jaxpr)
    n_once = bh._op_count(jax.make_jaxpr(once)(x).jaxpr)
    assert n_once >= 150  # sin, mul, sum over 50 elements
    assert 10 * n_once <= n_loop <= 10 * n_once + 100  # a scan counts its body each time
    matmul = jax.make_jaxpr(lambda a, b: a @ b)(jnp.ones((20, 30)), jnp.ones((30, 10)))
    assert bh._op_count(matmul.jaxpr) == 2 * 30 * 20 * 10


def test_rule_from_per_chain_cost():
    rule = bh.active_chain_rule
    assert rule(3.3e4, 256, "cpu") == 128  # LJ26-like cost: cut to ACTIVE_MIN = 128
    assert rule(3.3e4, 128, "cpu") == 128
    assert rule(1.1e4, 128, "cpu") == 128  # AB-13-like cost: all 128
    assert rule(1.1e4, 256, "cpu") == 128
    assert rule(4e3, 1024, "cpu") == 256  # cheap: 256 x 4e3 >= 1e6
    assert rule(1e3, 256, "cpu") == 256
    assert rule(1e7, 256, "cpu") == bh.ACTIVE_MIN
    assert rule(3.3e4, 16, "cpu") == 16
    assert rule(3.3e4, 128, "gpu") == 128  # not measured on accelerators: all chains
    # a costlier energy never gets more active chains
    costs = np.geomspace(1e2, 1e7, 40)
    got = [rule(c, 512, "cpu") for c in costs]
    assert all(a >= b for a, b in zip(got, got[1:]))


def test_rule_on_the_measured_instances():
    from capsules import biomedical
    from capsules.molecular._lj import lennard_jones_cluster
    from idf_jax.thermo import constraints as C

    def cost(cap):
        # the capsules' code relies on trailing-axis broadcasts (tests/conftest.py)
        with jax.numpy_rank_promotion("allow"):
            x = cap.init(jax.random.key(0), 1)[0]
            cs = C.parse(list(cap.constraints) or None)
            return bh.chain_cost(cap.energy_fn, cs, None, x)

    lj26, lj31 = lennard_jones_cluster(26), lennard_jones_cluster(31)
    ab13 = biomedical.ab_protein(biomedical.fibonacci_sequence(13))
    assert bh.active_chain_rule(cost(lj26), 256, "cpu") == 128
    assert bh.active_chain_rule(cost(lj31), 256, "cpu") == 128
    assert bh.active_chain_rule(cost(ab13), 256, "cpu") == 128
    assert cost(lj26) < cost(lj31)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "8", jnp.int32(4)])
def test_bad_active_chains_raise_argument_error(bad):
    with pytest.raises(ArgumentError, match="active_chains") as err:
        _run(_starts(), active_chains=bad)
    assert err.value.argument == "active_chains"
