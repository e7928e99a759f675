"""Dense inverse mass for idf.mclmc / idf.mams and their tuners (dense_mass=True)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import idf_jax as idf
from idf_jax._checks import ArgumentError
from tests.helpers import assert_within

# A strongly correlated, badly scaled 4-d Gaussian (condition number ~ 200).
_A = np.array(
    [[1.0, 0.95, 0.0, 0.0], [0.95, 1.0, 0.0, 0.0], [0.0, 0.0, 9.0, -2.7], [0.0, 0.0, -2.7, 1.0]]
)
COV = _A
PREC = np.linalg.inv(COV)
CHOL = np.linalg.cholesky(COV)


def correlated(x):
    return 0.5 * x @ jnp.asarray(PREC, x.dtype) @ x


def _whitened(draws):
    """Draws mapped by L^-1 (COV = L L^T): standard normal when the sampler is exact."""
    return np.asarray(draws, np.float64) @ np.linalg.inv(CHOL).T


def _x0(n=32):
    return jax.random.normal(jax.random.key(0), (n, 4)) @ jnp.asarray(CHOL.T, jnp.float32)


def test_mams_dense_inverse_mass_is_exact():
    s = idf.mams(correlated, 0.9, 2.5, inverse_mass=jnp.asarray(COV, jnp.float32))
    tr = idf.sample(s, jax.random.key(1), _x0(), 500)
    z = _whitened(tr.positions)
    assert_within(z, np.zeros(4), what="whitened mean")
    assert_within(z**2, np.ones(4), what="whitened second moment")
    # With M^-1 = COV the dynamics sees an isotropic Gaussian: high acceptance at eps 0.9.
    assert float(tr.stats["acceptance_rate"].mean()) > 0.7


@pytest.mark.slow
def test_mclmc_dense_inverse_mass_covariance():
    s = idf.mclmc(correlated, 0.5, 2.0, inverse_mass=jnp.asarray(COV, jnp.float32))
    tr = idf.sample(s, jax.random.key(1), _x0(), 1200, burn_in=200)
    flat = np.asarray(tr.positions, np.float64).reshape(-1, 4)
    np.testing.assert_allclose(np.cov(flat.T), COV, atol=0.12 * 9)
    np.testing.assert_allclose(np.diag(np.cov(flat.T)), np.diag(COV), rtol=0.12)
    assert int(tr.stats["num_divergent"].sum()) == 0


def test_dense_mass_matches_diagonal_when_the_matrix_is_diagonal():
    """A diagonal matrix given densely gives the same transition as the diagonal mass."""
    var = jnp.array([0.5, 2.0, 1.0, 4.0])
    x = jnp.array([0.3, -0.2, 1.0, 0.5])
    for build in (idf.mams, idf.mclmc):
        a = build(correlated, 0.3, 1.0, inverse_mass=var)
        b = build(correlated, 0.3, 1.0, inverse_mass=jnp.diag(var))
        key = jax.random.key(3)
        sa, _ = a.step(key, a.init(x, key))
        sb, _ = b.step(key, b.init(x, key))
        np.testing.assert_allclose(sa.position, sb.position, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["mams", "mclmc"])
def test_tuners_estimate_a_dense_mass(method):
    build = idf.mams if method == "mams" else idf.mclmc
    s = build(correlated, 1.0, 2.0)
    res = idf.adapt_run(s, jax.random.key(2), _x0(64), 400, method=method, dense_mass=True)
    m = np.asarray(res.params["inverse_mass"])
    assert m.shape == (4, 4)
    # The tuned inverse mass is the warm-up covariance: in its metric the target is close
    # to isotropic (the eigenvalues of M^(1/2) COV M^(1/2) near 1, against a spread of 200 without it).
    ev = np.linalg.eigvals(np.linalg.solve(m, COV)).real
    assert np.all((ev > 0.5) & (ev < 2.0)), ev
    assert float(res.params["L"]) > 0 and float(res.params["step_size"]) > 0
    tr = idf.sample(res.sampler, jax.random.key(3), res.positions, 300)
    z = _whitened(tr.positions)
    assert_within(z**2, np.ones(4), what="whitened second moment")


def test_dense_mass_must_be_a_bool_and_spd():
    s = idf.mams(correlated, 0.5, 2.0)
    with pytest.raises(ArgumentError) as e:
        idf.adapt(s, jax.random.key(0), _x0(8), 40, method="mams", dense_mass="yes")
    assert e.value.argument == "dense_mass"
    with pytest.raises(ArgumentError) as e:
        idf.mclmc(correlated, 0.5, 2.0, inverse_mass=-jnp.eye(4))
    assert e.value.argument == "inverse_mass"
