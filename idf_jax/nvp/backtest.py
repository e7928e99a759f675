"""Rolling multi-horizon backtests of an `NVPPredictor` against persistence, on one series.

From every origin t (with at least `min_history` past steps), the model forecasts
t+1 .. t+H recursively: each step's mean is fed back as the next input (all channels are
states; for action-conditioned models use the planner). All origins are rolled out in one
compiled, vmapped call (`jax.lax.scan` over the horizon).

Metrics per channel and horizon h (targets y_{t+h} over all origins with a target):

- MAE and MASE = MAE / s, s the in-sample one-step naive MAE of the series (Hyndman &
  Koehler 2006, `M.naive_scale`), so MASE < 1 beats the one-step naive forecast on
  average; one s for every horizon;
- skill against persistence = 1 - MASE_model / MASE_persistence (persistence: y_t for every
  horizon), positive when the model is better;
- Gaussian CRPS (Gneiting & Raftery 2007, `metrics.crps_gaussian`) with the model's
  predictive sd at that step;
- coverage of the central 90 % interval mu -/+ 1.645 sd (well calibrated: 0.90). For h > 1
  the sd is the model's one-step sd at the fed-back input, which ignores the growth of
  uncertainty along the recursion; coverage then reads low, and is reported as measured
  (`calibrate=f` rescales the sd per horizon on the first f of the origins and scores the
  rest, as `experiments/nvp_forecast.py` does on validation days).

`rollouts(forecast_fn, window, x, origins, horizon)` is the compiled recursion itself, for
any pure one-step forecast function (a predictor's `forecast_fn`, or one built from a freshly
trained model).

Control inputs (`idf_jax.nvp.control_inputs`): for a predictor with controls (the packaged
setpoint model) the series may carry them as extra columns after the forecast channels
(each row: the control applied over the interval it closes); the rollout then uses the
recorded control of every step of the horizon (the controls are known: they are chosen),
and only the forecast channels are scored. Without control columns the checkpoint's
default is used (``assumed_controls`` in the result) or, with `controls`, the given
constant values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float, Int

from . import metrics as M
from .metrics import crps_gaussian
from .predictor import Z90, NVPPredictor

__all__ = ["backtest", "crps_gaussian", "rollouts"]


def rollouts(
    forecast_fn: Callable,
    window: int,
    x: Float[np.ndarray, "T C"],
    origins: Int[np.ndarray, " N"],
    horizon: int,
    *,
    chunk: int = 2048,
    control_index: Sequence[int] | np.ndarray | None = None,
) -> tuple[Float[np.ndarray, "N H C"], Float[np.ndarray, "N H C"]]:
    """(N, H, C) means and sds of the recursive forecasts from each origin (inclusive).

    `forecast_fn(y (window, C) float32, mask (window,) bool)` returns a stack whose rows 0
    and 1 are the next step's mean and variance (`NVPPredictor.forecast_fn`); each mean is
    fed back as the next input. `control_index`: the control channels of a lead-layout
    series `x` (`control_inputs.lead_layout`); the fed-back row of step h then gets the
    recorded controls x[o + h] (the last row's where the series ends)."""
    w = int(window)
    ci = np.asarray([] if control_index is None else control_index, np.int64)
    rows = np.minimum(origins[:, None] + np.arange(1, int(horizon) + 1)[None, :], len(x) - 1)
    feeds = x[rows][:, :, ci].astype(np.float32)  # (N, H, K)
    jci = jnp.asarray(ci)
    idx = origins[:, None] + np.arange(-w + 1, 1)[None, :]
    mask = idx >= 0
    first = np.maximum(origins - w + 1, 0)
    idx = np.where(mask, idx, first[:, None])
    ys = x[idx].astype(np.float32)
    fn = forecast_fn

    def one(y, m, feed):
        def step(carry, ctrl):
            y, m = carry
            out = fn(y, m)
            mean, var = out[0], out[1]
            row = mean.at[jci].set(ctrl) if ci.size else mean
            y = jnp.concatenate([y[1:], row[None]], axis=0)
            m = jnp.concatenate([m[1:], jnp.ones((1,), bool)])
            return (y, m), (mean, jnp.sqrt(jnp.maximum(var, 0.0)))

        _, (mu, sd) = jax.lax.scan(step, (y, m), feed)
        return mu, sd

    run = jax.jit(jax.vmap(one))
    mus, sds = [], []
    for s in range(0, len(origins), chunk):  # bounded memory; one compilation per chunk size
        part = slice(s, s + chunk)
        n = len(origins[part])
        size = 1 << max(n - 1, 0).bit_length()
        yb = np.concatenate([ys[part], np.repeat(ys[part][:1], size - n, 0)])
        mb = np.concatenate([mask[part], np.repeat(mask[part][:1], size - n, 0)])
        fb = np.concatenate([feeds[part], np.repeat(feeds[part][:1], size - n, 0)])
        mu, sd = run(jnp.asarray(yb), jnp.asarray(mb), jnp.asarray(fb))
        mus.append(np.asarray(mu, np.float64)[:n])
        sds.append(np.asarray(sd, np.float64)[:n])
    return np.concatenate(mus), np.concatenate(sds)


def backtest(
    predictor: NVPPredictor,
    values: ArrayLike,
    horizons: Sequence[int] = (1, 4, 24),
    *,
    start: int | None = None,
    calibrate: float | None = None,
    controls: dict[str, float] | None = None,
) -> dict:
    """Rolling recursive forecasts of a (T, C) series in the predictor's channel order.

    Args:
      predictor: a loaded `NVPPredictor`.
      values: (T, C) series in the predictor's channel order, or (T, C + K) with its
        control inputs after them (module doc); physically impossible values raise
        ValueError.
      horizons: forecast horizons in steps (each >= 1).
      start: first origin (default: the model's `min_history` - 1).
      calibrate: None (default: the model's own sd at every step) or a fraction f in (0, 1):
        the first f of the origins only calibrate the sd, per horizon and channel, by the
        factor that makes the 90 % interval cover 90 % of their targets (targets before the
        first scored origin only); metrics are then computed on the remaining origins.
      controls: constant control values (control -> value) for a series without control
        columns (default: the checkpoint's documented default).

    Returns a dict: ``horizons``, ``channels``, ``metrics[h][channel]`` (mae, mase,
    mase_persistence, skill, crps, coverage90, n), ``origins`` (N,), the arrays
    ``mean`` / ``sd`` (N, H, C) with H = max(horizons), for plots (sd calibrated when asked),
    and ``scored_from`` (first scored origin) and ``sd_factor`` ((H, C) or None).
    """
    x = np.asarray(values, np.float64)
    chans = predictor.channels
    ctrls = tuple(getattr(predictor, "controls", ()))
    ns = len(chans)
    if x.ndim != 2 or x.shape[1] not in {ns, ns + len(ctrls)}:
        extra = f" or (T, {ns + len(ctrls)}) with the controls {list(ctrls)}" if ctrls else ""
        raise ValueError(f"values must be (T, {ns}) in channel order {list(chans)}{extra}")
    if not np.isfinite(x).all():
        raise ValueError("values contain NaN or inf")
    assumed: list[str] = []
    if ctrls:
        from .control_inputs import lead_layout, resolve

        hc = x[:, ns:] if x.shape[1] > ns else None
        if hc is not None and controls:
            raise ValueError("give the controls either as columns of values or as `controls`")
        nxt, assumed = resolve(predictor.series, controls, hc)
        model_x = lead_layout(x[:, :ns], hc, nxt[0] if hc is None else hc[-1])
        x = x[:, :ns]
    else:
        if controls:
            from .control_inputs import resolve

            resolve(predictor.series, controls, None)  # refuses what it cannot serve
        model_x = x
    hs = sorted({int(h) for h in horizons})
    if not hs or hs[0] < 1:
        raise ValueError(f"horizons must be >= 1, got {list(horizons)}")
    from .metadata import check_physical

    check_physical(predictor.series, model_x, tuple(chans) + ctrls)
    big = hs[-1]
    first = predictor.min_history - 1 if start is None else int(start)
    origins = np.arange(first, x.shape[0] - 1)
    if origins.size == 0:
        raise ValueError(
            f"series of {x.shape[0]} steps is too short for a model needing "
            f"{predictor.min_history} steps of history"
        )
    mu, sd = rollouts(
        predictor.forecast_fn,
        predictor.window,
        model_x,
        origins,
        big,
        control_index=getattr(predictor, "control_index", None),
    )
    mu, sd = mu[..., :ns], sd[..., :ns]
    scale = np.asarray(M.naive_scale(x), np.float64)
    scored_from, factor = int(origins[0]), None
    if calibrate is not None:
        if not 0.0 < float(calibrate) < 1.0:
            raise ValueError(f"calibrate must be a fraction in (0, 1), got {calibrate}")
        n_cal = int(round(float(calibrate) * len(origins)))
        if n_cal < 1 or n_cal >= len(origins):
            raise ValueError(
                f"calibrate={calibrate} leaves no calibration or no scored origins "
                f"among {len(origins)}"
            )
        scored_from = int(origins[n_cal])
        factor = np.ones((big, len(chans)))
        for h in range(1, big + 1):
            cal = np.flatnonzero(origins[:n_cal] + h <= scored_from)
            if cal.size < 10:
                raise ValueError(
                    f"calibrate={calibrate}: fewer than 10 calibration targets at h={h}; "
                    "use a longer series or a larger fraction"
                )
            z = np.abs(x[origins[cal] + h] - mu[cal, h - 1]) / np.maximum(sd[cal, h - 1], 1e-12)
            f = np.quantile(z, 0.9, axis=0) / Z90
            factor[h - 1] = np.where(np.isfinite(f) & (f > 0), f, 1.0)
        sd = sd * factor[None]
    metrics: dict[int, dict[str, dict]] = {}
    for h in hs:
        ok = (origins + h < x.shape[0]) & (origins >= scored_from)
        if not ok.any():
            continue
        y = x[origins[ok] + h]
        m, s = mu[ok, h - 1], sd[ok, h - 1]
        naive = x[origins[ok]]
        mae = np.asarray(M.mae(y, m), np.float64)
        mase = mae / scale
        mase_p = np.asarray(M.mase(y, naive, scale), np.float64)
        # `metrics.skill`, in float64 (JAX computes in float32 unless x64 is enabled)
        sk = np.where(mase_p > 0, 1.0 - mase / np.where(mase_p > 0, mase_p, 1.0), np.nan)
        crps = np.asarray(np.mean(crps_gaussian(y, m, s), axis=0), np.float64)
        lo, hi = m - Z90 * s, m + Z90 * s
        cov = np.asarray(M.coverage(y, lo, hi), np.float64)
        per = {}
        for j, c in enumerate(chans):
            per[c] = dict(
                mae=float(mae[j]),
                mase=float(mase[j]),
                mase_persistence=float(mase_p[j]),
                skill=float(sk[j]),
                crps=float(crps[j]),
                coverage90=float(cov[j]),
                n=int(ok.sum()),
            )
        metrics[h] = per
    return dict(
        horizons=hs,
        channels=list(chans),
        metrics=metrics,
        origins=origins,
        mean=mu,
        sd=sd,
        scored_from=scored_from,
        sd_factor=factor,
        assumed_controls=assumed,
    )
