"""Control inputs of `idf predict` / `idf backtest`: the CSV columns, `--setpoint`, and
where each control value of a forecast came from.

A checkpoint declares its control inputs (`SeriesMeta.controls`, the packaged rack model:
``setpoint`` in degF). The CSV carries a control as a column named like the control
(``setpoint``) or with its unit appended (``setpoint_degF``), in the checkpoint's unit;
a column in another unit (``setpoint_degC`` for a degF model) is refused, naming both.
Each row holds the control applied over the interval that ended at that row
(`idf_jax.nvp.control_inputs`). A value that is not a number, physically impossible or
outside the model's training range (by more than `RANGE_MARGIN` of its span) is a
one-line error naming the column and the row.

`--setpoint VALUE[UNIT]` (``69.8``, ``21degC``, ``294.15K``; a bare number is in the
checkpoint's unit) gives the setpoint where the CSV does not: with a setpoint column it is
the setpoint of the forecast after the last row, without one it is the setpoint over the
whole CSV and the forecast. With neither, the checkpoint's documented default is assumed
and reported (``assumed_controls``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import typer
from jaxtyping import Float

from ...nvp.metadata import PHYSICAL_LIMITS, RANGE_MARGIN, SeriesMeta

__all__ = [
    "check_control_values",
    "control_columns",
    "control_sources",
    "parse_setpoint",
    "report_lines",
]

SETPOINT = "setpoint"
_TEMPERATURE = ("degC", "degF", "K")
_VALUE_UNIT = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z]*)\s*$")


def _kelvin(v: float, unit: str) -> float:
    return {"degC": v + 273.15, "degF": (v - 32.0) * 5.0 / 9.0 + 273.15, "K": v}[unit]


def _from_kelvin(k: float, unit: str) -> float:
    return {"degC": k - 273.15, "degF": (k - 273.15) * 9.0 / 5.0 + 32.0, "K": k}[unit]


def control_columns(meta: SeriesMeta | None, header: Sequence[str], data: Path) -> dict[str, str]:
    """Control -> its CSV column, for the checkpoint's controls present in `header` (module
    doc). ValueError for a column in another unit, two columns for one control, or some
    but not all of several controls."""
    if meta is None or not meta.controls:
        return {}
    found: dict[str, str] = {}
    for c in meta.controls:
        unit = meta.units[c]
        named = [h for h in (c, f"{c}_{unit}") if h in header]
        if len(named) > 1:
            raise ValueError(f"{data}: columns {named} both give the control {c!r}; keep one")
        if named:
            found[c] = named[0]
            continue
        other = [h for h in header if h.startswith(c + "_") and h[len(c) + 1 :] in PHYSICAL_LIMITS]
        if other:
            raise ValueError(
                f"{data}: column {other[0]!r} is in {other[0][len(c) + 1 :]}, but the "
                f"checkpoint takes the control {c!r} in {unit}: give column {c!r} (or "
                f"'{c}_{unit}') in {unit}"
            )
    if found and len(found) < len(meta.controls):
        lacking = [c for c in meta.controls if c not in found]
        raise ValueError(
            f"{data}: control columns {list(found.values())} without {lacking}: give every "
            f"control of the checkpoint {list(meta.controls)} as a column, or none"
        )
    return found


def check_control_values(
    meta: SeriesMeta, values: Float[np.ndarray, "T K"], columns: Mapping[str, str], data: Path
) -> None:
    """ValueError naming the column and row of the first control value that is outside its
    unit's physical range or the model's training range (widened by `RANGE_MARGIN`)."""
    for j, (c, col) in enumerate(columns.items()):
        v = np.asarray(values, np.float64)[:, j]
        unit = meta.units[c]
        lo, hi = _allowed(meta, c)
        bad = np.flatnonzero((v < lo) | (v > hi))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"{data}: row {i} column {col!r} is {v[i]:g} {unit}, outside {_what(meta, c)} "
                f"[{lo:g}, {hi:g}] {unit}"
            )


def _allowed(meta: SeriesMeta, c: str) -> tuple[float, float]:
    lo, hi = PHYSICAL_LIMITS.get(meta.units[c], (-np.inf, np.inf))
    if c in meta.ranges:
        rlo, rhi = meta.ranges[c]
        pad = RANGE_MARGIN * max(rhi - rlo, 1e-9 * max(abs(rlo), abs(rhi), 1.0))
        lo, hi = max(lo, rlo - pad), min(hi, rhi + pad)
    return lo, hi


def _what(meta: SeriesMeta, c: str) -> str:
    if c in meta.ranges:
        return f"the model's training range ({RANGE_MARGIN:.0%} margin)"
    return "its physical range"


def parse_setpoint(text: str | None, meta: SeriesMeta | None) -> dict[str, float]:
    """``{"setpoint": value}`` in the checkpoint's unit from `--setpoint VALUE[UNIT]` ({}
    without one); a usage error for a malformed value, a unit that cannot be converted,
    or a value outside the model's training range."""
    if text is None:
        return {}
    m = _VALUE_UNIT.match(text)
    if m is None:
        raise typer.BadParameter(
            f"expected a number with an optional unit (69.8, 21degC), got {text!r}",
            param_hint="--setpoint",
        )
    value, unit = float(m.group(1)), m.group(2)
    target = _setpoint_unit(meta)
    if unit and unit != target:
        if unit not in _TEMPERATURE or target not in _TEMPERATURE:
            raise typer.BadParameter(
                f"cannot convert {unit or 'a bare number'} to the checkpoint's setpoint unit "
                f"{target or '(none declared: give a bare number)'}",
                param_hint="--setpoint",
            )
        value = _from_kelvin(_kelvin(value, unit), target)
    if meta is not None and SETPOINT in meta.controls:
        lo, hi = _allowed(meta, SETPOINT)
        if not lo <= value <= hi:
            raise typer.BadParameter(
                f"{value:g} {target} is outside {_what(meta, SETPOINT)} [{lo:g}, {hi:g}] {target}",
                param_hint="--setpoint",
            )
    return {SETPOINT: value}


