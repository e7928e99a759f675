"""Score-based diffusion (Song, Sohl-Dickstein, Kingma, Kumar, Ermon & Poole 2021,
"Score-based generative modeling through stochastic differential equations", ICLR).

Forward SDE dx = f(x, t) dt + g(t) dW on t in [0, 1] with a Gaussian transition kernel
p_t(x | x0) = N(m(t) x0, s(t)^2 I), known in closed form:

- VP (variance preserving): f = -beta(t) x / 2, g = sqrt(beta(t)),
  beta(t) = b_min + t (b_max - b_min); m(t) = exp(-B(t)/2), s(t)^2 = 1 - exp(-B(t)),
  B(t) = int_0^t beta = b_min t + (b_max - b_min) t^2 / 2.
- VE (variance exploding): f = 0, g = sigma(t) sqrt(2 ln(s_max/s_min)),
  sigma(t) = s_min (s_max/s_min)^t; m = 1, s(t)^2 = sigma(t)^2 - s_min^2 (exact for this
  SDE started at t = 0).

Reverse-time SDE: dx = [f - g^2 score(x, t)] dt + g dW_bar (time running 1 -> 0).
Probability-flow ODE: dx/dt = f - g^2 score / 2, same marginals, deterministic.

`score_fn(x, t)` acts on ONE sample x (any shape) at scalar time t and returns an array
shaped like x; an energy network E_theta(x, t) gives score = -grad_x E_theta (see
`EnergyScore`). Batches: `jax.vmap` (the `sample_*` functions do it for you).
"""

from __future__ import annotations

from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .._checks import is_traced
from ..samplers._base import check_positive, check_positive_int

__all__ = [
    "VPSDE",
    "VESDE",
    "EnergyScore",
    "forward_diffuse",
    "reverse_denoise",
    "sample_reverse",
    "probability_flow",
    "sample_probability_flow",
    "dsm_loss",
    "gaussian_mixture_score",
]

ScoreFn = Callable[[Array, Array], Array]


class VPSDE(eqx.Module):
    """Variance-preserving SDE dx = -beta(t) x/2 dt + sqrt(beta(t)) dW, t in [0, 1]."""

    beta_min: float = eqx.field(static=True, default=0.1)
    beta_max: float = eqx.field(static=True, default=20.0)

    def __check_init__(self):
        check_positive("beta_min", self.beta_min)
        check_positive("beta_max", self.beta_max)
        if self.beta_max < self.beta_min:
            raise ValueError(f"beta_max ({self.beta_max}) must be >= beta_min ({self.beta_min})")

    def beta(self, t):
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def drift(self, x, t):
        """f(x, t) = -beta(t) x / 2."""
        return -0.5 * self.beta(t) * x

    def diffusion(self, t):
        """g(t) = sqrt(beta(t))."""
        return jnp.sqrt(self.beta(t))

    def marginal(self, t):
        """(m(t), s(t)): p_t(x | x0) = N(m x0, s^2 I)."""
        b = self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2
        return jnp.exp(-0.5 * b), jnp.sqrt(-jnp.expm1(-b))

    def prior_sample(self, key, shape, dtype=jnp.float32):
        """x_1 ~ N(0, I) (the exact marginal is N(m(1) x0, s(1)^2) ~ N(0, 1))."""
        return jax.random.normal(key, shape, dtype)


class VESDE(eqx.Module):
    """Variance-exploding SDE dx = sigma(t) sqrt(2 ln(s_max/s_min)) dW, t in [0, 1]."""

    sigma_min: float = eqx.field(static=True, default=0.01)
    sigma_max: float = eqx.field(static=True, default=50.0)

    def __check_init__(self):
        check_positive("sigma_min", self.sigma_min)
        check_positive("sigma_max", self.sigma_max)
        if self.sigma_max <= self.sigma_min:
            raise ValueError(f"sigma_max ({self.sigma_max}) must be > sigma_min ({self.sigma_min})")

    def sigma(self, t):
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def drift(self, x, t):
        return jnp.zeros_like(x)

    def diffusion(self, t):
        """g(t) = sqrt(d sigma^2 / dt) = sigma(t) sqrt(2 ln(s_max / s_min))."""
        return self.sigma(t) * np.sqrt(2.0 * np.log(self.sigma_max / self.sigma_min))

    def marginal(self, t):
        """(1, sqrt(sigma(t)^2 - s_min^2))."""
        s2 = self.sigma(t) ** 2 - self.sigma_min**2
        return jnp.ones_like(jnp.asarray(t, jnp.result_type(float))), jnp.sqrt(jnp.maximum(s2, 0.0))

    def prior_sample(self, key, shape, dtype=jnp.float32):
        """x_1 ~ N(0, sigma_max^2 I) (data scale assumed << sigma_max)."""
        return self.sigma_max * jax.random.normal(key, shape, dtype)


