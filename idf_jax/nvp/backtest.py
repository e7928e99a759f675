"""Rolling multi-horizon backtests of an `NVPPredictor` against persistence, on one series.

From every origin t (with at least `min_history` past steps), the model forecasts
t+1 .. t+H recursively: each step's mean is fed back as the next input (all channels are
states; for action-conditioned models use the planner). All origins are rolled out in one
compiled, vmapped call (`jax.lax.scan` over the horizon).

Metrics per channel and horizon h (targets y_{t+h} over all origins with a target):

- MAE and MASE = MAE / s, s the in-sample one-step naive MAE of the series (Hyndman &
  Koehler 2006), so MASE < 1 beats the one-step naive forecast on average;
- skill against persistence = 1 - MASE_model / MASE_persistence (persistence: y_t for every
  horizon), positive when the model is better;
- Gaussian CRPS (Gneiting & Raftery 2007) with the model's predictive sd at that step;
- coverage of the central 90 % interval mu -/+ 1.645 sd (well calibrated: 0.90). For h > 1
  the sd is the model's one-step sd at the fed-back input, which ignores the growth of
  uncertainty along the recursion; coverage then reads low, and is reported as measured.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike
from scipy.special import erf

from .predictor import Z90, NVPPredictor

__all__ = ["backtest", "crps_gaussian"]


def crps_gaussian(y: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """CRPS of N(mu, sd^2) at y: sd [z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi)], z = (y-mu)/sd."""
    sd = np.maximum(sd, 1e-12)
    z = (y - mu) / sd
    pdf = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + erf(z / math.sqrt(2)))
    return sd * (z * (2 * cdf - 1) + 2 * pdf - 1 / math.sqrt(math.pi))


def _rollouts(pred: NVPPredictor, x: np.ndarray, origins: np.ndarray, horizon: int):
    """(N, H, C) means and sds of the recursive forecasts from each origin (inclusive)."""
    w = pred.window
    idx = origins[:, None] + np.arange(-w + 1, 1)[None, :]
    mask = idx >= 0
    first = np.maximum(origins - w + 1, 0)
    idx = np.where(mask, idx, first[:, None])
    ys = x[idx].astype(np.float32)
    fn = pred.forecast_fn

    def one(y, m):
        def step(carry, _):
            y, m = carry
            out = fn(y, m)
            mean, var = out[0], out[1]
            y = jnp.concatenate([y[1:], mean[None]], axis=0)
            m = jnp.concatenate([m[1:], jnp.ones((1,), bool)])
            return (y, m), (mean, jnp.sqrt(jnp.maximum(var, 0.0)))

        _, (mu, sd) = jax.lax.scan(step, (y, m), None, length=horizon)
        return mu, sd

    run = jax.jit(jax.vmap(one))
    mus, sds = [], []
    for s in range(0, len(origins), 2048):  # bounded memory; one compilation per chunk size
        chunk = slice(s, s + 2048)
        n = len(origins[chunk])
        size = 1 << max(n - 1, 0).bit_length()
        yb = np.concatenate([ys[chunk], np.repeat(ys[chunk][:1], size - n, 0)])
        mb = np.concatenate([mask[chunk], np.repeat(mask[chunk][:1], size - n, 0)])
        mu, sd = run(jnp.asarray(yb), jnp.asarray(mb))
        mus.append(np.asarray(mu, np.float64)[:n])
        sds.append(np.asarray(sd, np.float64)[:n])
    return np.concatenate(mus), np.concatenate(sds)


def backtest(
    predictor: NVPPredictor,
    values: ArrayLike,
    horizons: Sequence[int] = (1, 4, 24),
    *,
    start: int | None = None,
) -> dict:
    """Rolling recursive forecasts of a (T, C) series in the predictor's channel order.

    Args:
      predictor: a loaded `NVPPredictor`.
      values: (T, C) series (physically impossible values raise ValueError).
      horizons: forecast horizons in steps (each >= 1).
      start: first origin (default: the model's `min_history` - 1).

    Returns a dict: ``horizons``, ``channels``, ``metrics[h][channel]`` (mae, mase,
    mase_persistence, skill, crps, coverage90, n), ``origins`` (N,), and the arrays
    ``mean`` / ``sd`` (N, H, C) with H = max(horizons), for plots.
    """
    x = np.asarray(values, np.float64)
    chans = predictor.channels
    if x.ndim != 2 or x.shape[1] != len(chans):
        raise ValueError(f"values must be (T, {len(chans)}) in channel order {list(chans)}")
    if not np.isfinite(x).all():
        raise ValueError("values contain NaN or inf")
    hs = sorted({int(h) for h in horizons})
    if not hs or hs[0] < 1:
        raise ValueError(f"horizons must be >= 1, got {list(horizons)}")
    from .metadata import check_physical

    check_physical(predictor.series, x, chans)
    big = hs[-1]
    first = predictor.min_history - 1 if start is None else int(start)
    origins = np.arange(first, x.shape[0] - 1)
    if origins.size == 0:
        raise ValueError(
            f"series of {x.shape[0]} steps is too short for a model needing "
            f"{predictor.min_history} steps of history"
        )
    mu, sd = _rollouts(predictor, x, origins, big)
    scale = np.mean(np.abs(np.diff(x, axis=0)), axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    metrics: dict[int, dict[str, dict]] = {}
    for h in hs:
        ok = origins + h < x.shape[0]
        if not ok.any():
            continue
        y = x[origins[ok] + h]
        m, s = mu[ok, h - 1], sd[ok, h - 1]
        naive = x[origins[ok]]
        per = {}
        for j, c in enumerate(chans):
            mae = float(np.mean(np.abs(y[:, j] - m[:, j])))
            mae_p = float(np.mean(np.abs(y[:, j] - naive[:, j])))
            mase, mase_p = mae / scale[j], mae_p / scale[j]
            per[c] = dict(
                mae=mae,
                mase=mase,
                mase_persistence=mase_p,
                skill=1.0 - mase / mase_p if mase_p > 0 else float("nan"),
                crps=float(np.mean(crps_gaussian(y[:, j], m[:, j], s[:, j]))),
                coverage90=float(np.mean(np.abs(y[:, j] - m[:, j]) <= Z90 * s[:, j])),
                n=int(ok.sum()),
            )
        metrics[h] = per
    return dict(horizons=hs, channels=list(chans), metrics=metrics, origins=origins, mean=mu, sd=sd)
