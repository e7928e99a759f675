"""Creative capsule: tiny score model (loss decreases, sampling runs), Frechet distance."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import capsules
from capsules import creative as cr


def test_registered():
    assert "creative.digits" in capsules.available()


def test_frechet_distance_known_answers():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(500, 5)) @ rng.normal(size=(5, 5))
    c = np.arange(5.0)
    assert abs(cr.frechet_distance(f, f)) < 1e-8
    # a shift by c: |c|^2 exactly (same covariance)
    np.testing.assert_allclose(cr.frechet_distance(f, f + c), c @ c, rtol=1e-8)
    # scaling the spread by 2 about the mean: tr(C + 4C - 2 * 2C) = tr(C)
    g = 2.0 * (f - f.mean(0)) + f.mean(0)
    np.testing.assert_allclose(cr.frechet_distance(f, g), np.trace(np.cov(f.T)), rtol=1e-6)
    # singular covariance (a dead feature) is fine
    f0 = np.c_[f, np.zeros(len(f))]
    np.testing.assert_allclose(cr.frechet_distance(f0, f0 + 1.0), 6.0, rtol=1e-6)
    with pytest.raises(ValueError, match="feature sets"):
        cr.frechet_distance(f, f[:, :3])


@pytest.fixture(scope="module")
def tiny():
    x_train = cr.load_digits_data()[0][:256]
    return cr.train_digit_score_model(
        jax.random.key(0),
        x_train,
        num_steps=300,
        batch_size=64,
        learning_rate=3e-3,
        width=64,
        depth=2,
        chunk=300,
    )


def test_tiny_training_loss_decreases(tiny):
    h = tiny.loss_history
    assert h.shape == (300,) and np.all(np.isfinite(h))
    # DSM loss at init is ~ E|eps_theta - z|^2 >= 64 (z has 64 unit-variance entries)
    assert h[-50:].mean() < 0.6 * h[:20].mean()


def test_sampling_runs_and_capsule(tiny):
    s = cr.sample_digits(tiny.model, jax.random.key(1), 4, "sde", num_steps=20)
    assert s.shape == (4, 64) and bool(jnp.all(jnp.isfinite(s)))
    cap = cr.digits(model=tiny.model)
    z = cap.init(jax.random.key(2), 3)
    e = jax.jit(jax.vmap(cap.energy_fn))(z)
    np.testing.assert_allclose(np.asarray(e), 0.5 * np.sum(np.asarray(z) ** 2, 1), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(jax.grad(cap.energy_fn)(z[0])), np.asarray(z[0]))
    out = cap.decode(z[0])
    assert out["image"].shape == (8, 8)
    assert out["image"].min() >= 0 and out["image"].max() <= 16
    with pytest.raises(ValueError, match="method"):
        cr.sample_digits(tiny.model, jax.random.key(1), 2, "gan")
    with pytest.raises(ValueError, match="ScoreMLP"):
        cr.digits(model="not a model")
    with pytest.raises(ValueError, match="x_train"):
        cr.train_digit_score_model(jax.random.key(0), np.zeros((4, 10)), num_steps=1)
