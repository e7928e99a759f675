"""Forecast baselines a skeptic would pick, multi-horizon, with residual-based Gaussian sds.

Every baseline maps a (T, C) series, forecast origins o (N,) and horizons (H,) to point
forecasts (N, H, C) of x[o + h] from x[: o + 1] (`point`); `calibrate` turns one into a
`Calibrated` forecaster with a per-horizon, per-channel predictive sd, the RMS of its errors
on calibration origins (training or validation, never test), so every baseline gets a
Gaussian predictive N(point, sd_h^2) and CRPS / coverage are comparable with the NVP's.

- `Persistence`: x[o] at every horizon.
- `SeasonalNaive(period)`: the value one period before the target, x[o + h - k period] with
  k = ceil(h / period) (period = steps per day: the same time yesterday).
- `RidgeAR`: *direct* strategy, one closed-form ridge regression per horizon of the increment
  x[o + h] - x[o] on the last `lags` steps of every channel (standardised) and the
  time-of-day of the target (sin / cos of 2 pi (o + h) / steps_per_day); fitted on training
  origins, the ridge strength chosen per horizon on validation origins. `exog` names
  columns that are known over the horizon (control inputs such as the setpoint, chosen not
  measured; row t: the value applied over the interval ending at t): their values at
  o+1 .. o+h are features too, so the ridge gets the same control information as the NVP.
- `HoltWinters`: ETS(A, Ad, A), additive damped trend and additive season, its smoothing
  parameters and initial states fitted by statsmodels (`ExponentialSmoothing`, an optional
  peer imported on first use) on one contiguous training block; the error-correction
  recursion is then run over the series with those parameters fixed (online filtering of the
  observed past), and the h-step forecast from origin o is the closed form
  l_o + (phi + ... + phi^h) b_o + s_{o + h - k m} (*iterated* in the model's own sense).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import Protocol

import numpy as np
from jaxtyping import Float, Int

__all__ = [
    "Baseline",
    "Calibrated",
    "HoltWinters",
    "Persistence",
    "RidgeAR",
    "SeasonalNaive",
    "calibrate",
]


class Baseline(Protocol):
    """Point forecaster: `point(x, origins, horizons)` -> (N, H, C)."""

    def point(self, x: np.ndarray, origins: np.ndarray, horizons: Sequence[int]) -> np.ndarray: ...


def _check(x, origins, horizons, min_origin: int = 0):
    x = np.asarray(x, np.float64)
    if x.ndim != 2:
        raise ValueError(f"series must be (T, C), got shape {x.shape}")
    o = np.asarray(origins, np.int64).reshape(-1)
    hs = np.asarray([int(h) for h in horizons], np.int64)
    if hs.size == 0 or hs.min() < 1:
        raise ValueError(f"horizons must be integers >= 1, got {list(horizons)}")
    if o.size and (o.min() < min_origin or o.max() >= x.shape[0]):
        raise ValueError(
            f"origins must lie in [{min_origin}, {x.shape[0] - 1}], got {o.min()}..{o.max()}"
        )
    return x, o, hs


@dataclasses.dataclass(frozen=True)
class Persistence:
    """x[o] at every horizon."""

    def point(
        self, x: Float[np.ndarray, "T C"], origins: Int[np.ndarray, " N"], horizons: Sequence[int]
    ) -> Float[np.ndarray, "N H C"]:
        x, o, hs = _check(x, origins, horizons)
        return np.repeat(x[o][:, None, :], len(hs), axis=1)


@dataclasses.dataclass(frozen=True)
class SeasonalNaive:
    """x[o + h - k period], k = ceil(h / period): the last observed value at the same phase."""

    period: int

    def __post_init__(self):
        if int(self.period) < 1:
            raise ValueError(f"period must be >= 1, got {self.period}")

    def point(
        self, x: Float[np.ndarray, "T C"], origins: Int[np.ndarray, " N"], horizons: Sequence[int]
    ) -> Float[np.ndarray, "N H C"]:
        x, o, hs = _check(x, origins, horizons, min_origin=self.period - 1)
        k = -(-hs // self.period)
        idx = o[:, None] + hs[None, :] - k[None, :] * self.period
        return x[idx]


def _tod(t: np.ndarray, steps_per_day: int) -> np.ndarray:
    a = 2.0 * np.pi * (t % steps_per_day) / steps_per_day
    return np.stack([np.sin(a), np.cos(a)], axis=-1)


@dataclasses.dataclass(frozen=True)
class RidgeAR:
    """Direct ridge AR with time-of-day features (fields: fitted arrays; use `RidgeAR.fit`)."""

    lags: int
    steps_per_day: int
    horizons: tuple[int, ...]
    feat_mean: np.ndarray  # (F,)
    feat_std: np.ndarray  # (F,)
    weights: np.ndarray  # (H, F, C)
    bias: np.ndarray  # (H, C)
    lambdas: tuple[float, ...]  # chosen ridge strength per horizon
    exog: tuple[int, ...] = ()  # columns known over the horizon (controls)

    @staticmethod
    def _design(x, o, h, lags, steps_per_day, exog=()):
        j = o[:, None] + np.arange(-lags + 1, 1)[None, :]
        lagged = x[j].reshape(len(o), -1)
        parts = [lagged, _tod(o + h, steps_per_day)]
        if exog:  # known future controls at o+1 .. o+h (held at the last row past the end)
            f = np.minimum(o[:, None] + np.arange(1, int(h) + 1)[None, :], x.shape[0] - 1)
            parts.append(x[f][:, :, list(exog)].reshape(len(o), -1))
        return np.concatenate(parts, axis=1)

    @classmethod
    def fit(
        cls,
        x: Float[np.ndarray, "T C"],
        train_origins: Int[np.ndarray, " N"],
        horizons: Sequence[int],
        *,
        lags: int,
        steps_per_day: int,
        val_origins: Int[np.ndarray, " M"] | None = None,
        lambdas: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0),
        exog: Sequence[int] = (),
    ) -> RidgeAR:
        """Closed-form fit on `train_origins` (each needs o + h < T); the strength per horizon
        is the one of `lambdas` (times N) with the least validation MSE (standardised by the
        training target std), or the smallest one without validation origins."""
        if int(lags) < 1 or int(steps_per_day) < 1:
            raise ValueError(f"lags and steps_per_day must be >= 1, got {lags}, {steps_per_day}")
        x, o, hs = _check(x, train_origins, horizons, min_origin=lags - 1)
        if len(o) < 2:
            raise ValueError("RidgeAR needs at least two training origins")
        ex = tuple(int(j) for j in exog)
        if any(not 0 <= j < x.shape[1] for j in ex):
            raise ValueError(f"exog columns {list(ex)} must lie in [0, {x.shape[1] - 1}]")
        f0 = cls._design(x, o, 0, lags, steps_per_day)[:, : lags * x.shape[1]]
        mean0 = np.concatenate([f0.mean(0), np.zeros(2)])
        std0 = np.concatenate([np.where(f0.std(0) > 1e-12, f0.std(0), 1.0), np.ones(2)])
        if ex:  # future controls standardised like their lagged values
            xm, xs = x[o][:, list(ex)].mean(0), x[o][:, list(ex)].std(0)
            xs = np.where(xs > 1e-12, xs, 1.0)
            hmax = int(hs.max())
            mean0 = np.concatenate([mean0, np.tile(xm, hmax)])
            std0 = np.concatenate([std0, np.tile(xs, hmax)])
        ws, bs, lams = [], [], []
        nbase = lags * x.shape[1] + 2

        def cut(v, h):  # feature statistics for horizon h (h future control rows)
            return v[: nbase + len(ex) * int(h)]

        for h in hs:
            ok = o + h < x.shape[0]
            if ok.sum() < 2:
                raise ValueError(f"fewer than two training origins have a target at h={h}")
            oh = o[ok]
            mean, std = cut(mean0, h), cut(std0, h)
            a = (cls._design(x, oh, h, lags, steps_per_day, ex) - mean) / std
            d = x[oh + h] - x[oh]
            am, dm = a.mean(0), d.mean(0)
            ac, dc = a - am, d - dm
            gram, rhs = ac.T @ ac, ac.T @ dc
            eye = np.eye(gram.shape[0])
            sols = [
                (float(lam), np.linalg.solve(gram + lam * len(a) * eye, rhs)) for lam in lambdas
            ]
            if val_origins is not None and len(val_origins):
                vo = np.asarray(val_origins, np.int64)
                vo = vo[(vo >= lags - 1) & (vo + h < x.shape[0])]
                av = (cls._design(x, vo, h, lags, steps_per_day, ex) - mean) / std
                dv = x[vo + h] - x[vo]
                scale = np.where(d.std(0) > 1e-12, d.std(0), 1.0)
                errs = [np.mean((((av - am) @ w + dm - dv) / scale) ** 2) for _, w in sols]
                lam, w = sols[int(np.argmin(errs))]
            else:
                lam, w = sols[0]
            bs.append(dm - am @ w)
            ws.append(np.pad(w, ((0, len(mean0) - w.shape[0]), (0, 0))))  # unused rows: 0
            lams.append(lam)
        return cls(
            int(lags),
            int(steps_per_day),
            tuple(int(h) for h in hs),
            mean0,
            std0,
            np.stack(ws),
            np.stack(bs),
            tuple(lams),
            ex,
        )

    def point(
        self, x: Float[np.ndarray, "T C"], origins: Int[np.ndarray, " N"], horizons: Sequence[int]
    ) -> Float[np.ndarray, "N H C"]:
        x, o, hs = _check(x, origins, horizons, min_origin=self.lags - 1)
        out = np.empty((len(o), len(hs), x.shape[1]))
        for i, h in enumerate(hs):
            if int(h) not in self.horizons:
                raise ValueError(f"RidgeAR was fitted for horizons {self.horizons}, not {h}")
            k = self.horizons.index(int(h))
            a = self._design(x, o, h, self.lags, self.steps_per_day, self.exog)
            n = a.shape[1]
            a = (a - self.feat_mean[:n]) / self.feat_std[:n]
            out[:, i] = x[o] + a @ self.weights[k][:n] + self.bias[k]
        return out


@dataclasses.dataclass(frozen=True)
class HoltWinters:
    """ETS(A, Ad, A) per channel with fixed fitted parameters (use `HoltWinters.fit`)."""

    period: int
    start: int  # series index of the first step of the fit block (the recursion starts here)
    alpha: np.ndarray  # (C,) level smoothing
    beta: np.ndarray  # (C,) trend smoothing
    gamma: np.ndarray  # (C,) season smoothing
    phi: np.ndarray  # (C,) trend damping
    level0: np.ndarray  # (C,) level before `start`
    trend0: np.ndarray  # (C,)
    season0: np.ndarray  # (period, C) seasons of the `period` steps before `start`

    @classmethod
    def fit(cls, x: Float[np.ndarray, "T C"], start: int, stop: int, period: int) -> HoltWinters:
        """Fit on x[start:stop] (one contiguous training block, at least two periods) with
        statsmodels' `ExponentialSmoothing(trend="add", damped_trend=True, seasonal="add")`."""
        try:
            from statsmodels.tsa.holtwinters import ExponentialSmoothing
        except ModuleNotFoundError as e:  # pragma: no cover - optional peer
            raise ModuleNotFoundError("the HoltWinters baseline needs statsmodels") from e
        x = np.asarray(x, np.float64)
        if x.ndim != 2:
            raise ValueError(f"series must be (T, C), got shape {x.shape}")
        if int(period) < 2:
            raise ValueError(f"period must be >= 2, got {period}")
        if not 0 <= start < stop <= x.shape[0] or stop - start < 2 * period + 2:
            raise ValueError(
                f"fit block [{start}, {stop}) must lie in the series and hold more than two "
                f"periods of {period} steps"
            )
        cols = []
        for c in range(x.shape[1]):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = ExponentialSmoothing(
                    x[start:stop, c],
                    trend="add",
                    damped_trend=True,
                    seasonal="add",
                    seasonal_periods=int(period),
                    initialization_method="estimated",
                ).fit()
            p = res.params
            cols.append(
                (
                    p["smoothing_level"],
                    p["smoothing_trend"],
                    p["smoothing_seasonal"],
                    p["damping_trend"],
                    p["initial_level"],
                    p["initial_trend"],
                    np.asarray(p["initial_seasons"], np.float64),
                )
            )
        a, b, g, ph, l0, b0, s0 = zip(*cols)
        arr = lambda v: np.asarray(v, np.float64)  # noqa: E731
        return cls(
            int(period),
            int(start),
            arr(a),
            arr(b),
            arr(g),
            arr(ph),
            arr(l0),
            arr(b0),
            np.stack(s0, axis=1),
        )

    def states(self, x: Float[np.ndarray, "T C"]):
        """(level, trend, season) after every step t >= start: (T', C), (T', C), (m + T', C)
        with T' = T - start (season[m + t'] is the season updated at step start + t')."""
        x = np.asarray(x, np.float64)[self.start :]
        m = self.period
        n, c = x.shape
        lv, tr = np.empty((n, c)), np.empty((n, c))
        se = np.empty((m + n, c))
        se[:m] = self.season0
        l_prev, b_prev = self.level0, self.trend0
        a, be, g, ph = self.alpha, self.beta, self.gamma, self.phi
        for t in range(n):
            s_old = se[t]
            base = l_prev + ph * b_prev
            l_new = a * (x[t] - s_old) + (1 - a) * base
            tr[t] = be * (l_new - l_prev) + (1 - be) * ph * b_prev
            se[m + t] = g * (x[t] - base) + (1 - g) * s_old
            lv[t] = l_new
            l_prev, b_prev = l_new, tr[t]
        return lv, tr, se

    def one_step_fitted(self, x: Float[np.ndarray, "T C"]) -> Float[np.ndarray, "Tp C"]:
        """One-step forecasts of x[start:], l_{t-1} + phi b_{t-1} + s_{t-m} (statsmodels'
        `fittedvalues` on the fit block)."""
        lv, tr, se = self.states(x)
        n = lv.shape[0]
        lp = np.vstack([self.level0[None], lv[:-1]])
        bp = np.vstack([self.trend0[None], tr[:-1]])
        return lp + self.phi * bp + se[:n]

    def point(
        self, x: Float[np.ndarray, "T C"], origins: Int[np.ndarray, " N"], horizons: Sequence[int]
    ) -> Float[np.ndarray, "N H C"]:
        x, o, hs = _check(x, origins, horizons, min_origin=self.start)
        lv, tr, se = self.states(x[: o.max() + 1] if o.size else x[: self.start + 1])
        m = self.period
        r = o - self.start
        out = np.empty((len(o), len(hs), x.shape[1]))
        for i, h in enumerate(hs):
            damp = sum(self.phi**j for j in range(1, int(h) + 1))
            k = 1 + (int(h) - 1) // m
            out[:, i] = lv[r] + damp * tr[r] + se[m + r + h - k * m]
        return out


