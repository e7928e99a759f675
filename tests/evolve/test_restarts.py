"""`minimize(restarts=...)`: a stuck search restarted inside the one compiled search, and
`Choice(encoding=...)`: the index and the one-hot encodings."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import count_traces

import idf_jax as idf
from idf_jax._checks import ArgumentError

ev = idf.evolve

# a 1-d trap: a wide basin at x = 0.1 (minimum 0.5) holds a search started at the centre
# with a small spread; the global minimum (0) is a narrow basin at x = 0.9
LINE = {"x": ev.Real(0.0, 1.0)}
TRAP: dict[str, Any] = dict(population_size=8, num_generations=300, init_std=0.05)


def trap(p, key):
    x = p["x"]
    return jnp.minimum((x - 0.1) ** 2 + 0.5, 2000.0 * (x - 0.9) ** 2)


def test_random_restarts_leave_the_basin_the_plain_strategy_stays_in():
    plain, restarted = [], []
    for seed in range(8):
        key = jax.random.key(seed)
        plain.append(ev.minimize(trap, LINE, key, **TRAP))
        restarted.append(ev.minimize(trap, LINE, key, restarts="random", **TRAP))
    assert all(r.num_restarts == 0 for r in plain)
    # the plain strategy ends in the wide basin on most keys
    assert sum(r.best_fitness >= 0.5 for r in plain) >= 5
    # restarted at uniform points of the box, every search finds the narrow one
    for r in restarted:
        assert r.num_restarts >= 1 and r.best_fitness < 1e-2
        assert abs(r.best_params["x"] - 0.9) < 3e-3
        # a collapsed run is restarted before its spread reaches 0 (where CMA-ES's mean
        # turns NaN): the reported mean is a point of the box
        assert 0.0 <= r.mean_params["x"] <= 1.0


def test_restarts_keep_the_best_found_and_count_the_evaluations():
    key = jax.random.key(4)
    plain = ev.minimize(trap, LINE, key, **TRAP)
    res = ev.minimize(trap, LINE, key, restarts="random", **TRAP)
    h, hp = res.history, plain.history
    # the same search until the first restart, then another one
    first = int(np.argmax(h["generation_best"] != hp["generation_best"]))
    assert first > 0 and res.num_restarts >= 1
    np.testing.assert_array_equal(h["best_fitness"][:first], hp["best_fitness"][:first])
    # the best so far never rises across restarts and is the best of every generation
    assert np.all(np.diff(h["best_fitness"]) <= 0)
    assert res.best_fitness == h["best_fitness"][-1] == np.min(h["generation_best"])
    # a restart spends no evaluation: population x generations, as without
    assert res.num_evaluations == plain.num_evaluations == 8 * 300
    assert res.num_generations == 300 and h["best_fitness"].shape == (300,)


def test_restarts_on_the_host_path_evaluate_exactly_the_budget():
    calls = []

    def host_trap(p, key):
        calls.append(1)
        x = float(p["x"])
        return min((x - 0.1) ** 2 + 0.5, 200.0 * (x - 0.9) ** 2)

    kw: dict[str, Any] = dict(
        population_size=8, num_generations=60, init_std=0.1, restarts="random"
    )
    res = ev.minimize(host_trap, LINE, jax.random.key(1), traceable=False, **kw)
    assert not res.traceable and res.num_restarts >= 1
    assert len(calls) == res.num_evaluations == 8 * 60


def test_restarts_are_a_function_of_the_key():
    kw: dict[str, Any] = dict(restarts="random", **TRAP)
    a = ev.minimize(trap, LINE, jax.random.key(7), **kw)
    b = ev.minimize(trap, LINE, jax.random.key(7), **kw)
    c = ev.minimize(trap, LINE, jax.random.key(8), **kw)
    assert a.num_restarts == b.num_restarts and a.best_fitness == b.best_fitness
    np.testing.assert_array_equal(a.history["generation_best"], b.history["generation_best"])
    assert not np.array_equal(a.history["generation_best"], c.history["generation_best"])


def test_one_compilation_per_search_with_restarts():
    from idf_jax.evolve import search

    fit, calls = count_traces(trap)
    kw: dict[str, Any] = dict(population_size=8, num_generations=120, init_std=0.1)
    res = ev.minimize(fit, LINE, jax.random.key(2), restarts="random", **kw)
    assert res.num_restarts >= 2  # several restarts in one compiled scan
    engine = next(e for e in search._ENGINES.values() if e.fitness_fn is fit)
    (chunk,) = engine._chunks.values()
    assert len(calls) == 1 and chunk._cache_size() == 1
    # the restart mode, patience and tolerance are data: another setting and another key
    # reuse what was compiled
    ev.minimize(fit, LINE, jax.random.key(3), restarts="best", restart_patience=5, **kw)
    assert len(calls) == 1 and chunk._cache_size() == 1
    # without restarts the restart test is not compiled in: another search, compiled once
    ev.minimize(fit, LINE, jax.random.key(3), **kw)
    ev.minimize(fit, LINE, jax.random.key(4), **kw)
    assert len(calls) == 2
    # the Python loop's shared tell carries the restarts too: compiled once
    ev.minimize(fit, LINE, jax.random.key(3), restarts="random", loop="python", **kw)
    ev.minimize(fit, LINE, jax.random.key(4), restarts="best", loop="python", **kw)
    tell = search._shared_steps("CMA_ES", 8, 1, None, None, True).tell
    assert getattr(tell, "_cache_size")() == 1


def test_restarts_in_a_chunked_and_resumed_search_give_the_uninterrupted_numbers(tmp_path):
    kw: dict[str, Any] = dict(restarts="random", **TRAP)
    whole = ev.minimize(trap, LINE, jax.random.key(5), chunk_generations=30, **kw)
    path = tmp_path / "ckpt.npz"
    stop = ev.minimize(
        trap,
        LINE,
        jax.random.key(5),
        checkpoint=path,
        chunk_generations=30,
        callback=lambda done, best: done >= 150,
        **kw,
    )
    assert stop.num_generations == 150
    res = ev.minimize(trap, LINE, jax.random.key(5), checkpoint=path, chunk_generations=30, **kw)
    assert res.num_restarts == whole.num_restarts
    np.testing.assert_array_equal(res.history["best_fitness"], whole.history["best_fitness"])


def test_best_restarts_do_not_lose_a_converged_answer():
    # a search that converges: a restart at the best point keeps it (collapse triggers it)
    sphere = {f"x{i}": ev.Real(-3.0, 4.0) for i in range(3)}

    def f(p, key):
        return sum((v - 0.5) ** 2 for v in p.values())

    res = ev.minimize(f, sphere, jax.random.key(0), num_generations=150, restarts="best")
    assert res.num_restarts >= 1 and res.best_fitness < 1e-9
    assert res.mean_params is not None
    np.testing.assert_allclose(list(res.mean_params.values()), 0.5, atol=1e-3)


def test_restart_arguments_are_checked():
    kw: dict[str, Any] = dict(population_size=8, num_generations=4)
    cases: tuple[tuple[dict[str, Any], str], ...] = (
        (dict(restarts="ipop"), "restarts"),
        (dict(restarts=True), "restarts"),
        (dict(restart_patience=0), "restart_patience"),
        (dict(restart_tol=-0.1), "restart_tol"),
        (dict(restarts="random", strategy="PSO"), "restarts"),
    )
    for bad, arg in cases:
        with pytest.raises(ArgumentError) as e:
            ev.minimize(trap, LINE, jax.random.key(0), **kw, **bad)
        assert e.value.argument == arg
    assert ev.default_restart_patience(13, 16) == 10 + 9


# --- Choice encodings ---------------------------------------------------------------------
def test_choice_encodings_decode_every_option_and_round_trip():
    for enc, width in (("index", 1), ("onehot", 4)):
        sp = ev.Space({"c": ev.Choice(["a", "b", "c", "d"], encoding=enc)})
        assert sp.dim == width
        for v in "abcd":
            assert sp.to_python(sp.decode(sp.encode({"c": v}))) == {"c": v}
    # index: equal bins of the folded coordinate
    sp = ev.Space({"c": ev.Choice([0.5, 1.0, 2.0])})
    got = [sp.to_python(sp.decode(jnp.array([u])))["c"] for u in (0.0, 0.3, 0.34, 0.66, 0.67, 1.0)]
    assert got == [0.5, 0.5, 1.0, 1.0, 2.0, 2.0]
    assert sp.to_python(sp.decode(jnp.array([-0.1])))["c"] == 0.5  # reflected into the box
    with pytest.raises(ArgumentError) as e:
        ev.Space({"c": ev.Choice(["a", "b"], encoding="binary")})
    assert e.value.argument == "c"


def test_the_index_encoding_finds_the_choices_on_a_mixed_space():
    # a flat fitness in each Choice but at its right option: found on every key tried
    space = {
        "x": ev.Real(1e-3, 10.0, log=True),
        "kind": ev.Choice(["a", "b", "c", "d", "e"]),
        "m": ev.Choice([0.5, 1.0, 2.0]),
    }

    def f(p, key):
        return jnp.log10(p["x"] / 0.1) ** 2 + 2.0 * (p["kind"] != 3) + 2.0 * (p["m"] != 1.0)

    for seed in range(4):
        res = ev.minimize(f, space, jax.random.key(seed), population_size=16, num_generations=40)
        assert res.best_params["kind"] == "d" and res.best_params["m"] == 1.0
        assert res.best_fitness < 1e-3