SDE = VPSDE | VESDE


def _check_sde(sde) -> None:
    if not isinstance(sde, (VPSDE, VESDE)):
        raise ValueError(f"sde must be a VPSDE or VESDE, got {type(sde).__name__}")


def _check_t(name, t, lo=0.0, hi=1.0) -> None:
    if is_traced(t):
        return
    a = np.asarray(t, dtype=np.float64)
    if not np.all(np.isfinite(a)) or np.any(a < lo) or np.any(a > hi):
        raise ValueError(f"{name} must lie in [{lo}, {hi}], got {t!r}")


class EnergyScore(eqx.Module):
    """Score of an energy network: score(x, t) = -grad_x E_theta(x, t).

    `energy_net(x, t)` returns a scalar; parameters stay trainable through `dsm_loss`
    (second-order autodiff through grad_x).
    """

    energy_net: Callable

    def __call__(self, x, t):
        return -jax.grad(lambda y: self.energy_net(y, t))(x)


def forward_diffuse(
    sde: SDE, x0: Float[ArrayLike, "..."], t: float | Array, key: PRNGKeyArray
) -> Float[Array, "..."]:
    """Sample x_t ~ p_t(x | x0) = N(m(t) x0, s(t)^2 I) exactly (no SDE simulation).

    Args:
        sde: VPSDE or VESDE.
        x0: clean data, any shape (a batch is fine: noise is i.i.d. per element).
        t: time in [0, 1]; a scalar or an array broadcastable against x0.
        key: PRNG key.
    """
    _check_sde(sde)
    _check_t("t", t)
    x0 = jnp.asarray(x0)
    m, s = sde.marginal(jnp.asarray(t, x0.dtype))
    return m * x0 + s * jax.random.normal(key, x0.shape, x0.dtype)


def reverse_denoise(
    sde: SDE,
    score_fn: ScoreFn,
    xt: Float[ArrayLike, "..."],
    t: float | Array,
    dt: float | Array,
    key: PRNGKeyArray | None = None,
    *,
    corrector_steps: int = 0,
    snr: float = 0.16,
) -> Float[Array, "..."]:
    """One reverse-time step from t to t - dt.

    With a key: Euler-Maruyama predictor of the reverse SDE,
        x' = x - [f(x, t) - g(t)^2 score(x, t)] dt + g(t) sqrt(dt) z,
    followed by `corrector_steps` Langevin corrector steps at t' = t - dt,
        x <- x + eps score(x, t') + sqrt(2 eps) z,   eps = 2 (snr s(t'))^2.
    Song et al. (2021, Algorithm 5) set eps = 2 (snr |z| / |score|)^2 with norms averaged
    over a batch; |score| ~ sqrt(d) / s(t') makes that eps = 2 (snr s(t'))^2, which we
    use directly: a per-sample |score| would blow eps up near modes (|score| -> 0) and
    break the corrector's invariance in low dimension.
    Without a key: the deterministic Euler step of the probability-flow ODE,
        x' = x - [f(x, t) - g(t)^2 score(x, t) / 2] dt  (no corrector).

    Args:
        sde: VPSDE or VESDE.
        score_fn: score(x, t) for one sample.
        xt: one sample at time t.
        t: current time in (0, 1]; dt > 0 with t - dt >= 0.
        key: PRNG key (None: deterministic probability-flow step).
    """
    _check_sde(sde)
    _check_t("t", t)
    check_positive("dt", dt)
    corrector_steps = int(corrector_steps)
    if corrector_steps < 0:
        raise ValueError(f"corrector_steps must be >= 0, got {corrector_steps}")
    xt = jnp.asarray(xt)
    t = jnp.asarray(t, xt.dtype)
    g = sde.diffusion(t)
    score = score_fn(xt, t)
    if jnp.shape(score) != xt.shape:
        raise ValueError(f"score_fn returned shape {jnp.shape(score)} for x of shape {xt.shape}")
    if key is None:
        return xt - (sde.drift(xt, t) - 0.5 * g**2 * score) * dt
    key_p, key_c = jax.random.split(key)
    z = jax.random.normal(key_p, xt.shape, xt.dtype)
    x = xt - (sde.drift(xt, t) - g**2 * score) * dt + g * jnp.sqrt(dt) * z
    if corrector_steps:
        t_next = t - dt

        eps = 2.0 * (snr * sde.marginal(t_next)[1]) ** 2

        def corr(x, k):
            noise = jax.random.normal(k, x.shape, x.dtype)
            return x + eps * score_fn(x, t_next) + jnp.sqrt(2.0 * eps) * noise, None

        x, _ = jax.lax.scan(corr, x, jax.random.split(key_c, corrector_steps))
    return x


