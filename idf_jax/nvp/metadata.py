"""What a forecaster was trained on: channels, units, sampling interval, controls, ranges.

A checkpoint that carries a `SeriesMeta` can be checked against the data it is asked to
forecast, so a model trained on one server in W / °F at 5-minute steps is refused for a
row of racks reporting kW / °C every 15 minutes (`check_matches`), and an input outside
the ranges the model saw in training is flagged (`out_of_training_range`) or, when it is
physically impossible (negative power, utilisation above 1), refused (`check_physical`).

Units are short strings: ``fraction`` (0..1), ``W``, ``kW``, ``degC``, ``degF``, ``K``,
``count``, ``kJ``, or ``unspecified`` (a checkpoint trained without units: it matches
nothing, so it can only be used where no unit check applies).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "PHYSICAL_LIMITS",
    "SeriesMeta",
    "check_matches",
    "check_physical",
    "check_time_order",
    "out_of_training_range",
]

# closed physical bounds per unit: a value outside is an input error, not an extrapolation
PHYSICAL_LIMITS: dict[str, tuple[float, float]] = {
    "fraction": (0.0, 1.0),
    "W": (0.0, math.inf),
    "kW": (0.0, math.inf),
    "kJ": (0.0, math.inf),
    "count": (0.0, math.inf),
    "K": (0.0, math.inf),
    "degC": (-273.15, math.inf),
    "degF": (-459.67, math.inf),
}
# fraction of a channel's training span by which an input may exceed it before it is flagged
RANGE_MARGIN = 0.1


@dataclass(frozen=True)
class SeriesMeta:
    """The series a model was trained on.

    Attributes:
      channels: channel names in model order.
      units: channel -> unit (module doc); ``unspecified`` where unknown.
      interval_s: seconds between consecutive samples [s].
      controls: the channels that are control inputs (set by an operator or controller,
        e.g. the cooling setpoint) rather than measured states.
      ranges: channel -> (min, max) over the training data.
      conditions: quantities held constant in the training data that the model therefore
        cannot respond to (e.g. ``{"setpoint_degC": 18.0}``: a checkpoint without a setpoint
        input refuses a forecast at another setpoint, `control_inputs.resolve`).
      defaults: control -> the value assumed when a caller gives none (neither in the call
        nor in the history); the prediction then lists the control in ``assumed_controls``.
    """

    channels: tuple[str, ...]
    units: dict[str, str]
    interval_s: float
    controls: tuple[str, ...] = ()
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    conditions: dict[str, float] = field(default_factory=dict)
    defaults: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        chans = tuple(self.channels)
        object.__setattr__(self, "channels", chans)
        if not chans or len(set(chans)) != len(chans):
            raise ValueError(f"SeriesMeta.channels must be distinct names, got {list(chans)}")
        missing = [c for c in chans if c not in self.units]
        if missing:
            raise ValueError(f"SeriesMeta.units lacks channels {missing}")
        if not (isinstance(self.interval_s, (int, float)) and self.interval_s > 0):
            raise ValueError(f"SeriesMeta.interval_s must be > 0 seconds, got {self.interval_s}")
        bad = [c for c in self.controls if c not in chans]
        if bad:
            raise ValueError(f"SeriesMeta.controls {bad} are not channels {list(chans)}")
        object.__setattr__(self, "controls", tuple(self.controls))
        bad = [c for c in self.defaults if c not in self.controls]
        if bad:
            raise ValueError(f"SeriesMeta.defaults {bad} are not controls {list(self.controls)}")
        object.__setattr__(self, "defaults", {c: float(v) for c, v in self.defaults.items()})
        rng = {c: (float(lo), float(hi)) for c, (lo, hi) in dict(self.ranges).items()}
        object.__setattr__(self, "ranges", rng)

    @classmethod
    def from_data(
        cls,
        series: Sequence[np.ndarray],
        channels: Sequence[str],
        units: Mapping[str, str] | None,
        interval_s: float,
        *,
        controls: Sequence[str] = (),
        conditions: Mapping[str, float] | None = None,
        defaults: Mapping[str, float] | None = None,
    ) -> SeriesMeta:
        """Metadata with the training ranges measured on `series` ((T, C) arrays)."""
        x = np.concatenate([np.asarray(s, np.float64) for s in series], axis=0)
        chans = tuple(channels)
        units = dict(units or {})
        return cls(
            channels=chans,
            units={c: str(units.get(c, "unspecified")) for c in chans},
            interval_s=float(interval_s),
            controls=tuple(controls),
            ranges={c: (float(x[:, j].min()), float(x[:, j].max())) for j, c in enumerate(chans)},
            conditions=dict(conditions or {}),
            defaults=dict(defaults or {}),
        )

    @property
    def states(self) -> tuple[str, ...]:
        """The channels that are forecast (every channel that is not a control)."""
        return tuple(c for c in self.channels if c not in self.controls)

    def to_json(self) -> dict:
        return dict(
            channels=list(self.channels),
            units=dict(self.units),
            interval_s=self.interval_s,
            controls=list(self.controls),
            ranges={c: list(v) for c, v in self.ranges.items()},
            conditions=dict(self.conditions),
            defaults=dict(self.defaults),
        )

    @classmethod
    def from_json(cls, d: Mapping) -> SeriesMeta:
        try:
            return cls(
                channels=tuple(d["channels"]),
                units=dict(d["units"]),
                interval_s=float(d["interval_s"]),
                controls=tuple(d.get("controls", ())),
                ranges={c: (v[0], v[1]) for c, v in dict(d.get("ranges", {})).items()},
                conditions=dict(d.get("conditions", {})),
                defaults=dict(d.get("defaults", {})),
            )
        except (KeyError, TypeError, IndexError) as e:
            raise ValueError(f"invalid series metadata: {e!r}") from None


def check_matches(
    meta: SeriesMeta | None,
    *,
    units: Mapping[str, str],
    interval_s: float,
    what: str = "the source",
    rel_tol: float = 1e-6,
    controls: Mapping[str, str] | None = None,
    varied: Mapping[str, tuple[float, float]] | None = None,
) -> None:
    """Raise ValueError naming every mismatch between a model's metadata and a data source.

    `units`: the source's unit of each channel it reports (channels the model forecasts
    must all be there); `interval_s`: the source's sampling interval [s]. `controls`: the
    control inputs the caller supplies for the forecast interval and their units (e.g. EIL:
    ``{"setpoint": "degC"}``); every control of the model must be among them, in its unit.
    `varied`: control -> (low, high) the caller will set it to; a model trained with that
    quantity held constant (`SeriesMeta.conditions`) and without it as an input is refused.
    """
    if meta is None:
        raise ValueError(
            "the model's checkpoint carries no series metadata (channels, units, sampling "
            f"interval), so it cannot be checked against {what}; retrain or re-save it with "
            "`series=SeriesMeta(...)`"
        )
    problems = []
    supplied = dict(controls or {})
    for c in meta.controls:
        if c not in supplied:
            problems.append(f"control input {c!r} is not supplied by {what}")
        elif meta.units[c] != supplied[c]:
            problems.append(f"control {c!r} is in {meta.units[c]}, {what} sets it in {supplied[c]}")
    for c, (lo, hi) in dict(varied or {}).items():
        if c in meta.controls:
            continue
        for key, v in meta.conditions.items():
            if (key == c or key.startswith(c + "_")) and not (lo == hi == v):
                problems.append(
                    f"the model was trained with {key} = {v:g} held constant (no {c!r} "
                    f"input), {what} sets {c} in [{lo:g}, {hi:g}]"
                )
    for c in meta.states:
        if c not in units:
            problems.append(f"channel {c!r} is not reported by {what}")
        elif meta.units[c] != units[c]:
            problems.append(f"channel {c!r} is in {meta.units[c]}, {what} reports {units[c]}")
    if not math.isclose(meta.interval_s, float(interval_s), rel_tol=rel_tol):
        problems.append(
            f"sampling interval is {meta.interval_s:g} s, {what} reports every {interval_s:g} s"
        )
    if problems:
        raise ValueError("model does not match " + what + ": " + "; ".join(problems))


def check_physical(meta: SeriesMeta | None, x: np.ndarray, channels: Sequence[str]) -> None:
    """Raise ValueError for a value outside its unit's physical bounds (`PHYSICAL_LIMITS`)."""
    if meta is None:
        return
    for j, c in enumerate(channels):
        lim = PHYSICAL_LIMITS.get(meta.units.get(c, "unspecified"))
        if lim is None:
            continue
        col = x[:, j]
        bad = np.flatnonzero((col < lim[0]) | (col > lim[1]))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"channel {c!r} at step {i} is {col[i]:g} {meta.units[c]}, outside its "
                f"physical range [{lim[0]:g}, {lim[1]:g}]"
            )


