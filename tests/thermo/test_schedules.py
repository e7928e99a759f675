"""Schedules: closed forms, jit / vmap use, the constant-thermodynamic-speed ladder."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import idf_jax as idf
from idf_jax import schedules as S


@pytest.mark.parametrize(
    "make, ref",
    [
        (lambda n: S.linear(2.0, 0.5, n), lambda s: 2.0 + (0.5 - 2.0) * s),
        (lambda n: S.geometric(10.0, 1e-3, n), lambda s: 10.0 * (1e-4) ** s),
        (lambda n: S.cosine(1.0, 0.0, n), lambda s: 0.5 * (1 + np.cos(np.pi * s))),
        (lambda n: S.constant(0.7), lambda s: 0.7 + 0 * s),
    ],
)
def test_closed_forms_and_endpoints(make, ref):
    n = 11
    sched = make(n)
    steps = np.arange(n)
    got = np.array([float(sched(i)) for i in steps])
    np.testing.assert_allclose(got, ref(steps / (n - 1)), rtol=2e-6, atol=1e-7)


def test_num_steps_at_call_time_and_clipping():
    sched = S.geometric(1.0, 0.01)
    assert float(sched(0, 3)) == pytest.approx(1.0)
    assert float(sched(1, 3)) == pytest.approx(0.1, rel=1e-6)
    assert float(sched(2, 3)) == pytest.approx(0.01, rel=1e-6)
    assert float(sched(99, 3)) == pytest.approx(0.01, rel=1e-6)  # clipped past the end
    with pytest.raises(ValueError, match="num_steps"):
        sched(0)


def test_jit_and_vmap():
    sched = S.cosine(3.0, 0.1, num_steps=50)
    idx = jnp.arange(50)
    eager = np.array([float(sched(int(i))) for i in idx])
    np.testing.assert_allclose(np.asarray(jax.jit(jax.vmap(sched))(idx)), eager, rtol=1e-6)

    # Inside a scan, as a sampler would use it.
    def body(c, i):
        return c + sched(i), None

    total, _ = jax.jit(lambda: jax.lax.scan(body, jnp.float32(0.0), idx))()
    assert float(total) == pytest.approx(eager.sum(), rel=1e-5)


def test_ladder_schedule_interpolates_geometrically():
    lad = S.ladder([4.0, 2.0, 1.0], num_steps=5)
    got = [float(lad(i)) for i in range(5)]
    np.testing.assert_allclose(got, [4.0, 2 * np.sqrt(2), 2.0, np.sqrt(2), 1.0], rtol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="start"):
        S.geometric(0.0, 1.0)
    with pytest.raises(ValueError, match="end"):
        S.geometric(1.0, -1.0)
    with pytest.raises(ValueError, match="finite"):
        S.linear(float("nan"), 1.0)
    with pytest.raises(ValueError, match="num_steps"):
        S.linear(1.0, 0.0, num_steps=0)
    with pytest.raises(ValueError, match="temperatures"):
        S.ladder([1.0, -2.0])
    with pytest.raises(ValueError, match="schedule"):
        S.as_schedule("hot")


def test_thermodynamic_ladder_is_geometric_for_constant_heat_capacity():
    # E = |x|^2 / 2 in d dims: C = d/2 at every T, so constant thermodynamic speed
    # means equal ratios T_{k+1}/T_k: the ladder is geometric.
    def energy(x):
        return 0.5 * jnp.sum(x**2)

    x0 = jnp.zeros((64, 4))
    t = S.thermodynamic_ladder(
        lambda temp: idf.mala(energy, 0.2, temperature=temp), jax.random.key(0), x0, 0.1, 10.0, 5
    )
    ref = np.geomspace(0.1, 10.0, 5)
    np.testing.assert_allclose(np.asarray(t), ref, rtol=0.15)
    assert np.all(np.diff(np.asarray(t)) > 0)


def test_thermodynamic_ladder_bad_arguments():
    mk = lambda temp: idf.mala(lambda x: jnp.sum(x**2), 0.1, temperature=temp)  # noqa: E731
    x0 = jnp.zeros((4, 2))
    with pytest.raises(ValueError, match="t_min < t_max"):
        S.thermodynamic_ladder(mk, jax.random.key(0), x0, 2.0, 1.0, 4)
    with pytest.raises(ValueError, match="num_temperatures"):
        S.thermodynamic_ladder(mk, jax.random.key(0), x0, 0.1, 1.0, 1)
