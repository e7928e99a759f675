"""Regime detection: exact PELT change points and the blueprint's regime summary.

`pelt(signal, penalty, min_size, cost)` minimises the penalised segmentation cost

    sum_k C(y[t_k : t_{k+1}]) + penalty * (#change points)

exactly with PELT (Killick, Fearnhead & Eckley 2012): dynamic programming
F(t) = min_s F(s) + C(y[s:t]) + penalty, with candidates s pruned once
F(s) + C(y[s:t]) > F(t) (valid because adding a change point never raises C).
Costs (segment y of length m, from prefix sums, O(1) each, vectorised over candidates):

- ``'l2'``:  C = sum (y - mean)^2          (change in mean; ruptures' ``"l2"``)
- ``'normal'``: C = m log(var + 1e-6)      (change in mean and variance, i.i.d. Gaussian,
  -2 log-likelihood up to constants; ruptures' ``"normal"`` for 1-D signals)
- ``'ar1'``: C = (m - 1) log(s^2 + eps), s^2 the residual variance of the least-squares
  AR(1) fit y_i = a + b y_{i-1} + e_i inside the segment, y standardised (conditional
  likelihood: a segment's first value is a regressor only, so change points are located to
  +-1 sample): the Gaussian -2 log-likelihood of an autocorrelated segment, so a change in
  level, variance or dynamics is a change point and serial correlation alone is not
  (eps = 1e-6).

Penalties (``penalty=`` a number, or a rule): ``'bic'`` (Schwarz) = (d + 1) log n per change
and ``'mbic'`` (Zhang & Siegmund 2007, as in R's `changepoint`) = (d + 2) log n, with d the
parameters of one segment (l2: 1, normal: 2, ar1: 3); for ``'l2'`` (a sum of squares, not a
log-likelihood) both are multiplied by sigma^2, the noise scale estimated robustly from first
differences (MAD / (0.6745 sqrt 2)); for the likelihood costs by `tail_factor`, the
heavy-tail correction of the likelihood ratio. The default is ``'mbic'``: plain BIC
over-segments long series. The default cost of `detect_regime_shift` is ``'ar1'``:
telemetry is autocorrelated, and an i.i.d. cost reads every slow drift of an AR(1) process
as a run of level changes.

`detect_regime_shift(energy_series)` returns the blueprint's keys, computed from the
segmentation (see its docstring).
"""

from __future__ import annotations

import math

import numpy as np
from jaxtyping import ArrayLike

__all__ = [
    "pelt",
    "default_penalty",
    "detect_regime_shift",
    "rolling_entropy",
    "robust_sigma",
    "tail_factor",
]

_COSTS = ("l2", "normal", "ar1")
_PARAMS = {"l2": 1, "normal": 2, "ar1": 3}
_RULES = ("bic", "mbic")
_MIN_SIZE = {"l2": 1, "normal": 2, "ar1": 4}


def robust_sigma(y: np.ndarray) -> float:
    """Noise scale from first differences: MAD(diff y) / (0.6745 * sqrt 2)."""
    d = np.diff(np.asarray(y, dtype=np.float64))
    if d.size == 0:
        return 0.0
    mad = np.median(np.abs(d - np.median(d)))
    s = mad / (0.6744897501960817 * math.sqrt(2.0))
    if s <= 0:
        s = float(np.std(d)) / math.sqrt(2.0)
    return float(s)


def _ar1_residuals(y: np.ndarray) -> np.ndarray:
    x, z = y[:-1] - y[:-1].mean(), y[1:] - y[1:].mean()
    b = float(x @ z / max(float(x @ x), 1e-300))
    return z - b * x


