"""MAP-Elites insertion rules and the archive kept by `minimize`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import idf_jax as idf
from idf_jax._checks import ArgumentError

ev = idf.evolve
GRID = ev.MapElites.make((2, 3), [(0.0, 1.0), (0.0, 3.0)])


def _insert(arch, f, d):
    z = jnp.arange(len(f), dtype=jnp.float32)[:, None] * jnp.ones((1, 2))  # solution i = [i, i]
    return ev.archive_insert(
        GRID, arch, z, jnp.asarray(f, jnp.float32), jnp.asarray(d, jnp.float32)
    )


def test_cell_keeps_the_best_and_ties_keep_the_incumbent():
    arch = ev.Archive.empty(GRID, 2)
    assert arch.fitness.shape == (6,) and not bool(arch.filled.any())
    # three candidates in cell (0, 0): the lowest fitness wins; one in cell (1, 2)
    arch = _insert(arch, [3.0, 1.0, 2.0, 5.0], [[0.1, 0.1], [0.2, 0.5], [0.3, 0.9], [0.9, 2.9]])
    np.testing.assert_array_equal(np.asarray(arch.filled), [1, 0, 0, 0, 0, 1])
    assert float(arch.fitness[0]) == 1.0 and float(arch.solution[0, 0]) == 1.0
    assert float(arch.fitness[5]) == 5.0
    np.testing.assert_allclose(np.asarray(arch.descriptor[0]), [0.2, 0.5])
    # a worse candidate does not replace; an equal one does not either (incumbent kept)
    arch2 = _insert(arch, [4.0, 1.0], [[0.0, 0.0], [0.1, 0.2]])
    assert float(arch2.fitness[0]) == 1.0 and float(arch2.solution[0, 0]) == 1.0
    # a strictly better one replaces
    arch3 = _insert(arch2, [9.0, 0.5], [[0.6, 1.5], [0.1, 0.2]])
    assert float(arch3.fitness[0]) == 0.5 and float(arch3.solution[0, 0]) == 1.0
    assert float(arch3.fitness[4]) == 9.0  # cell (1, 1) filled by the first candidate


def test_ties_within_a_generation_go_to_the_first_and_bad_values_never_enter():
    arch = ev.Archive.empty(GRID, 2)
    arch = _insert(
        arch,
        [2.0, 2.0, np.nan, np.inf, 0.1],
        [[0.1, 0.1], [0.2, 0.2], [0.7, 0.1], [0.7, 0.1], [np.nan, 0.1]],
    )
    assert float(arch.fitness[0]) == 2.0 and float(arch.solution[0, 0]) == 0.0
    assert int(arch.filled.sum()) == 1  # NaN / inf fitness and NaN descriptors are dropped


def test_out_of_range_descriptors_clip_into_border_cells():
    arch = _insert(ev.Archive.empty(GRID, 2), [1.0, 2.0], [[-5.0, -5.0], [7.0, 99.0]])
    np.testing.assert_array_equal(np.flatnonzero(np.asarray(arch.filled)), [0, 5])


def test_insertion_is_traceable():
    f = jax.jit(lambda a, z, fit, d: ev.archive_insert(GRID, a, z, fit, d))
    a = f(
        ev.Archive.empty(GRID, 2),
        jnp.zeros((3, 2)),
        jnp.array([1.0, 2.0, 3.0]),
        jnp.array([[0.1, 0.1], [0.9, 0.1], [0.9, 2.9]]),
    )
    assert int(a.filled.sum()) == 3


def test_bad_grids():
    with pytest.raises(ArgumentError) as e:
        ev.MapElites.make(0, [(0, 1)])
    assert e.value.argument == "bins"
    with pytest.raises(ArgumentError) as e:
        ev.MapElites.make(3, [(1, 1)])
    assert e.value.argument == "ranges"
    with pytest.raises(ArgumentError) as e:
        ev.MapElites.make((3, 3), [(0, 1)])
    assert e.value.argument == "bins"


@pytest.mark.parametrize("loop", ["scan", "python"])
def test_minimize_keeps_an_archive_next_to_the_best(loop):
    # trade-off: fitness prefers n = 1 but the archive keeps the best x for every n
    space = {"x": ev.Real(-2.0, 2.0), "n": ev.Int(1, 4)}
    grid = ev.MapElites.make(4, [(0.5, 4.5)])
    res = ev.minimize(
        lambda p, k: (p["x"] - 1.0) ** 2 + p["n"],
        space,
        jax.random.key(0),
        population_size=16,
        num_generations=30,
        archive=grid,
        descriptor_fn=lambda p, out: (p["n"],),
        loop=loop,
    )
    assert res.best_params["n"] == 1 and abs(res.best_params["x"] - 1.0) < 1e-2
    cells = {e["cell"][0]: e for e in res.archive}
    assert set(cells) == {0, 1, 2, 3}
    for i, e in cells.items():
        assert e["params"]["n"] == i + 1
        assert e["fitness"] == pytest.approx((e["params"]["x"] - 1.0) ** 2 + i + 1, abs=1e-5)
    assert cells[0]["fitness"] == pytest.approx(res.best_fitness)