def sample_reverse(
    sde: SDE,
    score_fn: ScoreFn,
    key: PRNGKeyArray,
    shape: tuple[int, ...],
    num_samples: int,
    *,
    num_steps: int = 500,
    t_min: float = 1e-3,
    corrector_steps: int = 0,
    snr: float = 0.16,
) -> Float[Array, "num_samples ..."]:
    """Draw `num_samples` samples by integrating the reverse SDE from t = 1 to `t_min`.

    Starts from the prior (`sde.prior_sample`), takes `num_steps` predictor steps of
    dt = (1 - t_min) / num_steps (with optional Langevin corrector), and returns the
    noise-free mean of the final step (the last step adds no noise, as in Song et al.).
    """
    _check_sde(sde)
    num_samples = check_positive_int("num_samples", num_samples)
    num_steps = check_positive_int("num_steps", num_steps)
    _check_t("t_min", t_min)
    if not 0.0 < t_min < 1.0:
        raise ValueError(f"t_min must lie in (0, 1), got {t_min}")
    shape = tuple(shape)
    key_0, key_run = jax.random.split(key)
    x1 = sde.prior_sample(key_0, (num_samples, *shape))
    dt = (1.0 - t_min) / num_steps
    ts = 1.0 - dt * jnp.arange(num_steps, dtype=x1.dtype)

    def one(x, k):
        def body(x, inp):
            t, kk = inp
            x = reverse_denoise(
                sde, score_fn, x, t, dt, kk, corrector_steps=corrector_steps, snr=snr
            )
            return x, None

        keys = jax.random.split(k, num_steps - 1)
        x, _ = jax.lax.scan(body, x, (ts[:-1], keys))
        t = ts[-1]  # last step: the predictor's mean, no noise
        return x - (sde.drift(x, t) - sde.diffusion(t) ** 2 * score_fn(x, t)) * dt

    return jax.vmap(one)(x1, jax.random.split(key_run, num_samples))


def probability_flow(
    sde: SDE,
    score_fn: ScoreFn,
    x1: Float[ArrayLike, "..."],
    *,
    t0: float = 1.0,
    t1: float = 1e-3,
    solver: diffrax.AbstractSolver | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    max_steps: int = 4096,
) -> Float[Array, "..."]:
    """Solve the probability-flow ODE dx/dt = f(x, t) - g(t)^2 score(x, t) / 2 from t0 to t1.

    Uses diffrax (default: Tsit5 with a PID step-size controller). One sample; vmap for
    batches (or use `sample_probability_flow`). Differentiable w.r.t. x1 and the score's
    parameters.
    """
    _check_sde(sde)
    _check_t("t0", t0)
    _check_t("t1", t1)
    x1 = jnp.asarray(x1)

    def vf(t, x, args):
        return sde.drift(x, t) - 0.5 * sde.diffusion(t) ** 2 * score_fn(x, t)

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(vf),
        diffrax.Tsit5() if solver is None else solver,
        t0=t0,
        t1=t1,
        dt0=(t1 - t0) / 100.0,
        y0=x1,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps,
    )
    assert sol.ys is not None  # SaveAt(t1=True) always saves the end point
    return sol.ys[-1]


