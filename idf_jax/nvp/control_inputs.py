"""Control inputs of a forecaster: which values a forecast is conditioned on, and the layout.

A control (e.g. the cooling setpoint) is chosen by an operator or a controller, not
measured, so a forecast must be told its value over the forecast interval; it is an input
of the model, never a constant baked into a checkpoint (`SeriesMeta.controls`).

Two layouts of the same data:

- *lag* (what telemetry logs, what callers pass): row t holds the state observed at t and
  the control applied over the interval that ended at t (the interval whose meter averages
  row t reports), ``c_t``;
- *lead* (what the model reads, as `idf_jax.nvp.control`): row t holds the state at t and
  the control applied over the next interval [t, t+1), ``c_{t+1}``, so the last row of a
  window carries the control of the step being forecast. `lead_layout` converts; the
  conservation balance reads the setpoint in the last row (``"cold_at": "last"``).

`resolve` decides the control values of a forecast: the caller's, else the last one in the
history (held), else the checkpoint's documented default (`SeriesMeta.defaults`; the
prediction then lists it in ``assumed_controls``), else an error naming the control. A
checkpoint without a control refuses a value for it unless the value equals the one it was
trained with held constant (`SeriesMeta.conditions`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from jaxtyping import Float

from .metadata import SeriesMeta

__all__ = ["lead_layout", "lead_series", "resolve"]


def lead_layout(
    states: Float[np.ndarray, "T S"],
    controls: Float[np.ndarray, "T K"] | None,
    next_controls: Float[np.ndarray, " K"],
) -> Float[np.ndarray, "T SK"]:
    """Lead-layout window (T, S + K) of a lag-layout history: row s = [x_s, c_{s+1}], the
    last row gets `next_controls` (the control of the interval being forecast). Without
    history controls every row gets `next_controls` (the control is taken as held)."""
    x = np.asarray(states, np.float64)
    nxt = np.asarray(next_controls, np.float64).reshape(1, -1)
    k = nxt.shape[1]
    if controls is None:
        ctrl = np.repeat(nxt, x.shape[0], axis=0)
    else:
        c = np.asarray(controls, np.float64).reshape(x.shape[0], k)
        ctrl = np.concatenate([c[1:], nxt], axis=0)
    return np.concatenate([x, ctrl], axis=1)


def lead_series(
    states: Float[np.ndarray, "T S"], controls: Float[np.ndarray, "T K"]
) -> Float[np.ndarray, "Tm1 SK"]:
    """Training series in the lead layout: rows s = 0 .. T-2 of [x_s, c_{s+1}] (the last row
    is dropped: the control after it is unknown)."""
    x = np.asarray(states, np.float64)
    c = np.asarray(controls, np.float64)
    if c.ndim != 2 or c.shape[0] != x.shape[0]:
        raise ValueError(f"controls must be (T, K) with T = {x.shape[0]}, got {c.shape}")
    return np.concatenate([x[:-1], c[1:]], axis=1)


def _values(name: str, v, horizon: int) -> np.ndarray:
    a = np.asarray(v, np.float64)
    if a.ndim == 0:
        a = np.full(horizon, float(a))
    if a.shape != (horizon,):
        raise ValueError(
            f"control {name!r} must be a number or {horizon} values (one per forecast step), "
            f"got shape {a.shape}"
        )
    if not np.isfinite(a).all():
        raise ValueError(f"control {name!r} is not finite: {a.tolist()}")
    return a


def resolve(
    meta: SeriesMeta | None,
    controls: Mapping[str, object] | None,
    history_controls: np.ndarray | None,
    horizon: int = 1,
) -> tuple[np.ndarray, list[str]]:
    """(values (horizon, K) in `meta.controls` order, names of controls assumed from the
    checkpoint's defaults). ValueError for an unknown control, a missing one without a
    default, or a value a checkpoint trained at a fixed condition cannot serve."""
    names = () if meta is None else meta.controls
    given = {} if controls is None else dict(controls)
    if controls is not None and not isinstance(controls, Mapping):
        raise ValueError(f"controls must be a dict name -> value, got {type(controls).__name__}")
    for key in given:
        if key in names:
            continue
        cond = {} if meta is None else meta.conditions
        held = {k: v for k, v in cond.items() if k == key or k.startswith(key + "_")}
        if not held:
            raise ValueError(
                f"{key!r} is not a control input of this checkpoint (controls: {list(names)})"
            )
        vals = _values(key, given[key], horizon)
        for k, v in held.items():
            if not all(math.isclose(float(x), v, rel_tol=1e-6, abs_tol=1e-3) for x in vals):
                raise ValueError(
                    f"this checkpoint has no {key!r} input: it was trained with {k} = {v:g} "
                    f"held constant, so it cannot forecast at {key} = {vals.tolist()[0]:g}; "
                    f"use a checkpoint trained with a {key!r} control (the packaged "
                    "rack_default.ckpt, experiments/nvp_default_checkpoint.py)"
                )
    out = np.empty((horizon, len(names)))
    assumed = []
    for j, c in enumerate(names):
        if c in given:
            out[:, j] = _values(c, given[c], horizon)
        elif history_controls is not None:
            out[:, j] = float(history_controls[-1, j])  # held at its last value
        elif meta is not None and c in meta.defaults:
            out[:, j] = meta.defaults[c]
            assumed.append(c)
        else:
            raise ValueError(
                f"this checkpoint forecasts conditioned on the control {c!r}: pass "
                f"controls={{{c!r}: value}} ({meta.units[c] if meta else '?'}) or give it "
                "in the history"
            )
    return out, assumed