def tail_factor(y: np.ndarray, cost: str, bkps: list[int] | None = None) -> float:
    """max(1, (kappa - 1) / 2), kappa the kurtosis of the residuals inside the segments
    ending at `bkps` (default: one segment): AR(1) residuals for 'ar1', deviations from the
    segment mean for 'normal'; 1 for 'l2'.

    Under innovations with kurtosis kappa the Gaussian likelihood-ratio statistic of a
    variance change is (kappa - 1) / 2 times larger than under Gaussian ones (the variance of
    e^2 is (kappa - 1) sigma^4 instead of 2 sigma^4; Inclan & Tiao 1994), so the penalty is
    scaled by it: bursts of a heavy-tailed but stationary series are not regimes. Residuals
    are taken within segments so that the level jumps at true change points do not count as
    heavy tails."""
    if cost == "l2":
        return 1.0
    y = np.asarray(y, np.float64)
    ends = [y.size] if not bkps else list(bkps)
    parts = []
    for s, e in zip([0] + ends[:-1], ends):
        seg = y[s:e]
        if seg.size > 3:
            parts.append(_ar1_residuals(seg) if cost == "ar1" else seg - seg.mean())
    if not parts:
        return 1.0
    r = np.concatenate(parts)
    v = float(np.mean(r * r))
    if v <= 0:
        return 1.0
    kappa = float(np.mean(r**4)) / (v * v)
    return max(1.0, (kappa - 1.0) / 2.0)


def default_penalty(y: np.ndarray, cost: str = "l2", rule: str = "mbic") -> float:
    """Penalty per change point by `rule` ('bic' or 'mbic', module doc) for `cost`, for
    Gaussian residuals (`pelt` multiplies it by `tail_factor` when it chooses the penalty)."""
    if cost not in _COSTS:
        raise ValueError(f"cost must be one of {_COSTS}, got {cost!r}")
    if rule not in _RULES:
        raise ValueError(f"penalty rule must be one of {_RULES}, got {rule!r}")
    n = max(len(y), 2)
    d = _PARAMS[cost]
    pen = (d + (1 if rule == "bic" else 2)) * math.log(n)
    if cost == "l2":
        s = robust_sigma(y)
        return max(s * s, 1e-12) * pen
    return pen


def _check_signal(signal) -> np.ndarray:
    y = np.asarray(signal, dtype=np.float64)
    if y.ndim != 1:
        raise ValueError(f"signal must be 1-D, got shape {y.shape}")
    if y.size < 2:
        raise ValueError(f"signal needs at least 2 samples, got {y.size}")
    if not np.all(np.isfinite(y)):
        raise ValueError("signal contains NaN or inf")
    return y


def _prefixes(yc: np.ndarray, cost: str) -> tuple[np.ndarray, np.ndarray]:
    """(end, start) prefix tables: a segment [s, t) has sums end[t] - start[s]."""
    if cost != "ar1":
        p = np.stack(
            [
                np.concatenate([[0.0], np.cumsum(yc)]),
                np.concatenate([[0.0], np.cumsum(yc * yc)]),
            ],
            axis=1,
        )
        return p, p
    x, z = yc[:-1], yc[1:]  # pair i = (y_{i-1}, y_i), i = 1..n-1
    f = np.stack([np.ones_like(x), x, z, x * x, z * z, x * z], axis=1)
    q = np.concatenate([np.zeros((2, 6)), np.cumsum(f, axis=0)], axis=0)  # q[j]: pairs i < j
    n = yc.size
    # pairs i >= s + 1 belong to [s, t): the pair straddling a change point belongs to no
    # segment (conditional likelihood), so a step is located to within one sample
    start = q[np.minimum(np.arange(n + 1) + 1, n)]
    return q, start


