"""sample_equilibrium's basin hopping, parallel tempering and population search:
exact minima, reproducibility, first-hit accounting, float64 read-out, jit / vmap /
implicit gradients, one compilation per structure, known answers, bad arguments."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import double_well_minimum, tilted_double_well

import idf_jax as idf
from idf_jax._checks import ArgumentError

SEARCH = ("basin_hopping", "parallel_tempering", "population")


E_MIN, X_MIN = double_well_minimum()
WRONG_WELL = jnp.tile(jnp.array([[0.96, 0.3]]), (8, 1))  # every chain in the local well


def _run(method, key=0, x0=WRONG_WELL, **kw):
    kw.setdefault("num_steps", 1500)
    return idf.sample_equilibrium(
        tilted_double_well,
        jax.random.key(key),
        x0,
        method=method,
        target=E_MIN,
        target_tol=1e-5,
        **kw,
    )


@pytest.mark.parametrize("method", SEARCH + ("auto",))
def test_each_method_finds_the_exact_minimum_from_the_wrong_well(method):
    res = _run(method)
    assert float(res.best_energy) == pytest.approx(E_MIN, abs=1e-5)
    np.testing.assert_allclose(np.asarray(res.best_position), [X_MIN, 0.0], atol=2e-3)
    assert int(res.num_reached) >= 1
    # the starts relax into the wrong well: the target is first reached by a hop
    assert int(res.first_hit_hop) >= 1
    hops = np.asarray(res.hops)
    assert hops.shape == (8,) and np.all(hops >= 1)
    assert int(res.num_minimisations) == int(hops.sum()) + 2 * 8  # first + final per chain
    assert float(res.num_evaluations) >= 1500 * 8  # every chain spends its budget
    assert np.all(np.asarray(res.step_size) > 0)
    assert res.search_temperature is not None and np.all(np.asarray(res.search_temperature) > 0)


def test_reproducible_from_the_key():
    a, b, c = (
        _run("parallel_tempering", 3),
        _run("parallel_tempering", 3),
        _run("parallel_tempering", 4),
    )
    np.testing.assert_array_equal(np.asarray(a.energy), np.asarray(b.energy))
    np.testing.assert_array_equal(np.asarray(a.final_position), np.asarray(b.final_position))
    np.testing.assert_array_equal(np.asarray(a.hops), np.asarray(b.hops))
    assert not np.array_equal(np.asarray(a.final_position), np.asarray(c.final_position))


def test_chunking_does_not_change_the_search():
    a = _run("basin_hopping", 5, chunk_hops=1)
    b = _run("basin_hopping", 5, chunk_hops=1000)
    np.testing.assert_array_equal(np.asarray(a.final_position), np.asarray(b.final_position))


def test_first_hit_accounting():
    res = _run("basin_hopping", 1)
    n = 8
    hop = int(res.first_hit_hop)
    assert hop >= 1
    assert 0 < float(res.hit_evaluations) <= float(res.num_evaluations)
    assert n <= float(res.hit_minimisations) <= float(res.num_minimisations)
    assert 0.0 < float(res.time_to_target) <= float(res.wall_time)
    assert float(res.fraction_reached) == pytest.approx(int(res.num_reached) / n)
    assert int(res.num_reached) == int(np.sum(np.asarray(res.energy) <= E_MIN + 1e-5))

    # an unreachable target: nothing is reached and nothing is counted
    never = idf.sample_equilibrium(
        tilted_double_well,
        jax.random.key(1),
        WRONG_WELL,
        num_steps=300,
        method="basin_hopping",
        target=E_MIN - 1.0,
    )
    assert int(never.first_hit_hop) == -1 and float(never.hit_evaluations) == -1.0
    assert np.isnan(float(never.time_to_target)) and float(never.fraction_reached) == 0.0

    # stop_at_target ends the search at the end of the chunk of the first hit
    early = _run("basin_hopping", 1, num_steps=50_000, stop_at_target=True, chunk_hops=1)
    assert int(early.first_hit_hop) >= 1
    assert int(np.max(np.asarray(early.hops))) == int(early.first_hit_hop)


def test_first_minima_count_as_hop_zero():
    # both wells among the starts (same shapes as WRONG_WELL: no new compilation)
    x0 = jnp.array([[-1.2, 0.1], [0.9, 0.2]] * 4)
    res = _run("basin_hopping", x0=x0, num_steps=300)
    assert int(res.first_hit_hop) == 0
    assert float(res.hit_minimisations) == 8.0


def test_float64_final_relaxation():
    # minimum of sum (x - 0.5)^2 + 0.1 x^4 per coordinate, known to 1e-12
    energy = lambda x: jnp.sum((x - 0.5) ** 2 + 0.1 * x**4)  # noqa: E731
    root = np.roots([0.4, 0.0, 2.0, -1.0])
    x_star = float(root[np.abs(root.imag) < 1e-12].real[0])
    e_min = 3 * ((x_star - 0.5) ** 2 + 0.1 * x_star**4)
    x0 = jax.random.normal(jax.random.key(0), (4, 3))
    res = idf.sample_equilibrium(
        energy, jax.random.key(1), x0, num_steps=200, method="basin_hopping", precision="float64"
    )
    assert res.energy.dtype == jnp.float64 and res.position.dtype == jnp.float64
    assert abs(float(res.best_energy) - e_min) < 1e-11
    np.testing.assert_allclose(np.asarray(res.best_position), x_star, atol=1e-6)
    assert not jax.config.jax_enable_x64  # scoped: switched off again
    # float32 search alone resolves the minimum only to float32 rounding
    r32 = idf.sample_equilibrium(
        energy, jax.random.key(1), x0, num_steps=200, method="basin_hopping"
    )
    assert r32.energy.dtype == jnp.float32
    with pytest.raises(ArgumentError, match="precision"):
        idf.sample_equilibrium(energy, jax.random.key(1), x0, num_steps=20, precision="float16")


class _Counted:
    """E(x; theta) whose Python calls (= traces) are counted."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        return tilted_double_well(x)


