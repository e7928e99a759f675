"""Sampler and tuner presets in sample jobs: the `preset` field of a SampleRequest.

A preset is named, never given as a path: a packaged preset (`idf_jax/presets/<name>.json`)
or, when not packaged, a file `presets/<name>.json` in the service's state directory (where
an operator puts what `idf evolve sampler` wrote). It is read with
`idf_jax.run.tuned.read_sampler_preset` and sets the request's sampler, step size and
leapfrog steps, unless the request sets them itself. An unknown name, a preset for
something other than a sampler, or a preset whose sampler differs from the one the request
names is a 422 `JobError` naming `preset`. Resolving is idempotent: the submitting process
resolves (an early 422) and queues the resolved request; the worker resolves again.

A tuner preset (target "sample_tuned": MAMS tuner settings, `idf.sample_tuned(preset=)`)
sets the request's sampler to "mams": the worker runs `sample_tuned` with the preset file
(`preset_file`); the request may not set another sampler, nor a step_size, friction or
num_integration_steps (the tuner chooses the step size and trajectory length itself).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..._checks import ArgumentError
from ..._presets import PRESET_DIR, read_preset
from ...run.tuned import (
    SAMPLER_PRESET_TARGETS,
    TUNER_PRESET_TARGET,
    read_sampler_preset,
    sampler_presets,
)
from .jobs import JobError, tuner_config
from .schemas import SampleRequest

__all__ = ["STATE_PRESETS_DIR", "preset_file", "preset_path", "preset_summary", "with_preset"]

_TUNED_AWAY = ("step_size", "friction", "num_integration_steps")
"""Request fields a tuner preset's run does not use (the tuner sets the step)."""

STATE_PRESETS_DIR = "presets"
"""The folder of the state directory that holds an instance's own sampler presets."""


def _state_presets(state_dir: Path | None) -> list[str]:
    if state_dir is None:
        return []
    folder = Path(state_dir) / STATE_PRESETS_DIR
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def _tuner_presets() -> list[str]:
    from ..._presets import available_presets

    return [n for n in available_presets() if read_preset(n).get("target") == TUNER_PRESET_TARGET]


def _known(state_dir: Path | None) -> str:
    own = _state_presets(state_dir)
    return (
        f"packaged sampler presets: {', '.join(sampler_presets()) or 'none'}"
        + f"; packaged tuner presets: {', '.join(_tuner_presets()) or 'none'}"
        + (f"; presets of this service: {', '.join(own)}" if own else "")
    )


def preset_path(name: str, state_dir: Path | None) -> Path:
    """The file of preset `name`: packaged first, then `<state_dir>/presets/<name>.json`;
    a 422 `JobError("preset")` when neither exists."""
    packaged = PRESET_DIR / f"{name}.json"
    if packaged.is_file():
        return packaged
    if state_dir is not None:
        own = Path(state_dir) / STATE_PRESETS_DIR / f"{name}.json"
        if own.is_file():
            return own
    raise JobError("preset", f"no preset {name!r}: {_known(state_dir)}")


def with_preset(req: SampleRequest, state_dir: Path | None) -> SampleRequest:
    """`req` with its preset's sampler, step_size and num_integration_steps (those the
    request does not set itself), or, for a tuner preset, with sampler "mams"; `req`
    unchanged when it names no preset."""
    name = req.preset
    if name is None:
        return req
    path = preset_path(name, state_dir)
    try:
        target = read_preset(path).get("target")
    except ArgumentError as e:
        raise JobError("preset", str(e).replace(str(path), name)) from e
    if target == TUNER_PRESET_TARGET:
        return _with_tuner(req, name, path)
    try:
        if target not in SAMPLER_PRESET_TARGETS:
            raise JobError(
                "preset",
                f"preset {name!r} is for {target!r}, not a sampler "
                f"({', '.join(SAMPLER_PRESET_TARGETS)}) or the tuner ({TUNER_PRESET_TARGET}); "
                f"{_known(state_dir)}",
            )
        target, config = read_sampler_preset(path)
    except ArgumentError as e:
        raise JobError("preset", str(e).replace(str(path), name)) from e
    given = req.model_fields_set
    if "sampler" in given and req.sampler != target:
        raise JobError(
            "preset",
            f"preset {name!r} is a {target!r} preset and the request sets sampler "
            f"{req.sampler!r}; leave sampler out or set it to {target!r}",
        )
    step_size = config["step_size"]
    if isinstance(step_size, bool) or not isinstance(step_size, (int, float)) or step_size <= 0:
        raise JobError("preset", f"preset {name!r} has step_size {step_size!r}; it must be > 0")
    update: dict[str, Any] = {"sampler": target}
    if "step_size" not in given:
        update["step_size"] = float(step_size)
    if "num_integration_steps" in config and "num_integration_steps" not in given:
        steps = config["num_integration_steps"]
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 1000:
            raise JobError(
                "preset",
                f"preset {name!r} has num_integration_steps {steps!r}; it must be 1..1000",
            )
        update["num_integration_steps"] = steps
    return req.model_copy(update=update)


def _with_tuner(req: SampleRequest, name: str, path: Path) -> SampleRequest:
    """`req` for the tuner preset `name` at `path`: sampler "mams", its settings checked."""
    try:
        tuner_config(str(path))
    except JobError as e:
        raise JobError("preset", e.message.replace(str(path), name)) from e
    given = req.model_fields_set
    if "sampler" in given and req.sampler != "mams":
        raise JobError(
            "preset",
            f"preset {name!r} is a tuner preset (sampler 'mams', tuned on the chains) and the "
            f"request sets sampler {req.sampler!r}; leave sampler out or set it to 'mams'",
        )
    fields = SampleRequest.model_fields
    # a value other than the field's default (what the worker's resolved copy carries)
    set_here = [f for f in _TUNED_AWAY if f in given and getattr(req, f) != fields[f].default]
    if set_here:
        raise JobError(
            "preset",
            f"preset {name!r} is a tuner preset: the MAMS tuner chooses the step size and "
            f"trajectory length, so the request's {', '.join(set_here)} would not be used; "
            "leave them out",
        )
    return req.model_copy(update={"sampler": "mams"})


def preset_file(req: SampleRequest, state_dir: Path | None) -> str | None:
    """The file of a resolved "mams" request's tuner preset (None: no preset)."""
    if req.preset is None or req.sampler != "mams":
        return None
    return str(preset_path(req.preset, state_dir))


def preset_summary(req: SampleRequest, state_dir: Path | None = None) -> dict[str, Any]:
    """What a resolved request took from its preset, for the job's result summary."""
    if req.sampler == "mams":
        path = preset_file(req, state_dir)
        config = tuner_config(path) if path is not None else {}
        return {"name": req.preset, "sampler": "mams", **config}
    out: dict[str, Any] = {"name": req.preset, "sampler": req.sampler, "step_size": req.step_size}
    if req.sampler == "hmc":
        out["num_integration_steps"] = req.num_integration_steps
    return out
