"""Point and probabilistic forecast metrics: MASE, skill against persistence, CRPS, coverage.

All functions are pure `jax.numpy` (jit- and vmap-able) and reduce over the leading
(sample / origin) axis, keeping trailing axes (channels, horizons):

- `naive_scale`: the in-sample MAE of the naive forecast with lag `period` on *training*
  data, s = mean |x_t - x_{t-period}| (period 1: one-step naive; period = steps per day:
  seasonal naive). MASE = MAE / s (Hyndman & Koehler 2006); the same s serves every horizon,
  so MASE grows with the horizon for any forecaster.
- `skill`: 1 - MASE_model / MASE_persistence (positive: better than persistence y_t).
- `crps_gaussian`: closed-form CRPS of N(mu, sd^2) (Gneiting & Raftery 2007),
  sd [z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi)], z = (y - mu) / sd.
- `crps_samples`: CRPS of the empirical distribution of m samples,
  mean_i |x_i - y| - 1/(2 m^2) sum_ij |x_i - x_j| (the estimator of `properscoring`),
  computed in O(m log m) from the sorted samples.
- `gaussian_interval` / `coverage`: the central `level` interval mu -/+ z sd and the share
  of targets inside it (well calibrated: `level`).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax.scipy.special import ndtri
from jax.scipy.stats import norm as jnorm
from jaxtyping import Array, ArrayLike, Float

__all__ = [
    "coverage",
    "crps_gaussian",
    "crps_samples",
    "gaussian_interval",
    "mae",
    "mase",
    "naive_scale",
    "skill",
    "z_of_level",
]


def _level_ok(level: float) -> float:
    level = float(level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    return level


def z_of_level(level: float = 0.9) -> float:
    """Half-width in sds of the central `level` Gaussian interval (0.9 -> 1.6449)."""
    return float(ndtri(0.5 + _level_ok(level) / 2.0))


def naive_scale(x: Float[ArrayLike, "T ..."], period: int = 1) -> Float[Array, "..."]:
    """In-sample MAE of the lag-`period` naive forecast on training data `x` (time first);
    zero scales (a constant channel) are replaced by 1 so that MASE stays finite."""
    if int(period) < 1:
        raise ValueError(f"period must be >= 1, got {period}")
    x = jnp.asarray(x)
    if x.shape[0] <= period:
        raise ValueError(f"need more than {period} training steps for the scale, got {x.shape[0]}")
    s = jnp.mean(jnp.abs(x[period:] - x[:-period]), axis=0)
    return jnp.where(s > 0, s, 1.0)


def mae(y: Float[ArrayLike, "N ..."], pred: Float[ArrayLike, "N ..."]) -> Float[Array, "..."]:
    """Mean absolute error over the leading axis."""
    return jnp.mean(jnp.abs(jnp.asarray(y) - jnp.asarray(pred)), axis=0)


def mase(
    y: Float[ArrayLike, "N ..."], pred: Float[ArrayLike, "N ..."], scale: Float[ArrayLike, "..."]
) -> Float[Array, "..."]:
    """MAE / scale (`naive_scale` of the training data)."""
    return mae(y, pred) / jnp.asarray(scale)


def skill(
    mase_model: Float[ArrayLike, "..."], mase_persistence: Float[ArrayLike, "..."]
) -> Float[Array, "..."]:
    """1 - MASE_model / MASE_persistence (NaN where persistence is exact)."""
    mp = jnp.asarray(mase_persistence)
    return jnp.where(mp > 0, 1.0 - jnp.asarray(mase_model) / jnp.where(mp > 0, mp, 1.0), jnp.nan)


def crps_gaussian(
    y: Float[ArrayLike, "..."], mu: Float[ArrayLike, "..."], sd: Float[ArrayLike, "..."]
) -> Float[Array, "..."]:
    """Pointwise CRPS of N(mu, sd^2) at y (sd floored at 1e-12; sd -> 0 gives |y - mu|)."""
    y, mu = jnp.asarray(y), jnp.asarray(mu)
    sd = jnp.maximum(jnp.asarray(sd), 1e-12)
    z = (y - mu) / sd
    return sd * (z * (2.0 * jnorm.cdf(z) - 1.0) + 2.0 * jnorm.pdf(z) - 1.0 / math.sqrt(math.pi))


def crps_samples(
    y: Float[ArrayLike, "..."], samples: Float[ArrayLike, "M ..."]
) -> Float[Array, "..."]:
    """Pointwise CRPS of the empirical distribution of `samples` (sample axis first) at y.

    With sorted samples x_(1) <= ... <= x_(m): sum_ij |x_i - x_j| = 2 sum_i (2i - m - 1) x_(i).
    """
    x = jnp.sort(jnp.asarray(samples), axis=0)
    m = x.shape[0]
    if m < 1:
        raise ValueError("crps_samples needs at least one sample")
    y = jnp.asarray(y)
    w = (2.0 * jnp.arange(1, m + 1) - m - 1.0).reshape((m,) + (1,) * (x.ndim - 1))
    spread = 2.0 * jnp.sum(w * x, axis=0) / (m * m)
    return jnp.mean(jnp.abs(x - y[None]), axis=0) - 0.5 * spread


def gaussian_interval(
    mu: Float[ArrayLike, "..."], sd: Float[ArrayLike, "..."], level: float = 0.9
) -> tuple[Float[Array, "..."], Float[Array, "..."]]:
    """(lo, hi) of the central `level` interval of N(mu, sd^2)."""
    z = z_of_level(level)
    mu, sd = jnp.asarray(mu), jnp.asarray(sd)
    return mu - z * sd, mu + z * sd


def coverage(
    y: Float[ArrayLike, "N ..."], lo: Float[ArrayLike, "N ..."], hi: Float[ArrayLike, "N ..."]
) -> Float[Array, "..."]:
    """Share of targets with lo <= y <= hi, over the leading axis."""
    y = jnp.asarray(y)
    return jnp.mean(((y >= jnp.asarray(lo)) & (y <= jnp.asarray(hi))).astype(jnp.float32), axis=0)
