"""Presets: tuned configurations as JSON files, with the run that produced them.

A preset file holds
    {"name": ..., "target": "sample_equilibrium", "config": {keyword: value, ...},
     "provenance": {"command": ..., "seeds": [...], "budget_s": ..., "date": ...,
                    "fitness": ..., "baseline_fitness": ..., ...}}
Packaged presets live in `idf_jax/presets/*.json` (package data); a name that is not
packaged is read as a path to a preset file. This module is part of the core (no evolution
engine needed to load a preset: `sample_equilibrium(..., preset=...)` uses it); the
evolution engine writes presets and re-exports these functions as `idf.evolve.*`.
`apply_preset(fn, name, **kwargs)` calls `fn` with the preset's configuration, the caller's
keywords winning.
"""

from __future__ import annotations

import datetime as _dt
import inspect
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ._checks import ArgumentError
from ._io import atomic_write_json, jsonable

__all__ = [
    "PRESET_DIR",
    "apply_preset",
    "available_presets",
    "load_preset",
    "merge_preset",
    "preset_record",
    "read_preset",
    "save_preset",
]

PRESET_DIR = Path(__file__).with_name("presets")  # idf_jax/presets/
"""Where the packaged presets are (`<name>.json`)."""


def available_presets() -> list[str]:
    """Names of the packaged presets."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.json"))


def _path(name: str | os.PathLike) -> Path:
    if isinstance(name, str) and (PRESET_DIR / f"{name}.json").is_file():
        return PRESET_DIR / f"{name}.json"
    p = Path(name)
    if p.is_file():
        return p
    known = ", ".join(available_presets()) or "none"
    raise ArgumentError(
        "preset", f"no preset {str(name)!r}: not a packaged preset ({known}) and not a file"
    )


def read_preset(name: str | os.PathLike) -> dict[str, Any]:
    """The whole preset record (name, target, config, provenance)."""
    p = _path(name)
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ArgumentError("preset", f"preset file {str(p)!r} cannot be read: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise ArgumentError("preset", f"preset file {str(p)!r} has no 'config' mapping")
    return data


def load_preset(name: str | os.PathLike) -> dict[str, Any]:
    """The preset's configuration: keyword arguments for its target function."""
    return dict(read_preset(name)["config"])


def preset_record(
    name: str,
    config: Mapping[str, Any],
    *,
    target: str,
    provenance: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A preset record, `provenance` completed with the date (UTC, ISO 8601)."""
    if not isinstance(name, str) or not name or any(c in name for c in "/\\"):
        raise ArgumentError("name", f"a preset name is a plain non-empty string, got {name!r}")
    prov = {"date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
    prov.update(dict(provenance or {}))
    return {
        "name": name,
        "target": target,
        "config": jsonable(dict(config)),
        "provenance": jsonable(prov),
    }


def save_preset(
    path: str | os.PathLike,
    name: str,
    config: Mapping[str, Any],
    *,
    target: str = "sample_equilibrium",
    provenance: Mapping[str, Any] | None = None,
) -> Path:
    """Write a preset record to `path` (a file, or a folder: `<folder>/<name>.json`)."""
    p = Path(path)
    if p.is_dir() or p.suffix != ".json":
        p = p / f"{name}.json"
    atomic_write_json(p, preset_record(name, config, target=target, provenance=provenance))
    return p


def apply_preset(fn: Callable[..., Any], name: str | os.PathLike, /, *args, **kwargs) -> Any:
    """`fn(*args, **{**preset_config, **kwargs})`.

    Keywords `fn` does not accept raise `ArgumentError("preset", ...)` (a preset made for
    a newer version naming an option this one lacks), unless `fn` takes **kwargs.
    """
    config = load_preset(name)
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        sig = None
    if sig is not None and not any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()
    ):
        unknown = sorted(set(config) - set(sig.parameters))
        if unknown:
            raise ArgumentError(
                "preset",
                f"preset {str(name)!r} sets {unknown}, which "
                f"{getattr(fn, '__name__', 'the function')} does not accept",
            )
    return fn(*args, **{**config, **kwargs})


def merge_preset(fn: Callable[..., Any], name: str | os.PathLike, call: Mapping[str, Any]) -> dict:
    """Keyword arguments for `fn` from its own call's `locals()` and a preset.

    For a `preset=` hook inside `fn` (one line):

        if preset is not None:
            return fn(energy_fn, key, x0_batch, **merge_preset(fn, preset, locals()))

    Every keyword-only parameter of `fn` takes the caller's value, except where the caller
    left it at its default and the preset sets it: then the preset's value. `preset`
    itself is reset to None. Preset keys `fn` does not take raise `ArgumentError`.
    """
    config = load_preset(name)
    params = inspect.signature(fn).parameters
    kw_only = {n: p for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    unknown = sorted(set(config) - set(kw_only))
    if unknown:
        raise ArgumentError(
            "preset",
            f"preset {str(name)!r} sets {unknown}, which "
            f"{getattr(fn, '__name__', 'the function')} does not accept",
        )
    out = {}
    for n, p in kw_only.items():
        v = call[n]
        at_default = v is p.default or (
            isinstance(v, (int, float, str, bool, type(None)))
            and type(v) is type(p.default)
            and v == p.default
        )
        out[n] = config[n] if (n in config and at_default) else v
    if "preset" in out:
        out["preset"] = None
    return out