def out_of_training_range(
    meta: SeriesMeta | None, x: np.ndarray, channels: Sequence[str]
) -> list[str]:
    """Channels whose values leave the training range by more than `RANGE_MARGIN` of its
    span (an extrapolation: the forecast is not supported by the training data)."""
    if meta is None or not meta.ranges:
        return []
    out = []
    for j, c in enumerate(channels):
        if c not in meta.ranges:
            continue
        lo, hi = meta.ranges[c]
        pad = RANGE_MARGIN * max(hi - lo, 1e-9 * max(abs(lo), abs(hi), 1.0))
        col = x[:, j]
        if (col < lo - pad).any() or (col > hi + pad).any():
            out.append(c)
    return out


def check_time_order(
    timestamps: np.ndarray, interval_s: float | None = None, *, where: str = "series"
) -> float:
    """Validate sample times [s]: strictly increasing (no duplicates, no disorder) and, when
    `interval_s` is given, evenly spaced by it (a gap or a jitter over 1 % is an error).
    Returns the interval (the median step when `interval_s` is None)."""
    t = np.asarray(timestamps, np.float64)
    if t.ndim != 1 or t.size < 2:
        raise ValueError(f"{where}: need at least two timestamps")
    if not np.isfinite(t).all():
        raise ValueError(f"{where}: timestamps must be finite")
    d = np.diff(t)
    if (d == 0).any():
        i = int(np.flatnonzero(d == 0)[0]) + 1
        raise ValueError(f"{where}: duplicate timestamp at row {i} ({t[i]:g})")
    if (d < 0).any():
        i = int(np.flatnonzero(d < 0)[0]) + 1
        raise ValueError(
            f"{where}: timestamps out of order at row {i} ({t[i]:g} after {t[i - 1]:g}); "
            "sort the rows by time"
        )
    step = float(np.median(d)) if interval_s is None else float(interval_s)
    off = np.abs(d - step) > 0.01 * step
    if off.any():
        i = int(np.flatnonzero(off)[0]) + 1
        raise ValueError(
            f"{where}: uneven sampling at row {i}: {d[i - 1]:g} s since the previous row, "
            f"expected {step:g} s (gap or jitter); resample or split the series at the gap"
        )
    return step