def sample_probability_flow(
    sde: SDE,
    score_fn: ScoreFn,
    key: PRNGKeyArray,
    shape: tuple[int, ...],
    num_samples: int,
    *,
    t_min: float = 1e-3,
    **ode_kwargs,
) -> Float[Array, "num_samples ..."]:
    """Prior samples pushed through the probability-flow ODE from t = 1 to `t_min`."""
    _check_sde(sde)
    num_samples = check_positive_int("num_samples", num_samples)
    x1 = sde.prior_sample(key, (num_samples, *tuple(shape)))
    return jax.vmap(lambda x: probability_flow(sde, score_fn, x, t1=t_min, **ode_kwargs))(x1)


def dsm_loss(
    sde: SDE,
    score_fn: ScoreFn,
    x0_batch: Float[ArrayLike, "batch ..."],
    key: PRNGKeyArray,
    *,
    t_min: float = 1e-5,
) -> Float[Array, ""]:
    """Denoising score-matching loss with lambda(t) = s(t)^2 weighting.

    L = E_{t ~ U(t_min, 1), x0, z ~ N(0, I)} || s(t) score(m(t) x0 + s(t) z, t) + z ||^2,
    averaged over the batch and summed over each sample's elements. Its minimiser is the
    true score of p_t (Vincent 2011). For an energy network pass
    `EnergyScore(energy_net)`; gradients w.r.t. parameters via `eqx.filter_grad`.
    """
    _check_sde(sde)
    x0 = jnp.asarray(x0_batch)
    if x0.ndim < 1 or x0.shape[0] < 1:
        raise ValueError(f"x0_batch needs a leading batch axis, got shape {x0.shape}")
    key_t, key_z = jax.random.split(key)
    n = x0.shape[0]
    t = jax.random.uniform(key_t, (n,), x0.dtype, minval=t_min, maxval=1.0)
    z = jax.random.normal(key_z, x0.shape, x0.dtype)
    m, s = jax.vmap(sde.marginal)(t)
    bshape = (n,) + (1,) * (x0.ndim - 1)
    xt = m.reshape(bshape) * x0 + s.reshape(bshape) * z
    score = jax.vmap(score_fn)(xt, t)
    resid = s.reshape(bshape) * score + z
    return jnp.mean(jnp.sum(resid.reshape(n, -1) ** 2, axis=1))


def gaussian_mixture_score(
    sde: SDE,
    weights: Float[ArrayLike, " k"],
    means: Float[ArrayLike, "k d"],
    stds: Float[ArrayLike, " k"],
) -> ScoreFn:
    """The exact score of p_t for data p_0 = sum_k w_k N(mu_k, std_k^2 I) (isotropic).

    p_t = sum_k w_k N(m(t) mu_k, (m(t)^2 std_k^2 + s(t)^2) I); score = grad_x ln p_t.
    A known-answer score for testing samplers and solvers.
    """
    _check_sde(sde)
    w = jnp.asarray(weights)
    mu = jnp.asarray(means)
    sd = jnp.asarray(stds)
    if w.ndim != 1 or mu.ndim != 2 or sd.shape != w.shape or mu.shape[0] != w.shape[0]:
        raise ValueError(
            f"weights (k,), means (k, d), stds (k,) expected; got {w.shape}, {mu.shape}, {sd.shape}"
        )
    logw = jnp.log(w / jnp.sum(w))
    d = mu.shape[1]

    def log_p(x, t):
        m, s = sde.marginal(t)
        var = m**2 * sd**2 + s**2
        sq = jnp.sum((x[None, :] - m * mu) ** 2, axis=-1)
        return jax.scipy.special.logsumexp(logw - 0.5 * sq / var - 0.5 * d * jnp.log(var))

    def score(x, t):
        return jax.grad(log_p)(x, t)

    return score
