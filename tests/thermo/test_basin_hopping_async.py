"""The asynchronous hop loop (`thermo.hop_async`, hop_loop="async"): exact minima for
every method, reproducibility and chunk invariance, budget and first-hit accounting,
stop at the target inside the loop, one compilation, jit / vmap, bad arguments."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import double_well_minimum, tilted_double_well

import idf_jax as idf
from idf_jax._checks import ArgumentError
from idf_jax.thermo import hop_async
from idf_jax.thermo.basin_hopping import run_search as _RUN_SEARCH
from idf_jax.thermo.hop_async import move_slots
from idf_jax.thermo.local_min import lbfgs_run

SEARCH = ("basin_hopping", "parallel_tempering", "population")


E_MIN, X_MIN = double_well_minimum()
WRONG_WELL = jnp.tile(jnp.array([[0.96, 0.3]]), (8, 1))  # every chain in the local well


def _run(method, key=0, x0=WRONG_WELL, **kw):
    kw.setdefault("num_steps", 1500)
    kw.setdefault("target", E_MIN)
    return idf.sample_equilibrium(
        tilted_double_well,
        jax.random.key(key),
        x0,
        method=method,
        target_tol=1e-5,
        hop_loop="async",
        **kw,
    )


@pytest.mark.parametrize("method", SEARCH)
def test_each_method_finds_the_exact_minimum(method):
    res = _run(method)
    assert float(res.best_energy) == pytest.approx(E_MIN, abs=1e-5)
    np.testing.assert_allclose(np.asarray(res.best_position), [X_MIN, 0.0], atol=2e-3)
    assert int(res.first_hit_hop) >= 1
    hops = np.asarray(res.hops)
    assert hops.shape == (8,) and np.all(hops >= 1)
    # every judged hop is one minimisation; plus the first and the final one per chain
    assert int(res.num_minimisations) == int(hops.sum()) + 2 * 8
    # every chain spends its budget; a hop once started finishes: at most one more
    # relaxation (relax_steps // 5 iterations + its start) per chain
    evals = float(res.num_evaluations)
    assert 1500 * 8 <= evals <= (1500 + 500 // 5 + 1) * 8 + 8 * 520
    assert 0.0 < float(res.acceptance_rate.mean()) <= 1.0


def test_reproducible_and_chunk_invariant():
    a, b = _run("parallel_tempering", 3), _run("parallel_tempering", 3)
    np.testing.assert_array_equal(np.asarray(a.final_position), np.asarray(b.final_position))
    np.testing.assert_array_equal(np.asarray(a.hops), np.asarray(b.hops))
    c = _run("parallel_tempering", 4)
    assert not np.array_equal(np.asarray(a.final_position), np.asarray(c.final_position))
    one = _run("basin_hopping", 5, chunk_hops=1)
    big = _run("basin_hopping", 5, chunk_hops=1000)
    np.testing.assert_array_equal(np.asarray(one.final_position), np.asarray(big.final_position))
    np.testing.assert_array_equal(np.asarray(one.hops), np.asarray(big.hops))


def test_stop_at_target_inside_the_loop_and_first_hit_accounting():
    full = _run("basin_hopping", 1)
    early = _run("basin_hopping", 1, num_steps=50_000, stop_at_target=True)
    hop = int(early.first_hit_hop)
    assert hop >= 1
    # stopped where the target was first reached, not at the end of a chunk of hops
    assert int(np.max(np.asarray(early.hops))) == hop
    assert float(early.hit_evaluations) == float(early.num_evaluations)
    assert float(early.hit_evaluations) < float(full.num_evaluations)
    assert 0.0 < float(early.time_to_target) <= float(early.wall_time)
    # the search is the same up to the hit
    assert int(full.first_hit_hop) == hop
    assert float(full.hit_evaluations) == float(early.hit_evaluations)
    never = _run("basin_hopping", 1, num_steps=300, target=E_MIN - 1.0)
    assert int(never.first_hit_hop) == -1 and float(never.hit_evaluations) == -1.0


def test_move_slots():
    assert move_slots(8) == 8 and move_slots(32) == 32
    assert move_slots(128) == 32 and move_slots(4096) == 1024


def test_hop_relaxations_of_a_stiff_chain_end_within_the_hop_cap():
    """The loop's L-BFGS memory: relaxations after a chain move on AB-13 (bend angles,
    Lennard-Jones walls against a soft bend term) mostly converge within the hop cap
    (relax_steps // 5 = 100 iterations); with a memory of 8 only about a third did."""
    from capsules.biomedical import ab_protein, fibonacci_sequence

    cap = ab_protein(fibonacci_sequence(13))
    # the record fold (-3.2941), rounded: the moves start from near a deep minimum
    rec = jnp.array(
        [-1.491, -1.5, 0.869, -1.48, -1.519, 1.466, -1.953, 1.449, -1.517, -1.483, 1.042]
    )
    keys = jax.random.split(jax.random.key(0), 64)
    starts = jax.vmap(lambda k: cap.moves(k, rec, 0.1))(keys)
    run = jax.jit(
        jax.vmap(lbfgs_run(cap.energy_fn, None, hop_async._MEMORY), in_axes=(0, None, None, None))
    )
    lb = run(starts, 100, 1e-3, 0.08)
    converged = np.linalg.norm(np.asarray(lb["g"]), axis=1) < 1e-3
    assert converged.mean() >= 0.55
    assert np.all(np.isfinite(np.asarray(lb["e"])))


def test_one_compilation_and_jit_vmap():
    calls = []

    def energy(x):
        calls.append(1)
        return tilted_double_well(x)

    kw: dict[str, Any] = dict(num_steps=300, method="parallel_tempering", hop_loop="async")
    idf.sample_equilibrium(energy, jax.random.key(0), WRONG_WELL, target=E_MIN, **kw)
    traced = len(calls)
    x1 = jax.random.normal(jax.random.key(9), (8, 2))
    idf.sample_equilibrium(
        energy, jax.random.key(1), x1, target=E_MIN + 0.1, temperature=jnp.full((8,), 0.2), **kw
    )
    assert len(calls) == traced

    def best(theta, key):
        res = idf.sample_equilibrium(
            lambda x: tilted_double_well(x) + (theta - 0.3) * x[0],
            key,
            WRONG_WELL,
            num_steps=1500,
            method="basin_hopping",
            hop_loop="async",
        )
        return res.best_energy

    np.testing.assert_allclose(float(jax.jit(best)(0.3, jax.random.key(0))), E_MIN, atol=1e-5)
    es = jax.vmap(best, in_axes=(None, 0))(0.3, jax.random.split(jax.random.key(1), 2))
    np.testing.assert_allclose(np.asarray(es), E_MIN, atol=1e-5)


def test_bad_hop_loop_raises():
    key = jax.random.key(0)
    with pytest.raises(ArgumentError, match="hop_loop") as err:
        idf.sample_equilibrium(tilted_double_well, key, WRONG_WELL, num_steps=5, hop_loop="x")
    assert err.value.argument == "hop_loop"
    with pytest.raises(ArgumentError, match="hop_loop"):
        idf.sample_equilibrium(
            tilted_double_well, key, WRONG_WELL, num_steps=5, hop_loop="async", local="fire"
        )
    with pytest.raises(ArgumentError, match="exchange_every"):
        idf.sample_equilibrium(tilted_double_well, key, WRONG_WELL, num_steps=5, exchange_every=0)


def test_grow_cap_doubles_when_most_hops_end_at_it():
    walk = {"cap": jnp.int32(100), "judged": jnp.int32(127), "capped": jnp.int32(127)}
    same = hop_async._grow_cap(walk, 128, 500)  # window not full: nothing changes
    assert [int(same[k]) for k in ("cap", "judged", "capped")] == [100, 127, 127]
    up = hop_async._grow_cap(dict(walk, judged=jnp.int32(130), capped=jnp.int32(66)), 128, 500)
    assert [int(up[k]) for k in ("cap", "judged", "capped")] == [200, 0, 0]
    kept = hop_async._grow_cap(dict(walk, judged=jnp.int32(130), capped=jnp.int32(65)), 128, 500)
    assert [int(kept[k]) for k in ("cap", "judged", "capped")] == [100, 0, 0]
    top = hop_async._grow_cap(dict(walk, cap=jnp.int32(400), judged=jnp.int32(128)), 128, 500)
    assert int(top["cap"]) == 500
    fixed = hop_async._grow_cap(dict(walk, judged=jnp.int32(128)), 128, 100)
    assert int(fixed["cap"]) == 100


def _final_caps(monkeypatch, **kw):
    """`_run`'s result and the hop cap each batch ended with."""
    from idf_jax.thermo import basin_hopping

    caps = []

    def spy(*a, **k):
        out = _RUN_SEARCH(*a, **k)
        caps.append(int(out.carry.walk["cap"]))
        return out

    monkeypatch.setattr(basin_hopping, "run_search", spy)
    return _run("parallel_tempering", 2, **kw), caps


def test_adaptive_hop_cap(monkeypatch):
    """hop_cap="adapt": where hop relaxations converge within relax_steps // 5 the
    search is bit-identical to the fixed cap; where they end at it (relax_steps 5: a cap
    of one iteration) the cap doubles up to relax_steps; an int is a fixed cap."""
    fixed, c_fixed = _final_caps(monkeypatch, hop_cap="fixed")
    adapt, c_adapt = _final_caps(monkeypatch, hop_cap="adapt")
    assert c_fixed == c_adapt == [100]
    for f in ("final_position", "hops", "best_energy"):
        np.testing.assert_array_equal(np.asarray(getattr(fixed, f)), np.asarray(getattr(adapt, f)))
    _, c = _final_caps(monkeypatch, hop_cap="fixed", relax_steps=5)
    assert c == [1]
    res, c = _final_caps(monkeypatch, hop_cap="adapt", relax_steps=5)
    assert c == [5]
    assert float(res.best_energy) == pytest.approx(E_MIN, abs=1e-5)
    _, c = _final_caps(monkeypatch, hop_cap=3)
    assert c == [3]
    with pytest.raises(ArgumentError, match="hop_cap") as err:
        _run("parallel_tempering", hop_cap="grow")
    assert err.value.argument == "hop_cap"
    with pytest.raises(ArgumentError, match="hop_cap"):
        _run("parallel_tempering", hop_cap=0)


def test_restart_indices_copy_the_best_groups_into_the_worst():
    # 8 groups of 2 rungs; group bests 5, 1, 7, 3, 0, 6, 2, 4 (one chain at NaN)
    g = jnp.array([5.0, 1.0, 7.0, 3.0, 0.0, 6.0, 2.0, 4.0])
    best_e = jnp.stack([g, g + 10.0], axis=1).reshape(16).at[5].set(jnp.nan)
    src = np.asarray(hop_async.restart_indices(best_e, 2))
    want = np.arange(16).reshape(8, 2)
    want[2], want[5] = want[4], want[1]  # worst (7) <- best (0), next (6) <- next (1)
    np.testing.assert_array_equal(src, want.reshape(16))
    np.testing.assert_array_equal(hop_async.restart_indices(best_e[:4], 2), [2, 3, 2, 3])


def test_restart_every_restarts_groups_and_still_finds_the_minimum(monkeypatch):
    from idf_jax.thermo import basin_hopping

    walks = []

    def spy(*a, **k):
        out = _RUN_SEARCH(*a, **k)
        walks.append(out.carry.walk)
        return out

    monkeypatch.setattr(basin_hopping, "run_search", spy)
    res = _run("parallel_tempering", 4, replicas=2, restart_every=2)
    assert int(walks[0]["restarted"]) == int(np.mean(np.asarray(res.hops)) // 2) >= 2
    assert float(res.best_energy) == pytest.approx(E_MIN, abs=1e-5)
    with pytest.raises(ArgumentError, match="restart_every") as err:
        _run("population", restart_every=2)
    assert err.value.argument == "restart_every"
    with pytest.raises(ArgumentError, match="restart_every"):
        _run("parallel_tempering", restart_every=0)
