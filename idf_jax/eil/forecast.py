"""Exogenous forecasts for EIL's model-predictive planner: demand and outside air from history.

`SeasonalForecaster` forecasts a regularly sampled series (offered load, outside
temperature) ``h = 1..H`` intervals ahead from its own past only (never the simulator's
future): a daily profile plus a decaying level correction,

    P(t)          mean of the series at the same time of day over the last `days` days
    r_t           x_t - P(t)                                   (residual)
    b_t           mean of r over the last day                  (slow level: weekday/weekend)
    x^(t+h | t)   P(t+h) + b_t + phi^h (r_t - b_t)

with ``phi`` in [0, 0.99] the lag-1 least-squares coefficient of ``r - b`` on the history.
Before a full day is known the profile is the last value (persistence).

Forecast error. `error_quantiles` backtests the same forecaster on the history it holds
(every origin with a day of past behind it) and returns, per horizon, the standard
deviation of the errors ``sigma_h`` and the largest under-prediction ``q_h`` seen: the
planner's chance constraints keep ``max(z sigma_h, 1.1 q_h, floor)`` of headroom.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable

import numpy as np
from jaxtyping import Float

from .._checks import ArgumentError, positive, positive_int

__all__ = ["SeasonalForecaster"]


class SeasonalForecaster:
    """Daily profile + decaying level correction of one series (module doc).

    `period`: samples per day (96 at 15-minute steps); `days`: days of profile memory
    (the history kept is `days` + 1 days)."""

    def __init__(self, period: int, *, days: int = 7, values: Iterable[float] = ()):
        self.period = positive_int("period", period)
        self.days = positive_int("days", days)
        self.values: collections.deque[float] = collections.deque(
            (float(v) for v in values), maxlen=(self.days + 1) * self.period
        )

    def append(self, value: float) -> None:
        """One new sample (the next interval's)."""
        v = float(value)
        if not np.isfinite(v):
            raise ArgumentError("value", f"value must be finite, got {value!r}")
        self.values.append(v)

    def __len__(self) -> int:
        return len(self.values)

    # ------------------------------------------------------------------ forecasting
    def _profile(self, x: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Mean of x at the same time of day as positions `idx`, over the days before each
        (NaN where no earlier day is known)."""
        p = self.period
        acc = np.zeros(idx.shape, np.float64)
        cnt = np.zeros(idx.shape, np.float64)
        for k in range(1, self.days + 1):
            j = idx - k * p
            ok = j >= 0
            acc += np.where(ok, x[np.maximum(j, 0)], 0.0)
            cnt += ok
        return np.where(cnt > 0, acc / np.maximum(cnt, 1.0), np.nan)

    def _parts(self, x: np.ndarray):
        """Profile at every position (positions with no earlier day: the value itself),
        residuals, slow level and phi."""
        n = x.shape[0]
        idx = np.arange(n)
        prof = self._profile(x, idx)
        prof = np.where(np.isnan(prof), x, prof)
        r = x - prof
        csum = np.concatenate([[0.0], np.cumsum(r)])
        lo = np.maximum(idx + 1 - self.period, 0)
        level = (csum[idx + 1] - csum[lo]) / (idx + 1 - lo)
        e = r - level
        if n > 8 and float(np.dot(e[:-1], e[:-1])) > 1e-12:
            phi = float(np.dot(e[1:], e[:-1]) / np.dot(e[:-1], e[:-1]))
        else:
            phi = 0.9
        return prof, r, level, float(np.clip(phi, 0.0, 0.99))

    def forecast(self, horizon: int) -> Float[np.ndarray, " H"]:
        """The next `horizon` values (module doc); ValueError before any value is known."""
        horizon = positive_int("horizon", horizon)
        if not self.values:
            raise ArgumentError("values", "no history yet: append() at least one value")
        x = np.asarray(self.values, np.float64)
        n = x.shape[0]
        if n <= self.period:
            return np.full((horizon,), x[-1])
        _, r, level, phi = self._parts(x)
        fut = n + np.arange(horizon)  # positions n .. n+H-1 (the next H intervals)
        prof = self._profile(np.concatenate([x, np.zeros(horizon)]), fut)
        decay = phi ** np.arange(1, horizon + 1)
        return prof + level[-1] + decay * (r[-1] - level[-1])

    def error_quantiles(self, horizon: int) -> tuple[np.ndarray, np.ndarray, int]:
        """(sigma_h (H,), q_h (H,), n origins): the standard deviation of the h-step errors
        and the largest under-prediction (actual - forecast, >= 0) of a backtest over the
        history held (module doc); zeros when fewer than 8 origins are known."""
        horizon = positive_int("horizon", horizon)
        x = np.asarray(self.values, np.float64)
        n = x.shape[0]
        origins = np.arange(self.period, n - 1)
        if origins.size < 8:
            return np.zeros(horizon), np.zeros(horizon), int(origins.size)
        prof, r, level, phi = self._parts(x)
        sig = np.zeros(horizon)
        q = np.zeros(horizon)
        for h in range(1, horizon + 1):
            o = origins[origins + h < n]
            if o.size < 2:
                sig[h - 1], q[h - 1] = sig[h - 2], q[h - 2]
                continue
            pred = prof[o + h] + level[o] + phi**h * (r[o] - level[o])
            err = x[o + h] - pred
            sig[h - 1] = float(np.sqrt(np.mean(err**2)))
            q[h - 1] = float(max(0.0, err.max()))
        return sig, q, int(origins.size)


def check_period(interval_s: float) -> int:
    """Samples per day at `interval_s` seconds (ArgumentError unless it divides a day)."""
    positive("interval_s", interval_s)
    p = 86400.0 / float(interval_s)
    if abs(p - round(p)) > 1e-6:
        raise ArgumentError("interval_s", f"interval_s must divide a day, got {interval_s}")
    return int(round(p))