@dataclasses.dataclass(frozen=True)
class Calibrated:
    """A baseline with a per-horizon Gaussian sd (H, C), from `calibrate`."""

    baseline: Baseline
    horizons: tuple[int, ...]
    sd: np.ndarray  # (H, C)

    def predict(
        self, x: Float[np.ndarray, "T C"], origins: Int[np.ndarray, " N"]
    ) -> tuple[Float[np.ndarray, "N H C"], Float[np.ndarray, "N H C"]]:
        """(mean, sd), each (N, H, C), at the calibrated horizons."""
        mu = self.baseline.point(x, origins, self.horizons)
        return mu, np.broadcast_to(self.sd[None], mu.shape).copy()


def calibrate(
    baseline: Baseline,
    x: Float[np.ndarray, "T C"],
    calib_origins: Int[np.ndarray, " N"],
    horizons: Sequence[int],
) -> Calibrated:
    """Residual-based sd: the RMS error of `baseline` at each horizon over the calibration
    origins that have a target (training or validation origins, never test)."""
    x = np.asarray(x, np.float64)
    o = np.asarray(calib_origins, np.int64)
    hs = tuple(int(h) for h in horizons)
    sd = []
    for h in hs:
        oh = o[o + h < x.shape[0]]
        if len(oh) < 2:
            raise ValueError(f"fewer than two calibration origins have a target at h={h}")
        err = baseline.point(x, oh, (h,))[:, 0] - x[oh + h]
        sd.append(np.sqrt(np.mean(err**2, axis=0)))
    return Calibrated(baseline, hs, np.maximum(np.stack(sd), 1e-12))
