"""Telemetry windows from arrays, CSV files or lists of dicts, with clear input errors.

A telemetry series is a (T, C) float64 array plus C channel names. `windows` cuts it into
(input window, next state) pairs for one-step forecasting; normalisation statistics are fitted
on the training range only (`model.fit_normalizer`) and stored inside the checkpoint.
"""

from __future__ import annotations

import csv
import itertools
import math
import numbers
import operator
from collections.abc import Iterable, Mapping, Sequence

import numpy as np


def _check_finite_number(v, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        if (
            isinstance(v, (np.ndarray, np.generic))
            and np.ndim(v) == 0
            and np.issubdtype(np.asarray(v).dtype, np.number)
        ):
            v = float(v)
        else:
            raise ValueError(f"{where} is not a number: {v!r}")
    f = float(v)
    if not math.isfinite(f):
        raise ValueError(f"{where} is not finite: {f!r}")
    return f


_PLAIN_NUMBERS = frozenset((float, int))


def _records_fast(records: list, chans: tuple[str, ...]) -> np.ndarray | None:
    """The common case in one vectorised pass: plain dicts holding exactly `chans`, each value
    a Python float or int, all finite. None for anything else (the checked loop then runs and
    names the problem), so the result and every error are the same as the loop's."""
    n = len(chans)
    if not n or not records or set(map(type, records)) != {dict} or set(map(len, records)) != {n}:
        return None
    get = operator.itemgetter(*chans) if n > 1 else lambda r: (r[chans[0]],)
    try:
        vals = list(itertools.chain.from_iterable(map(get, records)))
        # a non-finite value (or a sum overflowing) makes the sum non-finite: the loop decides
        if not set(map(type, vals)) <= _PLAIN_NUMBERS or not math.isfinite(sum(vals)):
            return None
    except (KeyError, OverflowError):  # a missing channel; an int beyond float range
        return None
    return np.array(vals, np.float64).reshape(len(records), n)


def records_to_array(
    records: Sequence[Mapping], channels: Sequence[str] | None = None
) -> tuple[np.ndarray, tuple[str, ...]]:
    """(T, C) float64 array from a list of dicts like ``{'cpu': 0.75, 'power': 850, 'temp': 72}``.

    Every record must hold exactly `channels` (default: the first record's keys in order) with a
    finite real number each; otherwise a ValueError names the record and the channel.
    """
    if isinstance(records, Mapping) or isinstance(records, (str, bytes)):
        raise ValueError("telemetry history must be a list of dicts, one per time step")
    records = list(records)
    if not records:
        raise ValueError("telemetry history is empty")
    if not isinstance(records[0], Mapping):
        raise ValueError(f"record 0 is not a dict: {records[0]!r}")
    chans = tuple(records[0].keys()) if channels is None else tuple(channels)
    fast = _records_fast(records, chans)
    if fast is not None:
        return fast, chans
    want = set(chans)
    out = np.empty((len(records), len(chans)), np.float64)
    for i, rec in enumerate(records):
        if not isinstance(rec, Mapping):
            raise ValueError(f"record {i} is not a dict: {rec!r}")
        if len(rec) != len(chans) or set(rec) != want:
            missing = sorted(want - set(rec))
            extra = sorted(set(map(str, rec)) - want)
            raise ValueError(
                f"record {i}: channels do not match the model's {list(chans)}"
                + (f"; missing {missing}" if missing else "")
                + (f"; unexpected {extra}" if extra else "")
            )
        for j, ch in enumerate(chans):
            out[i, j] = _check_finite_number(rec[ch], f"record {i} channel {ch!r}")
    return out, chans


def array_to_telemetry(values, channels: Sequence[str]) -> np.ndarray:
    """Validate a (T, C) array against `channels`; returns float64 (raises ValueError)."""
    try:
        x = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"telemetry array is not numeric: {e}") from e
    if x.ndim != 2 or x.shape[1] != len(channels):
        raise ValueError(
            f"telemetry array must have shape (T, {len(channels)}) for channels "
            f"{list(channels)}, got {x.shape}"
        )
    bad = ~np.isfinite(x)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"telemetry row {i} channel {channels[j]!r} is not finite: {x[i, j]}")
    return x


