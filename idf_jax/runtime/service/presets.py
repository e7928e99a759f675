"""Sampler presets in sample jobs: the `preset` field of a SampleRequest.

A preset is named, never given as a path: a packaged preset (`idf_jax/presets/<name>.json`)
or, when not packaged, a file `presets/<name>.json` in the service's state directory (where
an operator puts what `idf evolve sampler` wrote). It is read with
`idf_jax.run.tuned.read_sampler_preset` and sets the request's sampler, step size and
leapfrog steps, unless the request sets them itself. An unknown name, a preset for
something other than a sampler, or a preset whose sampler differs from the one the request
names is a 422 `JobError` naming `preset`. Resolving is idempotent: the submitting process
resolves (an early 422) and queues the resolved request; the worker resolves again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..._checks import ArgumentError
from ..._presets import PRESET_DIR, read_preset
from ...run.tuned import SAMPLER_PRESET_TARGETS, read_sampler_preset, sampler_presets
from .jobs import JobError
from .schemas import SampleRequest

__all__ = ["STATE_PRESETS_DIR", "preset_path", "preset_summary", "with_preset"]

STATE_PRESETS_DIR = "presets"
"""The folder of the state directory that holds an instance's own sampler presets."""


def _state_presets(state_dir: Path | None) -> list[str]:
    if state_dir is None:
        return []
    folder = Path(state_dir) / STATE_PRESETS_DIR
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def _known(state_dir: Path | None) -> str:
    own = _state_presets(state_dir)
    return f"packaged sampler presets: {', '.join(sampler_presets()) or 'none'}" + (
        f"; presets of this service: {', '.join(own)}" if own else ""
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
    request does not set itself); `req` unchanged when it names no preset."""
    name = req.preset
    if name is None:
        return req
    path = preset_path(name, state_dir)
    try:
        target = read_preset(path).get("target")
        if target not in SAMPLER_PRESET_TARGETS:
            raise JobError(
                "preset",
                f"preset {name!r} is for {target!r}, not a sampler "
                f"({', '.join(SAMPLER_PRESET_TARGETS)}); {_known(state_dir)}",
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


def preset_summary(req: SampleRequest) -> dict[str, Any]:
    """What a resolved request took from its preset, for the job's result summary."""
    out: dict[str, Any] = {"name": req.preset, "sampler": req.sampler, "step_size": req.step_size}
    if req.sampler == "hmc":
        out["num_integration_steps"] = req.num_integration_steps
    return out
