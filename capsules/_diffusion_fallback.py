"""Minimal stand-in for `idf_jax.diffusion` (VP SDE, DSM loss, reverse SDE, PF-ODE), used by
the creative capsule only while the diffusion layer has not landed on main. Same contract as
DESIGN.md ("Equilibrium and diffusion"); see `idf_jax.diffusion` for the documented version.
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp


class VPSDE(eqx.Module):
    """dx = -beta(t) x / 2 dt + sqrt(beta(t)) dW, beta(t) = b_min + t (b_max - b_min)."""

    beta_min: float = eqx.field(static=True, default=0.1)
    beta_max: float = eqx.field(static=True, default=20.0)

    def beta(self, t):
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def drift(self, x, t):
        return -0.5 * self.beta(t) * x

    def diffusion(self, t):
        return jnp.sqrt(self.beta(t))

    def marginal(self, t):
        b = self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2
        return jnp.exp(-0.5 * b), jnp.sqrt(-jnp.expm1(-b))

    def prior_sample(self, key, shape, dtype=jnp.float32):
        return jax.random.normal(key, shape, dtype)


def dsm_loss(sde, score_fn, x0_batch, key, *, t_min=1e-5):
    """E || s(t) score(m x0 + s z, t) + z ||^2 (lambda(t) = s(t)^2)."""
    x0 = jnp.asarray(x0_batch)
    n = x0.shape[0]
    kt, kz = jax.random.split(key)
    t = jax.random.uniform(kt, (n,), x0.dtype, minval=t_min, maxval=1.0)
    z = jax.random.normal(kz, x0.shape, x0.dtype)
    m, s = jax.vmap(sde.marginal)(t)
    b = (n,) + (1,) * (x0.ndim - 1)
    xt = m.reshape(b) * x0 + s.reshape(b) * z
    resid = s.reshape(b) * jax.vmap(score_fn)(xt, t) + z
    return jnp.mean(jnp.sum(resid.reshape(n, -1) ** 2, axis=1))


def sample_reverse(sde, score_fn, key, shape, num_samples, *, num_steps=500, t_min=1e-3):
    """Euler-Maruyama on the reverse SDE from t = 1 to t_min; last step without noise."""
    k0, kr = jax.random.split(key)
    x1 = sde.prior_sample(k0, (num_samples, *shape))
    dt = (1.0 - t_min) / num_steps
    ts = 1.0 - dt * jnp.arange(num_steps, dtype=x1.dtype)

    def one(x, k):
        def body(x, inp):
            t, kk = inp
            g = sde.diffusion(t)
            z = jax.random.normal(kk, x.shape, x.dtype)
            return x - (sde.drift(x, t) - g**2 * score_fn(x, t)) * dt + g * jnp.sqrt(dt) * z, None

        x, _ = jax.lax.scan(body, x, (ts[:-1], jax.random.split(k, num_steps - 1)))
        t = ts[-1]
        return x - (sde.drift(x, t) - sde.diffusion(t) ** 2 * score_fn(x, t)) * dt

    return jax.vmap(one)(x1, jax.random.split(kr, num_samples))


def probability_flow(sde, score_fn, x1, *, t0=1.0, t1=1e-3, rtol=1e-5, atol=1e-5, max_steps=4096):
    """dx/dt = f - g^2 score / 2 from t0 to t1 with diffrax Tsit5 + PID control."""

    def vf(t, x, args):
        return sde.drift(x, t) - 0.5 * sde.diffusion(t) ** 2 * score_fn(x, t)

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(vf),
        diffrax.Tsit5(),
        t0=t0,
        t1=t1,
        dt0=(t1 - t0) / 100.0,
        y0=x1,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps,
    )
    return sol.ys[-1]


def sample_probability_flow(sde, score_fn, key, shape, num_samples, *, t_min=1e-3, **kw):
    x1 = sde.prior_sample(key, (num_samples, *tuple(shape)))
    return jax.vmap(lambda x: probability_flow(sde, score_fn, x, t1=t_min, **kw))(x1)