def read_csv(path, channels: Sequence[str] | None = None) -> tuple[np.ndarray, tuple[str, ...]]:
    """(T, C) array from a CSV with a header row; `channels` selects columns (default: all)."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None:
            raise ValueError(f"{path}: empty CSV (no header)")
        chans = tuple(reader.fieldnames) if channels is None else tuple(channels)
        missing = [c for c in chans if c not in reader.fieldnames]
        if missing:
            raise ValueError(f"{path}: missing columns {missing}")
        rows = []
        for i, row in enumerate(reader):
            vals = []
            for c in chans:
                try:
                    v = float(row[c])
                except (TypeError, ValueError):
                    raise ValueError(
                        f"{path}: row {i} column {c!r} is not a number: {row[c]!r}"
                    ) from None
                if not math.isfinite(v):
                    raise ValueError(f"{path}: row {i} column {c!r} is not finite: {v}")
                vals.append(v)
            rows.append(vals)
    if not rows:
        raise ValueError(f"{path}: no data rows")
    return np.asarray(rows, np.float64), chans


def _parse_time(v: str, where: str) -> float:
    """Seconds since the epoch from a number or an ISO 8601 date-time (UTC if naive)."""
    try:
        return float(v)
    except (TypeError, ValueError):
        pass
    import datetime as dt

    try:
        t = dt.datetime.fromisoformat(str(v).strip())
    except ValueError:
        raise ValueError(f"{where} is neither seconds nor an ISO 8601 time: {v!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.timestamp()


def read_series_csv(
    path,
    channels: Sequence[str],
    *,
    time_column: str = "timestamp",
    interval_s: float | None = None,
) -> tuple[np.ndarray, tuple[str, ...], float]:
    """(T, C) values, channel names and the sampling interval [s] of one time series CSV.

    With a `time_column` (seconds or ISO 8601) the rows must be strictly increasing in time
    and evenly spaced (by `interval_s` when given, else by their median step): duplicates,
    disorder and gaps raise ValueError naming the row (`metadata.check_time_order`). Without
    one, `interval_s` must be given (the rows are then trusted to be in time order).
    """
    from .metadata import check_time_order

    values, chans = read_csv(path, channels)
    with open(path, newline="") as f:
        header = next(csv.reader(f), [])
    if time_column in header:
        with open(path, newline="") as f:
            times = [
                _parse_time(row[time_column], f"{path}: row {i} column {time_column!r}")
                for i, row in enumerate(csv.DictReader(f))
            ]
        step = check_time_order(np.asarray(times), interval_s, where=str(path))
        return values, chans, step
    if interval_s is None:
        raise ValueError(
            f"{path} has no {time_column!r} column: give the sample times (so their order "
            "and spacing can be checked) or the sampling interval in seconds"
        )
    return values, chans, float(interval_s)


def write_csv(path, values: np.ndarray, channels: Sequence[str]) -> None:
    x = array_to_telemetry(values, channels)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(channels)
        w.writerows(x.tolist())


def windows(
    values: np.ndarray,
    window: int,
    *,
    start: int = 0,
    stop: int | None = None,
    min_history: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All one-step pairs whose *target* index lies in [start, stop).

    Returns inputs (N, window, C) left-padded with the first available value, masks (N, window)
    (True for real steps; at least `min_history` of them) and targets (N, C).
    """
    x = np.asarray(values)
    t_total = x.shape[0]
    end = t_total if stop is None else int(stop)
    first = max(start, min_history)
    if end - first < 1:
        raise ValueError(f"no target in [{start}, {end}) with min_history={min_history}")
    targets = np.arange(first, end)
    offs = np.arange(-window, 0)
    idx = targets[:, None] + offs[None, :]
    mask = idx >= 0
    idx = np.maximum(idx, 0)
    first_real = np.where(mask, idx, t_total).min(axis=1)
    idx = np.where(mask, idx, first_real[:, None])
    return x[idx], mask, x[targets]


def concat_windows(parts: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]):
    parts = list(parts)
    return tuple(np.concatenate([p[i] for p in parts], axis=0) for i in range(3))
