"""sample_equilibrium: known minima, constraints, projection, bad input, LJ13 (slow)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import idf_jax as idf
from idf_jax import constraints as C


def tilted_double_well(x):
    # E = (x0^2 - 1)^2 + 0.3 x0 + x1^2: global minimum near x0 = -1.04, local near +0.96.
    return (x[0] ** 2 - 1.0) ** 2 + 0.3 * x[0] + x[1] ** 2


def _global_min():
    roots = np.roots([4.0, 0.0, -4.0, 0.3])  # dE/dx0 = 4x^3 - 4x + 0.3
    roots = roots[np.isreal(roots)].real
    e = (roots**2 - 1) ** 2 + 0.3 * roots
    return float(e.min()), float(roots[np.argmin(e)])


def test_anneal_escapes_local_minimum_and_relaxes_to_global():
    e_min, x_min = _global_min()
    x0 = jnp.tile(jnp.array([[0.96, 0.0]]), (16, 1))  # all chains in the wrong well
    res = idf.sample_equilibrium(
        tilted_double_well,
        jax.random.key(0),
        x0,
        num_steps=400,
        schedule=idf.schedules.geometric(1.0, 1e-3),
        target=e_min,
        target_tol=1e-5,
    )
    assert res.energy.shape == (16,) and res.position.shape == (16, 2)
    assert float(res.best_energy) == pytest.approx(e_min, abs=1e-5)
    np.testing.assert_allclose(np.asarray(res.best_position), [x_min, 0.0], atol=2e-3)
    assert int(res.num_reached) >= 8
    assert int(res.num_reached) == int(np.sum(np.asarray(res.energy) <= e_min + 1e-5))
    # best per chain is never worse than where the chain ended
    assert np.all(
        np.asarray(res.energy)
        <= np.asarray(jax.vmap(tilted_double_well)(res.final_position)) + 1e-6
    )


def test_without_annealing_relaxation_stays_in_local_minimum():
    # Control: a cold constant schedule + relaxation cannot cross the barrier.
    e_min, _ = _global_min()
    x0 = jnp.tile(jnp.array([[0.96, 0.0]]), (8, 1))
    res = idf.sample_equilibrium(
        tilted_double_well,
        jax.random.key(0),
        x0,
        num_steps=50,
        schedule=1e-4,
        target=e_min,
        target_tol=1e-5,
    )
    assert int(res.num_reached) == 0
    assert float(res.best_energy) > e_min + 0.5


def test_default_schedule_starts_from_initial_energies_and_records():
    x0 = jax.random.normal(jax.random.key(3), (16, 2)) * 2.0
    res = idf.sample_equilibrium(
        tilted_double_well,
        jax.random.key(1),
        x0,
        num_steps=300,
        record_every=100,
        prerelax_steps=0,
    )
    e0 = np.asarray(jax.vmap(tilted_double_well)(x0))
    t0 = idf.anneal.default_start_temperature(e0, 2)
    # T at steps 99, 199, 299 of a geometric schedule from t0 to t0 * 1e-2
    ref = t0 * (1e-2) ** (np.array([99, 199, 299]) / 299)
    np.testing.assert_allclose(np.asarray(res.temperatures), ref, rtol=1e-4)
    assert res.energy_trace.shape == (16, 3)
    assert float(res.best_energy) == pytest.approx(_global_min()[0], abs=1e-4)


def test_box_projection_and_penalty():
    # Unconstrained minimum at (3, 3); box [-1, 1]^2 puts it at the corner (1, 1).
    def energy(x):
        return jnp.sum((x - 3.0) ** 2)

    x0 = jax.random.uniform(jax.random.key(0), (8, 2), minval=-1.0, maxval=1.0)
    res = idf.sample_equilibrium(
        energy,
        jax.random.key(1),
        x0,
        num_steps=200,
        constraints=[C.Box(-1.0, 1.0)],
        schedule=idf.schedules.geometric(1.0, 1e-3),
        prerelax_steps=0,
    )
    pos = np.asarray(res.position)
    assert np.all(pos <= 1.0 + 1e-6) and np.all(pos >= -1.0 - 1e-6)
    np.testing.assert_allclose(np.asarray(res.best_position), [1.0, 1.0], atol=1e-4)
    assert float(res.best_energy) == pytest.approx(8.0, abs=1e-3)
    assert np.all(np.asarray(res.violation) <= 1e-6)

    # Penalty mode: E + w * overshoot^2, minimum at 1 + 1/(1 + w) ... per coordinate:
    # d/dx [(x-3)^2 + w (x-1)^2] = 0 -> x = (3 + w) / (1 + w).
    w = 1e3
    res = idf.sample_equilibrium(
        energy,
        jax.random.key(1),
        x0,
        num_steps=200,
        constraints=[C.Box(-1.0, 1.0, weight=w, mode="penalty")],
        schedule=idf.schedules.geometric(1.0, 1e-3),
        prerelax_steps=0,
    )
    np.testing.assert_allclose(np.asarray(res.best_position), [(3 + w) / (1 + w)] * 2, atol=1e-3)


def test_projection_onto_sphere_known_minimum():
    # Minimise c . x on the unit sphere: minimum -|c| at x = -c / |c|.
    c = jnp.array([1.0, -2.0, 2.0])

    def energy(x):
        return jnp.dot(c, x)

    def sphere(x):
        return x / jnp.linalg.norm(x)

    x0 = jax.random.normal(jax.random.key(0), (8, 3))
    res = idf.sample_equilibrium(
        energy,
        jax.random.key(1),
        x0,
        num_steps=200,
        project=sphere,
        schedule=idf.schedules.geometric(0.5, 1e-4),
        prerelax_steps=0,
    )
    np.testing.assert_allclose(np.linalg.norm(np.asarray(res.position), axis=1), 1.0, atol=1e-5)
    assert float(res.best_energy) == pytest.approx(-3.0, abs=1e-4)
    np.testing.assert_allclose(np.asarray(res.best_position), -np.asarray(c) / 3.0, atol=1e-2)


def test_energy_max_and_dict_spec():
    cs = C.parse({"energy_max": 2.0, "box": (-1.0, 1.0)})
    assert isinstance(cs[0], C.EnergyMax) and isinstance(cs[1], C.Box)
    with pytest.raises(ValueError, match="unknown constraint name.*entropy_min|known names"):
        C.parse({"entropy_min": 1.0})
    with pytest.raises(ValueError, match="known names"):
        idf.sample_equilibrium(
            tilted_double_well,
            jax.random.key(0),
            jnp.zeros((2, 2)),
            num_steps=5,
            constraints={"temprature": 1.0},
        )


def test_inconsistent_shapes_and_bad_arguments():
    x0 = jnp.zeros((4, 2))
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="inconsistent"):
        idf.sample_equilibrium(
            tilted_double_well, key, x0, num_steps=5, constraints=[C.Box(jnp.zeros(3), 1.0)]
        )
    with pytest.raises(ValueError, match="inconsistent"):
        idf.sample_equilibrium(
            tilted_double_well,
            key,
            x0,
            num_steps=5,
            constraints=[C.Equality(lambda x: x, target=jnp.zeros(5))],
        )
    with pytest.raises(ValueError, match="num_steps"):
        idf.sample_equilibrium(tilted_double_well, key, x0, num_steps=0)
    with pytest.raises(ValueError, match="temperature"):
        idf.sample_equilibrium(tilted_double_well, key, x0, num_steps=5, schedule=-1.0)
    with pytest.raises(ValueError, match="relax"):
        idf.sample_equilibrium(tilted_double_well, key, x0, num_steps=5, relax="newton")
    with pytest.raises(ValueError, match="leading chain axis"):
        idf.sample_equilibrium(
            lambda p: jnp.sum(p["a"]) + jnp.sum(p["b"]),
            key,
            {"a": jnp.zeros((3, 2)), "b": jnp.zeros((4, 2))},
            num_steps=5,
        )
    with pytest.raises(ValueError, match="non-finite"):
        idf.sample_equilibrium(lambda x: jnp.nan * jnp.sum(x), key, x0, num_steps=5)
    with pytest.raises(ValueError, match="non-finite energy or gradient"):
        idf.sample_equilibrium(lambda x: jnp.sqrt(jnp.sum(x**2)), key, x0, num_steps=5)


def test_pytree_states():
    # A PyTree state; the quadratic bowl's minimum is exact: E = 0 at a = 1, b = -2.
    def energy(p):
        return jnp.sum((p["a"] - 1.0) ** 2) + 2.0 * jnp.sum((p["b"] + 2.0) ** 2)

    x0 = {"a": jnp.zeros((4, 3)), "b": jnp.zeros((4, 2))}
    res = idf.sample_equilibrium(
        energy,
        jax.random.key(0),
        x0,
        num_steps=20,
        relax_steps=300,
        schedule=1e-3,
        prerelax_steps=0,
    )
    assert float(res.best_energy) == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(np.asarray(res.best_position["a"]), 1.0, atol=1e-3)
    np.testing.assert_allclose(np.asarray(res.best_position["b"]), -2.0, atol=1e-3)


def test_relax_module_fire_and_lbfgs_agree_on_quadratic():
    a = jnp.array([1.0, 4.0, 9.0])

    def energy(x):
        return 0.5 * jnp.sum(a * (x - 1.0) ** 2)

    x0 = jax.random.normal(jax.random.key(0), (5, 3))
    for method in ("fire", "lbfgs"):
        x, e = idf.relax(energy, x0, method=method, num_steps=300, step_size=0.1)
        np.testing.assert_allclose(np.asarray(x), 1.0, atol=1e-3)
        np.testing.assert_allclose(np.asarray(e), 0.0, atol=1e-6)
    lam = idf.thermo.relax.max_curvature(energy, x0)
    np.testing.assert_allclose(np.asarray(lam), 9.0, rtol=0.02)


# ---------------------------------------------------------------- LJ13 (slow)

N_LJ = 13
_I, _J = np.triu_indices(N_LJ, 1)


def lj_energy(x):
    """Plain-autodiff Lennard-Jones (epsilon = sigma = 1) plus a soft wall at r = 2.5
    from the centre of mass (zero for any compact cluster, so the minimum is unchanged)."""
    x = x.reshape(N_LJ, 3)
    d = x[_I] - x[_J]
    inv6 = 1.0 / jnp.sum(d**2, axis=-1) ** 3
    lj = jnp.sum(4.0 * (inv6**2 - inv6))
    r = jnp.linalg.norm(x - x.mean(0), axis=-1)
    return lj + 10.0 * jnp.sum(jnp.maximum(r - 2.5, 0.0) ** 2)


LJ13_MIN = -44.326801


@pytest.mark.slow
def test_lj13_global_minimum_from_random_starts():
    x0 = jax.random.uniform(jax.random.key(0), (64, 3 * N_LJ), minval=-1.3, maxval=1.3)
    res = idf.sample_equilibrium(
        lj_energy, jax.random.key(1), x0, num_steps=2000, target=LJ13_MIN, target_tol=1e-3
    )
    assert float(res.best_energy) == pytest.approx(LJ13_MIN, abs=1e-3)
    assert int(res.num_reached) >= 1


def test_constraint_penalties_jit_vmap_grad():
    # Penalised energies must stay differentiable (finite gradient inside the box, where
    # the overshoot is exactly zero) and batch under vmap / jit.
    cs = [C.Box(-1.0, 1.0, weight=10.0, mode="penalty"), C.EnergyMax(0.5, weight=2.0)]
    pen = C.apply_constraints(lambda x: jnp.sum(x**2), cs)
    g_in = jax.grad(pen)(jnp.array([0.1, -0.2]))
    np.testing.assert_allclose(np.asarray(g_in), [0.2, -0.4], rtol=1e-6)
    # Outside the box, with E = sum x^2 = 2.25 > 0.5: d/dx [E + 10 (x0 - 1)^2 + 2 (E - 0.5)^2]
    # = 2 x0 + 20 (x0 - 1) + 4 (E - 0.5) 2 x0.
    x = jnp.array([1.5, 0.0])
    e = 2.25
    ref = [2 * 1.5 + 20 * 0.5 + 2 * 2 * (e - 0.5) * 2 * 1.5, 0.0]
    np.testing.assert_allclose(np.asarray(jax.grad(pen)(x)), ref, rtol=1e-5)
    xs = jnp.array([[0.1, -0.2], [1.5, 0.0]])
    np.testing.assert_allclose(
        np.asarray(jax.jit(jax.vmap(pen))(xs)), [pen(xs[0]), pen(xs[1])], rtol=1e-6
    )


def test_float64_positions_anneal_and_relax():
    """Under x64 the whole pipeline (annealing scalars, curvature, FIRE, L-BFGS) is float64."""
    energy = lambda x: jnp.sum((x - 0.5) ** 2 + 0.1 * x**4)
    # per coordinate the minimum solves 2 (x - 0.5) + 0.4 x^3 = 0
    root = np.roots([0.4, 0.0, 2.0, -1.0])
    x_star = float(root[np.abs(root.imag) < 1e-12].real[0])
    e_min = 3 * ((x_star - 0.5) ** 2 + 0.1 * x_star**4)
    with jax.enable_x64(True):
        x0 = jax.random.normal(jax.random.key(0), (8, 3), jnp.float64)
        for method in ("fire", "lbfgs"):
            r = idf.sample_equilibrium(energy, jax.random.key(1), x0, num_steps=200, relax=method)
            assert r.position.dtype == jnp.float64 and r.energy.dtype == jnp.float64
            np.testing.assert_allclose(float(r.best_energy), e_min, rtol=0, atol=1e-10)
