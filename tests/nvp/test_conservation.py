"""Energy-balance residual and its Gaussian-conditioning projection."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from idf_jax.nvp import conservation

CH = ("power", "cooling", "temp", "t_out")
SPEC = dict(
    dt=10.0,
    storage={"temp": 50.0},
    inflow={"power": 1.0},
    outflow={"cooling": 1.0},
    leaks=[dict(hot="temp", cold="t_out", g=0.5)],
)


def test_residual_known_answer():
    bal = conservation.make_balance(SPEC, CH)
    y = np.array([10.0, 8.0, 25.0, 5.0])
    yn = np.array([12.0, 9.0, 25.5, 6.0])
    # 50 * 0.5 - 10 * (12 - 9 - 0.5 * (25 - 6)) = 25 - 10 * (-6.5) = 90
    r = float(conservation.residual(bal, jnp.asarray(yn), jnp.asarray(y)))
    assert r == pytest.approx(90.0)
    # gross flow |dE| + |P_in dt| + |P_out dt| = 25 + 120 + 10 * (9 + 9.5) = 330
    assert conservation.relative_residual(bal, yn, y) == pytest.approx(90.0 / 330.0)


def test_projection_satisfies_balance_and_is_conditioning():
    bal = conservation.make_balance(SPEC, CH)
    key = jax.random.key(0)
    mu = jax.random.normal(key, (64, 4)) * 5 + 20
    var = jnp.exp(jax.random.normal(jax.random.key(1), (64, 4)))
    y = jax.random.normal(jax.random.key(2), (64, 4)) + 20
    mp, vp = conservation.project(bal, mu.astype(jnp.float64) if False else mu, var, y)
    r = np.asarray(conservation.residual(bal, mp, y))
    scale = np.abs(np.asarray(mu) @ bal.alpha) + 1.0
    assert np.max(np.abs(r) / scale) < 1e-5
    assert np.all(np.asarray(vp) <= np.asarray(var) + 1e-6)
    # channels outside the balance (none here besides) keep their variance; the constrained
    # direction has zero variance: alpha^T Sigma* alpha = 0
    a = bal.alpha
    va = np.asarray(var) * a
    cov_post = (
        np.einsum("bi,ij->bij", np.asarray(var), np.eye(4))
        - np.einsum("bi,bj->bij", va, va) / (va @ a)[:, None, None]
    )
    np.testing.assert_allclose(np.einsum("i,bij,j->b", a, cov_post, a), 0.0, atol=1e-2)


def test_projection_equal_variance_is_euclidean():
    spec = dict(dt=1.0, storage={"temp": 1.0}, inflow={"power": 1.0}, outflow={}, leaks=[])
    bal = conservation.make_balance(spec, ("power", "temp"))
    # constraint: temp' - temp - power' = 0 with temp = 0 -> temp' = power'
    mp, _ = conservation.project(
        bal, jnp.asarray([2.0, 0.0]), jnp.asarray([1.0, 1.0]), jnp.asarray([0.0, 0.0])
    )
    np.testing.assert_allclose(np.asarray(mp), [1.0, 1.0], atol=1e-6)


def test_projection_identity_when_satisfied_or_undefined():
    bal = conservation.make_balance(SPEC, CH)
    y = jnp.asarray([10.0, 8.0, 25.0, 5.0])
    yn = jnp.asarray([12.0, 9.0, 25.0 + 10 * (12 - 9 - 0.5 * (25 - 6.0)) / 50.0, 6.0])
    mp, _ = conservation.project(bal, yn, jnp.ones(4), y)
    np.testing.assert_allclose(np.asarray(mp), np.asarray(yn), rtol=1e-6)
    none = conservation.make_balance(None, CH)
    assert not none.defined
    mp, vp = conservation.project(none, yn, jnp.ones(4), y)
    assert mp is yn


def test_projection_grad_and_vmap_finite():
    bal = conservation.make_balance(SPEC, CH)
    y = jnp.asarray([10.0, 8.0, 25.0, 5.0])

    def f(mu, var):
        mp, vp = conservation.project(bal, mu, var, y)
        return jnp.sum(mp**2) + jnp.sum(vp)

    g = jax.jit(jax.grad(f, argnums=(0, 1)))(jnp.asarray([12.0, 9.0, 25.5, 6.0]), jnp.ones(4))
    assert all(np.all(np.isfinite(np.asarray(a))) for a in g)
    out = jax.vmap(lambda m: conservation.project(bal, m, jnp.ones(4), y)[0])(jnp.ones((5, 4)))
    assert out.shape == (5, 4)


def test_bad_spec():
    with pytest.raises(ValueError, match="'nope'"):
        conservation.make_balance(dict(dt=1.0, storage={"nope": 1.0}), CH)
    with pytest.raises(ValueError, match="unknown keys"):
        conservation.make_balance(dict(dt=1.0, storage={"temp": 1.0}, bogus=1), CH)
    with pytest.raises(ValueError, match="dt"):
        conservation.make_balance(dict(dt=0.0, storage={"temp": 1.0}), CH)
