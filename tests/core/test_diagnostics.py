import arviz as az
import numpy as np
import pytest

import idf_jax as idf


def ar1(rng, chains, draws, phi, dim=2, offsets=None):
    x = np.zeros((chains, draws, dim))
    x[:, 0] = rng.normal(size=(chains, dim))
    for t in range(1, draws):
        x[:, t] = phi * x[:, t - 1] + np.sqrt(1 - phi**2) * rng.normal(size=(chains, dim))
    if offsets is not None:
        x += np.asarray(offsets)[:, None, None]
    return x


def test_ess_and_rhat_match_arviz():
    rng = np.random.default_rng(0)
    x = ar1(rng, 4, 500, 0.8)
    for k in range(2):
        ref_ess = float(az.ess(x[..., k], method="bulk"))
        ref_rhat = float(az.rhat(x[..., k], method="rank"))
        np.testing.assert_allclose(idf.ess(x)[k], ref_ess, rtol=1e-6)
        np.testing.assert_allclose(idf.rhat(x)[k], ref_rhat, rtol=1e-6)


def test_ess_of_ar1_near_theory_and_rhat_flags_disagreeing_chains():
    rng = np.random.default_rng(1)
    phi = 0.5
    x = ar1(rng, 8, 4000, phi, dim=1)
    theory = x.shape[0] * x.shape[1] * (1 - phi) / (1 + phi)
    assert abs(idf.ess(x)[0] / theory - 1) < 0.15
    assert idf.rhat(x)[0] < 1.01
    stuck = ar1(rng, 4, 1000, 0.5, dim=1, offsets=[0.0, 0.0, 0.0, 3.0])
    assert idf.rhat(stuck)[0] > 1.1


def test_bad_shapes_are_value_errors():
    with pytest.raises(ValueError, match="chains, draws"):
        idf.ess(np.zeros(10))
    with pytest.raises(ValueError, match="at least 4 draws"):
        idf.rhat(np.zeros((2, 3)))


def test_summary_returns_numbers_and_prints(key, capsys):
    import jax
    import jax.numpy as jnp

    tr = idf.sample(
        idf.mala(lambda x: 0.5 * jnp.sum(x**2), 0.5), key, jnp.zeros((8, 12)), 400, thin=2
    )
    out = idf.summary(tr)
    assert out["chains"] == 8 and out["draws"] == 200
    assert out["position"]["x"]["ess_bulk"].shape == (12,)
    assert 0.5 < out["acceptance_rate"] <= 1.0 and out["divergent_chains"] == 0
    printed = capsys.readouterr().out
    assert "R-hat" in printed and "energy" in printed and "12 comps" in printed
    del jax