def _setpoint_unit(meta: SeriesMeta | None) -> str | None:
    """The unit of the checkpoint's setpoint: its control's, else the suffix of the fixed
    condition it was trained at (``setpoint_degC``), else None."""
    if meta is None:
        return None
    if SETPOINT in meta.controls:
        return meta.units[SETPOINT]
    for key in meta.conditions:
        if key.startswith(SETPOINT + "_") and key[len(SETPOINT) + 1 :] in _TEMPERATURE:
            return key[len(SETPOINT) + 1 :]
    return None


def control_sources(
    meta: SeriesMeta | None,
    columns: Mapping[str, str],
    given: Mapping[str, float],
    assumed: Sequence[str],
    values: Mapping[str, float],
) -> dict[str, dict]:
    """Control -> {value, unit, source} for the report: ``column '<name>'``, ``--setpoint``
    or ``assumed default`` (`values`: the value used for the forecast after the last row)."""
    out: dict[str, dict] = {}
    if meta is None:
        return out
    for c in meta.controls:
        if c in assumed:
            src = "assumed default"
        elif c in given:
            src = f"--{c}"
        else:
            src = f"column {columns[c]!r}"
        out[c] = dict(value=float(values[c]), unit=meta.units[c], source=src)
    return out


def report_lines(sources: Mapping[str, dict], columns: Mapping[str, str]) -> list[str]:
    """The lines printed about the controls: a warning for every assumed default."""
    lines = []
    for c, s in sources.items():
        v = f"{s['value']:g} {s['unit']}"
        if s["source"] == "assumed default":
            lines.append(
                f"warning: assumed {c} = {v} (the checkpoint's default): the CSV has no "
                f"{c!r} column and no --{c} was given"
            )
        elif s["source"].startswith("--"):
            where = "after the last row" if c in columns else "over the CSV and the forecast"
            lines.append(f"{c} = {v} from {s['source']} {where}")
        else:
            lines.append(f"{c} from {s['source']} ({v} at the last row, held after it)")
    return lines
