"""`idf.evolve.minimize`: known optima, mixed spaces, keys, compilations, host path, resume."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import count_traces

import idf_jax as idf
from idf_jax._checks import ArgumentError

ev = idf.evolve


def sphere(p, key):
    return sum((v - 0.5) ** 2 for v in p.values())


def rosenbrock(p, key):
    x = jnp.stack([p[f"x{i}"] for i in range(4)])
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


SPHERE = {f"x{i}": ev.Real(-3.0, 4.0) for i in range(3)}


def test_sphere_known_optimum():
    res = ev.minimize(sphere, SPHERE, jax.random.key(0), num_generations=40)
    assert res.traceable and res.strategy == "CMA_ES"
    assert res.best_fitness < 1e-6
    np.testing.assert_allclose(list(res.best_params.values()), 0.5, atol=1e-3)
    assert res.num_generations == 40 and res.history["best_fitness"].shape == (40,)
    assert np.all(np.diff(res.history["best_fitness"]) <= 0)  # best so far never rises
    assert res.num_evaluations == 40 * ev.default_population_size(3)


def test_mean_params_is_the_search_distribution_decoded():
    # CMA-ES's mean converges on the optimum; decoded with the space's types and bounds
    res = ev.minimize(sphere, SPHERE, jax.random.key(0), num_generations=40)
    np.testing.assert_allclose(list(res.mean_params.values()), 0.5, atol=1e-3)
    mixed = ev.minimize(_mixed, MIXED, jax.random.key(2), population_size=16, num_generations=60)
    m = mixed.mean_params
    assert isinstance(m["n"], int) and isinstance(m["x"], float)
    assert m["kind"] in ("a", "b", "c") and m["m"] in (0.5, 2.0) and 1e-3 <= m["x"] <= 10.0
    assert m["n"] == 3 and m["kind"] == "b" and m["m"] == 2.0


def test_mean_params_averages_out_a_noisy_fitness():
    # on a noisy fitness best_fitness is the luckiest draw (far below the true minimum, 0)
    # while the mean is fitted to every evaluation: it lands near the optimum
    def noisy(p, key):
        return (p["x"] - 1.0) ** 2 + 0.3 * jax.random.normal(key)

    res = ev.minimize(
        noisy, {"x": ev.Real(-4.0, 4.0)}, jax.random.key(3), population_size=16, num_generations=60
    )
    assert res.best_fitness < -0.5
    assert abs(res.mean_params["x"] - 1.0) < 0.3


def test_mean_params_stays_in_the_space_when_the_spread_collapses():
    # A flat fitness (every candidate near 0 scores 0) collapses CMA-ES's spread to 0 and
    # its update then gives a NaN mean; the search keeps the last finite one, so the
    # answer decodes to a point of the space (NaN once decoded n = 0, outside Int(1, 8)).
    space = {"x": ev.Real(-5.0, 5.0), "n": ev.Int(1, 8)}
    res = ev.minimize(
        lambda p, k: jnp.round(p["x"]) ** 2 + 0.0 * p["n"],
        space,
        jax.random.key(0),
        num_generations=300,
    )
    m = res.mean_params
    assert res.best_fitness == 0.0
    assert np.isfinite(m["x"]) and abs(m["x"]) < 0.5 and 1 <= m["n"] <= 8


def test_rosenbrock_known_optimum():
    space = {f"x{i}": ev.Real(-2.0, 2.0) for i in range(4)}
    res = ev.minimize(rosenbrock, space, jax.random.key(1), population_size=16, num_generations=250)
    assert res.best_fitness < 1e-3
    np.testing.assert_allclose([res.best_params[f"x{i}"] for i in range(4)], 1.0, atol=0.05)


def _mixed(p, key):
    # optimum: x = 0.1 (log scale), n = 3, kind = "b", m = 2.0 -> fitness 0
    return (
        jnp.log10(p["x"] / 0.1) ** 2
        + (p["n"] - 3) ** 2
        + 4.0 * (p["kind"] != 1)
        + 4.0 * (p["m"] != 2.0)
    )


MIXED = {
    "x": ev.Real(1e-3, 10.0, log=True),
    "n": ev.Int(1, 6),
    "kind": ev.Choice(["a", "b", "c"]),
    "m": ev.Choice([0.5, 2.0]),
}


def test_mixed_real_int_choice():
    res = ev.minimize(_mixed, MIXED, jax.random.key(2), population_size=16, num_generations=60)
    p = res.best_params
    assert p["n"] == 3 and p["kind"] == "b" and p["m"] == 2.0
    assert isinstance(p["n"], int) and isinstance(p["x"], float)
    assert abs(np.log10(p["x"] / 0.1)) < 0.05


def test_same_key_same_search_other_key_other_search():
    a = ev.minimize(sphere, SPHERE, jax.random.key(3), num_generations=40)
    b = ev.minimize(sphere, SPHERE, jax.random.key(3), num_generations=40)
    c = ev.minimize(sphere, SPHERE, jax.random.key(4), num_generations=40)
    assert a.best_params == b.best_params and a.best_fitness == b.best_fitness
    np.testing.assert_array_equal(a.history["generation_mean"], b.history["generation_mean"])
    assert a.best_params != c.best_params


def test_one_compilation_per_search_even_when_chunked():
    fit, calls = count_traces(sphere)
    res = ev.minimize(
        fit,
        SPHERE,
        jax.random.key(5),
        num_generations=9,
        chunk_generations=2,
        callback=lambda done, best: None,
    )
    assert res.num_generations == 9
    # one trace of the fitness: detection's trace is the one the compiled chunk lowers
    # (reused 5 times)
    assert len(calls) == 1
    # a new key and new strategy parameters are data: the compiled search is reused
    again = ev.minimize(
        fit,
        SPHERE,
        jax.random.key(6),
        num_generations=9,
        chunk_generations=2,
        init_std=0.1,
        callback=lambda done, best: None,
    )
    assert len(calls) == 1 and again.best_params != res.best_params


def test_host_callback_path_matches_and_gets_python_values():
    seen = []

    def host(p, key):
        seen.append(p)
        # NumPy on the inputs: not traceable
        return float(
            np.log10(p["x"] / 0.1) ** 2
            + (p["n"] - 3) ** 2
            + 4.0 * (p["kind"] != "b")
            + 4.0 * (p["m"] != 2.0)
        )

    res = ev.minimize(host, MIXED, jax.random.key(2), population_size=16, num_generations=60)
    assert not res.traceable
    assert isinstance(seen[-1]["kind"], str) and isinstance(seen[-1]["n"], int)
    assert res.best_params["kind"] == "b" and res.best_params["n"] == 3
    jax_res = ev.minimize(_mixed, MIXED, jax.random.key(2), population_size=16, num_generations=60)
    assert res.best_params["kind"] == jax_res.best_params["kind"]
    assert res.best_params["n"] == jax_res.best_params["n"]


def test_traceable_true_on_host_code_is_a_clear_error():
    with pytest.raises(ArgumentError, match="traceable=False") as e:
        ev.minimize(
            lambda p, k: float(np.asarray(p["x0"])),
            SPHERE,
            jax.random.key(0),
            traceable=True,
            num_generations=2,
        )
    assert e.value.argument == "fitness_fn"


def test_a_fitness_that_is_not_scalar_is_refused_on_both_paths():
    vector = lambda p, k: jnp.stack([p["x0"], p["x1"]])  # noqa: E731
    for traceable in (None, False):
        with pytest.raises(ArgumentError, match="scalar") as e:
            ev.minimize(vector, SPHERE, jax.random.key(0), traceable=traceable, num_generations=2)
        assert e.value.argument == "fitness_fn"


@pytest.mark.parametrize("strategy", ["CMA_ES", "PSO"])
def test_the_fitness_is_traced_once_per_search_with_a_legacy_key(strategy):
    # a uint32 key (jax.random.PRNGKey) and a population-based strategy: detection traces
    # at the shapes the search calls the evaluation with, so nothing is traced twice
    fit, calls = count_traces(rosenbrock)
    space = {f"x{i}": ev.Real(-2.0, 2.0) for i in range(4)}
    res = ev.minimize(
        fit, space, jax.random.PRNGKey(2), strategy=strategy, population_size=8, num_generations=6
    )
    assert res.traceable and len(calls) == 1
    assert np.isfinite(res.best_fitness)


def test_checkpoint_resume_equals_uninterrupted(tmp_path):
    kw = dict(num_generations=12, chunk_generations=3)
    full = ev.minimize(
        rosenbrock,
        {f"x{i}": ev.Real(-2.0, 2.0) for i in range(4)},
        jax.random.key(6),
        checkpoint=tmp_path / "full.ckpt",
        **kw,
    )
    path = tmp_path / "cut.ckpt"
    space = {f"x{i}": ev.Real(-2.0, 2.0) for i in range(4)}
    cut = ev.minimize(
        rosenbrock,
        space,
        jax.random.key(6),
        checkpoint=path,
        callback=lambda done, best: done >= 6,
        **kw,
    )
    assert cut.num_generations == 6 and path.exists()
    resumed = ev.minimize(rosenbrock, space, jax.random.key(6), checkpoint=path, **kw)
    assert resumed.num_generations == 12
    assert resumed.best_fitness == full.best_fitness
    assert resumed.best_params == full.best_params
    np.testing.assert_array_equal(resumed.history["best_fitness"], full.history["best_fitness"])
    with pytest.raises(ValueError, match="different run"):
        ev.minimize(rosenbrock, space, jax.random.key(7), checkpoint=path, **kw)


def test_other_strategies_from_evosax():
    for name in ("SNES", "PSO"):
        res = ev.minimize(sphere, SPHERE, jax.random.key(8), strategy=name, num_generations=40)
        assert res.best_fitness < 0.05, name
        # a distribution mean only where the strategy has one
        assert (res.mean_params is None) == (name == "PSO"), name
    assert "CMA_ES" in ev.available_strategies()


@pytest.mark.parametrize(
    "space, argument",
    [
        ({"a": ev.Real(1.0, 1.0)}, "a"),
        ({"a": ev.Real(2.0, 1.0)}, "a"),
        ({"a": ev.Real(0.0, 1.0, log=True)}, "a"),
        ({"b": ev.Int(3, 3)}, "b"),
        ({"b": ev.Int(0, 2.5)}, "b"),
        ({"c": ev.Choice([])}, "c"),
        ({"d": (0, 1)}, "d"),
        ({}, "space"),
    ],
)
def test_bad_spaces_name_the_argument(space, argument):
    with pytest.raises(ArgumentError) as e:
        ev.minimize(sphere, space, jax.random.key(0), num_generations=2)
    assert e.value.argument == argument


def test_batch_size_evaluates_the_same_population_in_groups():
    fit, calls = count_traces(sphere)
    kw = dict(population_size=8, num_generations=12)
    whole = ev.minimize(sphere, SPHERE, jax.random.key(3), **kw)
    for b in (1, 4):
        res = ev.minimize(fit, SPHERE, jax.random.key(3), batch_size=b, **kw)
        # the same candidates (a vmap and a lax.map of one function agree to rounding)
        np.testing.assert_allclose(res.best_fitness, whole.best_fitness, rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(
            res.history["best_fitness"], whole.history["best_fitness"], rtol=1e-4, atol=1e-7
        )
    # per batch size one trace (detection's, lowered by the compiled search)
    assert len(calls) == 2
    ev.minimize(fit, SPHERE, jax.random.key(4), batch_size=4, **kw)
    assert len(calls) == 2
    with pytest.raises(ArgumentError) as e:
        ev.minimize(sphere, SPHERE, jax.random.key(0), batch_size=3, **kw)
    assert e.value.argument == "batch_size" and "divide" in str(e.value)
    with pytest.raises(ArgumentError) as e:
        ev.minimize(sphere, SPHERE, jax.random.key(0), batch_size=0, **kw)
    assert e.value.argument == "batch_size"


def test_python_loop_matches_the_scan_and_shares_ask_tell_between_searches():
    from idf_jax.evolve import search

    kw = dict(population_size=8, num_generations=10)
    scan = ev.minimize(sphere, SPHERE, jax.random.key(9), **kw)
    fit, calls = count_traces(sphere)
    res = ev.minimize(fit, SPHERE, jax.random.key(9), loop="python", **kw)
    assert len(calls) == 1  # detection's trace is the compiled evaluation's
    np.testing.assert_allclose(res.best_fitness, scan.best_fitness, rtol=1e-5, atol=1e-9)
    for name in ("best_fitness", "generation_best", "generation_mean"):
        np.testing.assert_allclose(res.history[name], scan.history[name], rtol=1e-4, atol=1e-7)
    # chunked (a callback): the same numbers, the history written per chunk
    chunked = ev.minimize(
        fit, SPHERE, jax.random.key(9), loop="python", callback=lambda d, b: None, **kw
    )
    np.testing.assert_array_equal(chunked.history["best_fitness"], res.history["best_fitness"])
    # another fitness and another number of generations: the same compiled ask / tell
    steps = search._shared_steps("CMA_ES", 8, 3, None, None)
    before = steps.tell._cache_size()
    ev.minimize(
        rosenbrock_3, SPHERE, jax.random.key(1), loop="python", population_size=8, num_generations=4
    )
    assert steps.tell._cache_size() == before == 1
    # the strategy's init and the read-out of the best point are shared too: a search
    # with a new fitness and another number of generations compiles its evaluation only
    assert steps.init._cache_size() == 1
    assert search._shared_decode(ev.Space(SPHERE))._cache_size() == 1
    with pytest.raises(ArgumentError) as e:
        ev.minimize(sphere, SPHERE, jax.random.key(0), loop="unrolled")
    assert e.value.argument == "loop"


def rosenbrock_3(p, key):
    x = jnp.stack([p[f"x{i}"] for i in range(3)])
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def test_chunks_that_divide_the_generations_give_the_unchunked_numbers():
    plain = ev.minimize(sphere, SPHERE, jax.random.key(8), num_generations=12)
    for chunk in (3, 5):  # 3 divides 12 (no mask), 5 does not (the last chunk masked)
        res = ev.minimize(
            sphere, SPHERE, jax.random.key(8), num_generations=12, chunk_generations=chunk
        )
        assert res.num_generations == 12
        # the same search; XLA may round a chunk's loop differently from the whole one
        np.testing.assert_allclose(
            res.history["best_fitness"], plain.history["best_fitness"], rtol=1e-4, atol=1e-7
        )


def test_bad_arguments():
    with pytest.raises(ArgumentError) as e:
        ev.minimize(sphere, SPHERE, jax.random.key(0), strategy="NoSuchES")
    assert e.value.argument == "strategy" and "CMA_ES" in str(e.value)
    with pytest.raises(ArgumentError) as e:
        ev.minimize(sphere, SPHERE, 0)
    assert e.value.argument == "key"
    with pytest.raises(ArgumentError) as e:
        ev.minimize(sphere, SPHERE, jax.random.key(0), num_generations=0)
    assert e.value.argument == "num_generations"
    with pytest.raises(ArgumentError) as e:
        ev.minimize(lambda p, k: jnp.zeros(3), SPHERE, jax.random.key(0))
    assert e.value.argument == "fitness_fn"
    with pytest.raises(ArgumentError) as e:
        ev.minimize(sphere, SPHERE, jax.random.key(0), archive=ev.MapElites.make(2, [(0, 1)]))
    assert e.value.argument == "descriptor_fn"


def test_space_encode_decode_round_trip():
    sp = ev.Space(MIXED)
    values = {"x": 0.1, "n": 5, "kind": "c", "m": 0.5}
    back = sp.to_python(sp.decode(sp.encode(values)))
    assert back["n"] == 5 and back["kind"] == "c" and back["m"] == 0.5
    assert abs(back["x"] - 0.1) < 1e-5
    # outside the box: reflected back inside, never out of range
    far = sp.to_python(sp.decode(jnp.full((sp.dim,), 7.3)))
    assert 1e-3 <= far["x"] <= 10.0 and 1 <= far["n"] <= 6
