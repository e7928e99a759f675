"""Energy balance of a telemetry vector and the differentiable projection that enforces it.

A balance spec (a JSON-able dict, stored in every checkpoint) names which channels define

    dE = (P_in - P_out) dt,   E(y) = sum_k c_k y_k,   P_in(y') = sum_k a_k y'_k,
    P_out(y', y) = sum_k b_k y'_k + sum_leaks g (y_hot - y'_cold)

between the last observed state `y` (time t) and the next state `y'` (t+1): storage
coefficients `c` (energy per channel unit), inflow and outflow powers (interval averages),
and conductive leaks from a channel at t to a channel (or a constant) over the interval.
A leak's cold side is read at t+1 by default; ``"cold_at": "last"`` reads it at t instead
(a control input held over the interval, e.g. the cooling setpoint written into the last
observed row, `idf_jax.nvp.control_inputs`). ``"positive": true`` makes such a leak one-way,
``g max(y_hot - y_cold, 0)`` with both sides read at t (a cooling coil removes heat, it
never heats: right after the setpoint is raised above the air temperature it idles); the
term is then a known constant given y, so the residual stays affine in y'.
The residual is affine in `y'`:  r(y', y) = alpha . y' + beta . y + gamma.

`project` returns the Gaussian conditional of N(mu, diag(v)) on r = 0:

    mu* = mu - v alpha (alpha . mu + beta . y + gamma) / (alpha^T diag(v) alpha)
    v*  = v - (v alpha)^2 / (alpha^T diag(v) alpha)

i.e. the variance-weighted (Mahalanobis) projection onto the balance hyper-plane; it is exact
(up to floating point) and differentiable in mu, v and y.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

_KEYS = {
    "dt",
    "storage",
    "inflow",
    "outflow",
    "leaks",
    "util_channels",
    "layout",
    "heat_flows",
    "unit_energy",
    "helmholtz_lambda",
}


class Balance(NamedTuple):
    """Affine balance residual coefficients over C channels (physical units)."""

    alpha: np.ndarray  # (C,) coefficient of y' (next state)
    beta: np.ndarray  # (C,) coefficient of y (last observed state)
    gamma: float
    storage: np.ndarray  # (C,) c_k, so E = storage . y
    inflow: np.ndarray  # (C,) dt * a_k
    outflow: np.ndarray  # (C,) dt * b_k on y'  (leaks folded in separately)
    leak_hot: np.ndarray  # (C,) dt * g on y (time t)
    leak_cold: np.ndarray  # (C,) dt * g on y' (time t+1)
    leak_const: float  # dt * g * cold_value summed over constant-cold leaks
    defined: bool
    leak_cold_last: np.ndarray | None = None  # (C,) dt * g on y (cold side read at t)
    # one-way leaks dt g max(y[hot] - (y[cold] or cold_value), 0) on y: (hot, cold|-1, dt g, v)
    leak_positive: tuple[tuple[int, int, float, float], ...] = ()


def check_spec(spec: dict | None, channels: tuple[str, ...]) -> None:
    """Raise ValueError naming the problem when `spec` refers to unknown channels or keys."""
    if spec is None:
        return
    if not isinstance(spec, dict):
        raise ValueError(f"balance spec must be a dict or None, got {type(spec).__name__}")
    extra = set(spec) - _KEYS
    if extra:
        raise ValueError(f"balance spec has unknown keys {sorted(extra)}")
    names = set(channels)

    def need(ch, where):
        if ch is not None and ch not in names:
            raise ValueError(f"balance spec {where} names channel {ch!r}, not in {list(channels)}")

    for part in ("storage", "inflow", "outflow"):
        for ch in spec.get(part, {}):
            need(ch, part)
    for leak in spec.get("leaks", []):
        need(leak["hot"], "leaks")
        need(leak.get("cold"), "leaks")
        at = leak.get("cold_at", "next")
        if at not in ("next", "last"):
            raise ValueError(f"balance spec leak cold_at must be 'next' or 'last', got {at!r}")
        if at == "last" and leak.get("cold") is None:
            raise ValueError("balance spec leak with cold_at='last' needs a cold channel")
        if leak.get("positive") and leak.get("cold") is not None and at != "last":
            raise ValueError(
                "a positive (one-way) leak reads its cold channel at t: cold_at='last'"
            )
    for ch in spec.get("util_channels", []):
        need(ch, "util_channels")
    for ch in spec.get("layout", []):
        need(ch, "layout")
    for hf in spec.get("heat_flows", []):
        need(hf["flow"], "heat_flows")
        for ch in hf["hot"]:
            need(ch, "heat_flows")
    if spec.get("storage") and not float(spec.get("dt", 0)) > 0:
        raise ValueError("balance spec needs dt > 0 (seconds)")


def make_balance(spec: dict | None, channels: tuple[str, ...]) -> Balance:
    """Coefficients of the balance for `channels`; `defined=False` when the spec is empty."""
    check_spec(spec, channels)
    c = len(channels)
    z = lambda: np.zeros(c, np.float64)
    storage, inflow, outflow, hot, cold, cold_last = z(), z(), z(), z(), z(), z()
    const = 0.0
    positive: list[tuple[int, int, float, float]] = []
    idx = {ch: i for i, ch in enumerate(channels)}
    defined = bool(spec) and bool(spec.get("storage"))
    if spec is not None and defined:
        dt = float(spec["dt"])
        for ch, v in spec.get("storage", {}).items():
            storage[idx[ch]] += float(v)
        for ch, v in spec.get("inflow", {}).items():
            inflow[idx[ch]] += dt * float(v)
        for ch, v in spec.get("outflow", {}).items():
            outflow[idx[ch]] += dt * float(v)
        for leak in spec.get("leaks", []):
            g = dt * float(leak["g"])
            if leak.get("positive"):
                cold_ch = leak.get("cold")
                positive.append(
                    (
                        idx[leak["hot"]],
                        -1 if cold_ch is None else idx[cold_ch],
                        g,
                        float(leak.get("cold_value", 0.0)),
                    )
                )
                continue
            hot[idx[leak["hot"]]] += g
            if leak.get("cold") is not None and leak.get("cold_at", "next") == "last":
                cold_last[idx[leak["cold"]]] += g
            elif leak.get("cold") is not None:
                cold[idx[leak["cold"]]] += g
            else:
                const += g * float(leak["cold_value"])
    # r = E(y') - E(y) - [P_in dt - P_out dt],
    # P_out dt = outflow.y' + hot.y - cold.y' - cold_last.y - const
    alpha = storage - inflow + outflow - cold
    beta = -storage + hot - cold_last
    gamma = -const
    return Balance(
        alpha,
        beta,
        gamma,
        storage,
        inflow,
        outflow,
        hot,
        cold,
        const,
        defined,
        cold_last,
        tuple(positive),
    )


def _positive_leaks(bal: Balance, y_last, xp):
    """Energy (spec unit) of the one-way leaks over the interval, from the state at t."""
    total = 0.0
    for h, c, g, v in bal.leak_positive:
        cold = y_last[..., c] if c >= 0 else v
        total = total + g * xp.maximum(y_last[..., h] - cold, 0.0)
    return total


def residual(bal: Balance, y_next: Float[Array, "... C"], y_last: Float[Array, "... C"]):
    """r = E(y') - E(y) - (P_in - P_out) dt, in the spec's energy unit; shape (...)."""
    return (
        y_next @ jnp.asarray(bal.alpha, y_next.dtype)
        + y_last @ jnp.asarray(bal.beta, y_next.dtype)
        + bal.gamma
        + _positive_leaks(bal, y_last, jnp)
    )


def flow_scale(bal: Balance, y_next, y_last):
    """Gross energy moved in the interval |dE| + |P_in dt| + |P_out dt| (for relative checks)."""
    xp = np if isinstance(y_next, np.ndarray) else jnp
    d_e = y_next @ bal.storage - y_last @ bal.storage
    p_in = y_next @ bal.inflow
    p_out = y_next @ bal.outflow + y_last @ bal.leak_hot - y_next @ bal.leak_cold - bal.leak_const
    if bal.leak_cold_last is not None:
        p_out = p_out - y_last @ bal.leak_cold_last
    p_out = p_out + _positive_leaks(bal, y_last, xp)
    return xp.abs(d_e) + xp.abs(p_in) + xp.abs(p_out)


def relative_residual(bal: Balance, y_next: np.ndarray, y_last: np.ndarray) -> np.ndarray:
    """|r| / (|dE| + |P_in dt| + |P_out dt|) in float64 numpy (0 where nothing flows)."""
    y_next = np.asarray(y_next, np.float64)
    y_last = np.asarray(y_last, np.float64)
    r = y_next @ bal.alpha + y_last @ bal.beta + bal.gamma + _positive_leaks(bal, y_last, np)
    scale = flow_scale(bal, y_next, y_last)
    return np.abs(r) / np.maximum(scale, 1e-12)


def project(bal: Balance, mean, var, y_last):
    """Condition N(mean, diag(var)) on the balance; returns (mean*, var*) (identity if undefined).

    Shapes: mean, var (..., C) physical units; y_last (..., C).
    """
    if not bal.defined:
        return mean, var
    alpha = jnp.asarray(bal.alpha, mean.dtype)
    r = residual(bal, mean, y_last)
    va = var * alpha
    denom = jnp.sum(va * alpha, axis=-1)
    denom = jnp.maximum(denom, jnp.finfo(mean.dtype).tiny)
    mean_p = mean - va * (r / denom)[..., None]
    var_p = jnp.maximum(var - va**2 / denom[..., None], 0.0)
    return mean_p, var_p