def _segment_costs(d: np.ndarray, m: np.ndarray, cost: str, eps: float) -> np.ndarray:
    if cost == "l2":
        return np.maximum(d[:, 1] - d[:, 0] ** 2 / m, 0.0)
    if cost == "normal":
        sse = np.maximum(d[:, 1] - d[:, 0] ** 2 / m, 0.0)
        return m * np.log(sse / m + eps)
    k, sx, sz, sxx, szz, sxz = d.T
    k = np.maximum(k, 1.0)
    cxx = np.maximum(sxx - sx * sx / k, 0.0)
    cxz = sxz - sx * sz / k
    czz = np.maximum(szz - sz * sz / k, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        sse = np.where(cxx > 1e-12 * (czz + 1e-300), czz - cxz * cxz / cxx, czz)
    return k * np.log(np.maximum(sse, 0.0) / k + eps)


def pelt(
    signal: ArrayLike,
    penalty: float | str | None = None,
    *,
    min_size: int = 2,
    cost: str = "l2",
) -> list[int]:
    """Exact penalised change-point segmentation by PELT.

    Args:
        signal: (n,) real series.
        penalty: cost added per change point (>= 0), or a rule 'bic' / 'mbic' (module
          doc; for 'normal' and 'ar1' multiplied by `tail_factor` of the residuals within
          the segmentation, iterated to a fixed point); default 'mbic'.
        min_size: minimum segment length (>= 1; >= 2 for 'normal', >= 4 for 'ar1').
        cost: 'l2' (mean change), 'normal' (mean and variance change) or 'ar1' (change in
          the level, variance or dynamics of an autocorrelated series).

    Returns:
        Sorted segment end indices, the last one equal to n (ruptures' convention):
        change points are all but the last.
    """
    y = _check_signal(signal)
    if cost not in _COSTS:
        raise ValueError(f"cost must be one of {_COSTS}, got {cost!r}")
    min_size = int(min_size)
    if min_size < _MIN_SIZE[cost]:
        raise ValueError(
            f"min_size too small for cost {cost!r}: {min_size} (at least {_MIN_SIZE[cost]})"
        )
    n = y.size
    if penalty is None or isinstance(penalty, str):
        base = default_penalty(y, cost, "mbic" if penalty is None else penalty)
        if n < 2 * min_size:
            return [n]
        # the heavy-tail correction from the residuals within the current segmentation,
        # to a fixed point (a few passes: the factor only grows as segments merge)
        factor, bkps = 1.0, _pelt(y, base, min_size, cost)
        for _ in range(8):
            new = tail_factor(y, cost, bkps)
            if new <= factor * (1 + 1e-3):
                break
            factor = new
            bkps = _pelt(y, base * factor, min_size, cost)
        return bkps
    pen = float(penalty)
    if not (pen >= 0 and math.isfinite(pen)):
        raise ValueError(f"penalty must be finite and >= 0, got {penalty}")
    if n < 2 * min_size:
        return [n]
    return _pelt(y, pen, min_size, cost)


def _pelt(y: np.ndarray, pen: float, min_size: int, cost: str) -> list[int]:
    n = y.size
    yc = y - y.mean()  # centred: prefix sums stay well conditioned
    eps = 1e-6
    if cost == "ar1":
        # standardised: each segment drops its first pair, so the number of terms (and with
        # it the cost of a unit change) varies with the segmentation; in units of the
        # series' own spread the result does not depend on the units of y
        sd = float(np.std(yc))
        yc = yc / (sd if sd > 0 else 1.0)
    end, start = _prefixes(yc, cost)

    F = np.full(n + 1, np.inf)
    F[0] = -pen
    last = np.zeros(n + 1, dtype=np.int64)
    # evaluable candidates s (t - s >= min_size), kept as contiguous arrays of s, start[s]
    # and F[s], so each step is a handful of vector operations
    cs = np.zeros(1, dtype=np.int64)
    cp = start[:1].copy()
    cF = np.array([-pen])
    prune_every = 8
    for t in range(min_size, n + 1):
        if t > min_size:  # admit s = t - min_size
            u = t - min_size
            cs = np.append(cs, u)
            cp = np.concatenate([cp, start[u : u + 1]])
            cF = np.append(cF, F[u])
        m = (t - cs).astype(np.float64)
        vals = cF + _segment_costs(end[t] - cp, m, cost, eps)
        j = int(np.argmin(vals))
        F[t] = vals[j] + pen
        last[t] = cs[j]
        # prune (PELT rule, valid at any t): drop s with F(s) + C(s, t) > F(t)
        if t % prune_every == 0:
            keep = vals <= F[t]
            cs, cp, cF = cs[keep], cp[keep], cF[keep]
    bkps = []
    t = n
    while t > 0:
        bkps.append(int(t))
        t = int(last[t])
    return sorted(bkps)


def rolling_entropy(y: np.ndarray, window: int) -> np.ndarray:
    """Local differential entropy of a Gaussian fit: S_t = 0.5 log(2 pi e var_t) [nats].

    var_t is the variance of the `window` samples ending at t; only full windows are
    used, so the result has n - window + 1 values (window is capped at n).
    """
    y = np.asarray(y, dtype=np.float64)
    window = min(int(window), y.size)
    c1 = np.concatenate([[0.0], np.cumsum(y)])
    c2 = np.concatenate([[0.0], np.cumsum(y * y)])
    hi = np.arange(window, y.size + 1)
    lo = hi - window
    mean = (c1[hi] - c1[lo]) / window
    var = np.maximum((c2[hi] - c2[lo]) / window - mean * mean, 0.0)
    floor = 1e-12 * max(float(np.var(y)), 1e-300)
    return 0.5 * np.log(2 * math.pi * math.e * (var + floor))


def _level_name(p: float) -> str:
    """Level of a segment from its mean's position p in [0, 1] between the extremes."""
    if p < 1 / 3:
        return "low"
    if p > 2 / 3:
        return "high"
    return "normal"


def detect_regime_shift(
    energy_series: ArrayLike,
    *,
    penalty: float | str | None = None,
    min_size: int = 8,
    cost: str = "ar1",
    horizon: int = 1,
    window: int = 10,
) -> dict:
    """Thermodynamic regime summary of an energy series (blueprint contract).

    Segments the series with `pelt`; the current regime is the last segment. Returns

    - ``current_regime``: 'low' / 'normal' / 'high' — where the last segment's mean lies
      between the lowest and highest segment means (lower, middle, upper third;
      'normal' when there is one segment or all means lie within 2 noise scales);
    - ``stability_score`` = 1 / (1 + std(dS/dt)) with S the rolling Gaussian entropy of
      the series standardised by its robust noise scale (blueprint formula), in (0, 1];
    - ``transition_probability`` = 1 - (1 - h)^horizon with the per-step hazard
      h = (k + 1) / (n + 2) (Laplace estimate from k change points in n steps);
    - ``next_likely_regime``: the most frequent observed successor of the current
      level (excluding itself); if none was observed, the neighbouring level in the
      direction of the last segment's trend;
    - plus ``change_points`` (indices), ``segments`` (start, end, mean) and ``num_regimes``.
    """
    y = _check_signal(energy_series)
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    if window < 2:
        raise ValueError(f"window must be >= 2, got {window}")
    n = y.size
    bkps = pelt(y, penalty, min_size=min(min_size, max(1, n // 2)), cost=cost)
    starts = [0] + bkps[:-1]
    segs = [(s, e, float(y[s:e].mean())) for s, e in zip(starts, bkps)]
    means = np.array([m for _, _, m in segs])
    sigma = robust_sigma(y)
    spread = float(means.max() - means.min())
    if len(segs) == 1 or spread <= 2 * sigma:  # levels within noise: one regime
        names = ["normal"] * len(segs)
    else:
        names = [_level_name((m - means.min()) / spread) for m in means]
    current = names[-1]
    scale = sigma if sigma > 0 else (float(np.std(y)) or 1.0)
    S = rolling_entropy(y / scale, window)
    stability = 1.0 / (1.0 + float(np.std(np.gradient(S))))
    k = len(bkps) - 1
    h = (k + 1) / (n + 2)
    p_trans = 1.0 - (1.0 - h) ** horizon
    succ: dict[str, int] = {}
    for a, b in zip(names[:-1], names[1:]):
        if a == current and b != current:
            succ[b] = succ.get(b, 0) + 1
    if succ:
        nxt = max(sorted(succ), key=lambda r: succ[r])
    else:
        s, e, _ = segs[-1]
        seg = y[s:e]
        slope = float(np.polyfit(np.arange(seg.size), seg, 1)[0]) if seg.size > 1 else 0.0
        ladder = ["low", "normal", "high"]
        i = ladder.index(current)
        if slope > 0 and i < 2:
            nxt = ladder[i + 1]
        elif slope < 0 and i > 0:
            nxt = ladder[i - 1]
        else:
            nxt = ladder[1] if current != "normal" else ("high" if slope >= 0 else "low")
    return {
        "current_regime": current,
        "stability_score": float(stability),
        "transition_probability": float(p_trans),
        "next_likely_regime": nxt,
        "change_points": [int(b) for b in bkps[:-1]],
        "segments": [
            {"start": s, "end": e, "mean": m, "regime": nm} for (s, e, m), nm in zip(segs, names)
        ],
        "num_regimes": len(segs),
    }
