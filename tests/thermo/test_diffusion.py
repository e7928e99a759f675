"""Score-based diffusion: closed-form marginals, reverse SDE / PF-ODE with an exact score,
denoising score matching for a score or an energy network."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import idf_jax as idf
from idf_jax import diffusion as D

WEIGHTS = jnp.array([0.3, 0.7])
MEANS = jnp.array([[-3.0, 0.0], [3.0, 1.0]])
STDS = jnp.array([0.5, 0.8])
N = 2000


def _check_mixture(x, label):
    """Mode weights, means and stds of samples of the 2-mode mixture.

    Tolerances (n = 2000): weight +-0.05 (5 binomial SE, sqrt(0.21/2000) = 0.010);
    means +-0.12 (>= 4.5 SE: 0.8/sqrt(1400) = 0.021, 0.5/sqrt(600) = 0.020 per coordinate,
    plus the O(dt) / t_min bias); stds +-0.1.
    """
    x = np.asarray(x)
    assert np.all(np.isfinite(x)), label
    right = x[:, 0] > 0  # modes are 6 apart with stds <= 0.8: overlap < 1e-4
    w = right.mean()
    assert abs(w - 0.7) < 0.05, (label, w)
    np.testing.assert_allclose(x[right].mean(0), MEANS[1], atol=0.12, err_msg=label)
    np.testing.assert_allclose(x[~right].mean(0), MEANS[0], atol=0.12, err_msg=label)
    np.testing.assert_allclose(x[right].std(0), [0.8, 0.8], atol=0.1, err_msg=label)
    np.testing.assert_allclose(x[~right].std(0), [0.5, 0.5], atol=0.1, err_msg=label)


@pytest.mark.parametrize(
    "sde", [D.VPSDE(), pytest.param(D.VESDE(0.01, 20.0), marks=pytest.mark.slow)], ids=["vp", "ve"]
)
def test_reverse_sde_reproduces_mixture(sde):
    score = D.gaussian_mixture_score(sde, WEIGHTS, MEANS, STDS)
    x = D.sample_reverse(sde, score, jax.random.key(0), (2,), N, num_steps=300)
    _check_mixture(x, "reverse SDE")


@pytest.mark.slow
def test_reverse_sde_with_corrector():
    sde = D.VPSDE()
    score = D.gaussian_mixture_score(sde, WEIGHTS, MEANS, STDS)
    x = D.sample_reverse(sde, score, jax.random.key(3), (2,), N, num_steps=100, corrector_steps=1)
    _check_mixture(x, "predictor-corrector")


@pytest.mark.parametrize(
    "sde", [D.VPSDE(), pytest.param(D.VESDE(0.01, 20.0), marks=pytest.mark.slow)], ids=["vp", "ve"]
)
def test_probability_flow_ode_reproduces_mixture(sde):
    score = D.gaussian_mixture_score(sde, WEIGHTS, MEANS, STDS)
    x = D.sample_probability_flow(sde, score, jax.random.key(1), (2,), N)
    _check_mixture(x, "PF-ODE")


@pytest.mark.parametrize("sde", [D.VPSDE(0.1, 20.0), D.VESDE(0.01, 50.0)], ids=["vp", "ve"])
def test_forward_marginals_closed_form(sde):
    x0 = jnp.full((20000,), 2.0)
    for t in (0.0, 0.1, 0.5, 1.0):
        m, s = sde.marginal(t)
        xt = D.forward_diffuse(sde, x0, t, jax.random.key(int(t * 10)))
        se_mean = float(s) / np.sqrt(x0.size)
        assert abs(float(xt.mean()) - 2.0 * float(m)) < 5 * se_mean + 1e-6
        if t > 0:
            np.testing.assert_allclose(float(xt.std()), float(s), rtol=0.03)
    # VP: variance preserving for unit-variance data: m^2 + s^2 = 1
    if isinstance(sde, D.VPSDE):
        m, s = sde.marginal(jnp.linspace(0, 1, 11))
        np.testing.assert_allclose(np.asarray(m**2 + s**2), 1.0, rtol=1e-6)
        # and s^2 solves ds^2/dt = beta (1 - s^2) (the SDE's variance ODE)
        ds2 = jax.vmap(jax.grad(lambda t: sde.marginal(t)[1] ** 2))(jnp.linspace(0.1, 0.9, 5))
        s2 = sde.marginal(jnp.linspace(0.1, 0.9, 5))[1] ** 2
        np.testing.assert_allclose(
            np.asarray(ds2), np.asarray(sde.beta(jnp.linspace(0.1, 0.9, 5)) * (1 - s2)), rtol=1e-3
        )
    else:  # VE: d s^2 / dt = g^2
        ts = jnp.linspace(0.1, 0.9, 5)
        ds2 = jax.vmap(jax.grad(lambda t: sde.marginal(t)[1] ** 2))(ts)
        np.testing.assert_allclose(np.asarray(ds2), np.asarray(sde.diffusion(ts) ** 2), rtol=1e-3)


def test_reverse_denoise_deterministic_is_pf_ode_euler_and_jit_grad():
    sde = D.VPSDE()
    score = D.gaussian_mixture_score(sde, WEIGHTS, MEANS, STDS)
    x = jnp.array([0.5, -0.2])
    t, dt = 0.5, 0.01
    y = D.reverse_denoise(sde, score, x, t, dt)
    g2 = sde.diffusion(t) ** 2
    np.testing.assert_allclose(
        np.asarray(y), np.asarray(x - (sde.drift(x, t) - 0.5 * g2 * score(x, t)) * dt), rtol=1e-6
    )
    y2 = jax.jit(lambda x, k: D.reverse_denoise(sde, score, x, t, dt, k))(x, jax.random.key(0))
    assert y2.shape == (2,)
    g = jax.grad(lambda x: jnp.sum(D.reverse_denoise(sde, score, x, t, dt)))(x)
    assert np.all(np.isfinite(np.asarray(g)))
    batched = jax.vmap(lambda x, k: D.reverse_denoise(sde, score, x, t, dt, k))(
        jnp.ones((4, 2)), jax.random.split(jax.random.key(0), 4)
    )
    assert batched.shape == (4, 2)


class _QuadEnergy(eqx.Module):
    """E_theta(x, t) = |x|^2 / (2 (m(t)^2 theta + s(t)^2)): exact for N(0, theta) data."""

    log_theta: jax.Array

    def __call__(self, x, t):
        m, s = D.VPSDE().marginal(t)
        return 0.5 * jnp.sum(x**2) / (m**2 * jnp.exp(self.log_theta) + s**2)


def test_dsm_loss_energy_network_minimised_at_true_variance():
    """DSM on N(0, 4 I) data: the loss over theta is minimised at theta = 4."""
    sde = D.VPSDE()
    x0 = 2.0 * jax.random.normal(jax.random.key(0), (8192, 2))
    key = jax.random.key(1)
    loss = lambda th: D.dsm_loss(sde, D.EnergyScore(_QuadEnergy(jnp.log(th))), x0, key)
    values = [float(loss(th)) for th in (1.0, 4.0, 16.0)]
    assert values[1] < values[0] and values[1] < values[2], values
    grads = [
        float(
            eqx.filter_grad(lambda m: D.dsm_loss(sde, D.EnergyScore(m), x0, key))(
                _QuadEnergy(jnp.log(th))
            ).log_theta
        )
        for th in (2.0, 8.0)
    ]
    assert grads[0] < 0 < grads[1], grads  # descent moves theta toward 4 from both sides


@pytest.mark.slow
def test_dsm_loss_exact_score_beats_wrong_score():
    sde = D.VESDE(0.01, 20.0)
    score = D.gaussian_mixture_score(sde, WEIGHTS, MEANS, STDS)
    k = jax.random.split(jax.random.key(0), 2)
    comp = jax.random.bernoulli(k[0], 0.7, (4096,)).astype(jnp.int32)
    x0 = MEANS[comp] + STDS[comp][:, None] * jax.random.normal(k[1], (4096, 2))
    good = D.dsm_loss(sde, score, x0, jax.random.key(5))
    bad = D.dsm_loss(sde, lambda x, t: 1.3 * score(x, t), x0, jax.random.key(5))
    assert float(good) < float(bad)


def test_bad_input():
    with pytest.raises(ValueError, match="beta_max"):
        D.VPSDE(1.0, 0.5)
    with pytest.raises(ValueError, match="sigma_max"):
        D.VESDE(1.0, 0.5)
    with pytest.raises(ValueError, match="sde"):
        D.forward_diffuse("vp", jnp.zeros(2), 0.5, jax.random.key(0))
    with pytest.raises(ValueError, match="t must lie"):
        D.forward_diffuse(D.VPSDE(), jnp.zeros(2), 1.5, jax.random.key(0))
    with pytest.raises(ValueError, match="dt"):
        D.reverse_denoise(D.VPSDE(), lambda x, t: x, jnp.zeros(2), 0.5, -0.1)
    with pytest.raises(ValueError, match="score_fn returned shape"):
        D.reverse_denoise(D.VPSDE(), lambda x, t: x[:1], jnp.zeros(2), 0.5, 0.1)


def test_front_door_exports():
    assert idf.forward_diffuse is D.forward_diffuse
    assert idf.reverse_denoise is D.reverse_denoise