def test_one_compilation_per_structure():
    energy = _Counted()
    kw = dict(num_steps=300, method="parallel_tempering")
    idf.sample_equilibrium(energy, jax.random.key(0), WRONG_WELL, target=E_MIN, **kw)
    traced = energy.calls
    assert traced > 0
    # new key, new starts, new target, new temperatures: data, no new trace
    x1 = jax.random.normal(jax.random.key(9), (8, 2))
    idf.sample_equilibrium(
        energy, jax.random.key(1), x1, target=E_MIN + 0.1, temperature=jnp.full((8,), 0.2), **kw
    )
    assert energy.calls == traced


def test_jit_vmap_and_implicit_gradient():
    def energy(x, theta):
        return (x[0] ** 2 - 1.0) ** 2 + theta * x[0] + x[1] ** 2

    def best(theta, key):
        res = idf.sample_equilibrium(
            lambda x: energy(x, theta), key, WRONG_WELL, num_steps=1500, method="basin_hopping"
        )
        return res.best_energy, res.best_position

    e, x = jax.jit(best)(0.3, jax.random.key(0))
    assert float(e) == pytest.approx(E_MIN, abs=1e-5)
    es, _ = jax.vmap(best, in_axes=(None, 0))(0.3, jax.random.split(jax.random.key(1), 2))
    np.testing.assert_allclose(np.asarray(es), E_MIN, atol=1e-5)
    # envelope theorem: dE*/dtheta = dE/dtheta at x* = x*_0
    g = jax.grad(lambda t: best(t, jax.random.key(0))[0])(0.3)
    assert float(g) == pytest.approx(X_MIN, abs=1e-3)


def test_bad_arguments_raise_argument_error():
    key = jax.random.key(0)
    x0 = WRONG_WELL
    with pytest.raises(ArgumentError, match="method"):
        idf.sample_equilibrium(tilted_double_well, key, x0, num_steps=5, method="newton")

    def wrong_shape(key, x, scale):
        return jnp.concatenate([x, x])

    with pytest.raises(ArgumentError, match="moves") as err:
        idf.sample_equilibrium(
            tilted_double_well, key, x0, num_steps=5, method="basin_hopping", moves=wrong_shape
        )
    assert err.value.argument == "moves"
    with pytest.raises(ArgumentError, match="moves"):
        idf.sample_equilibrium(
            tilted_double_well, key, x0, num_steps=5, method="basin_hopping", moves=lambda k, x: x
        )
    with pytest.raises(ArgumentError, match="moves"):
        idf.sample_equilibrium(tilted_double_well, key, x0, num_steps=5, moves=[])
    with pytest.raises(ArgumentError, match="temperature"):
        idf.sample_equilibrium(
            tilted_double_well,
            key,
            x0,
            num_steps=5,
            method="parallel_tempering",
            temperature=jnp.ones(3),
        )
    with pytest.raises(ArgumentError, match="schedule"):
        idf.sample_equilibrium(
            tilted_double_well, key, x0, num_steps=5, method="basin_hopping", schedule=0.1
        )
    with pytest.raises(ArgumentError, match="relax"):
        idf.sample_equilibrium(
            tilted_double_well, key, x0, num_steps=5, method="population", relax=False
        )


def test_checkpoint_resume(tmp_path):
    path = str(tmp_path / "search.npz")
    full = _run("parallel_tempering", 2, num_steps=800)
    part = _run("parallel_tempering", 2, num_steps=800, checkpoint=path)
    np.testing.assert_array_equal(np.asarray(part.final_position), np.asarray(full.final_position))
    # a finished checkpoint resumes at its end: the same result without new hops
    again = _run("parallel_tempering", 2, num_steps=800, checkpoint=path)
    np.testing.assert_array_equal(np.asarray(again.final_position), np.asarray(full.final_position))
    with pytest.raises(ValueError, match="different run"):
        _run("parallel_tempering", 3, num_steps=800, checkpoint=path)


def test_default_temperature_scale_ignores_clashing_minima():
    # first minima: a physical band of spread 1 and, above it, steric clashes at ~1e3
    # (over half of AB-34's random starts relax into such states): the spread that sets
    # the default ladder is the band's, not the clashes'
    from idf_jax.thermo.basin_hopping import _robust_spread

    band = np.random.default_rng(0).normal(-5.0, 1.0, 4000)
    clash = 1000.0 + 300.0 * np.random.default_rng(1).random(6000)
    s = float(_robust_spread(jnp.asarray(np.concatenate([band, clash]), jnp.float32)))
    assert s == pytest.approx(1.0, rel=0.1)
    # without outliers it is IQR / 1.349; equal energies fall back to 1% of |median|
    plain = float(_robust_spread(jnp.asarray(band, jnp.float32)))
    q25, q75 = np.percentile(band, [25, 75])
    assert plain == pytest.approx((q75 - q25) / 1.349, rel=1e-4)
    assert float(_robust_spread(jnp.full((16,), 200.0))) == pytest.approx(2.0)
