"""What a worker runs for each job kind: a JSON payload in, a JSON result out.

`run_task(kind, payload, limits, emit, should_stop, state_dir=...)` validates the payload
with the service's request models (so the Python API, gRPC and HTTP see one set of rules),
runs the job through `service.jobs` (a `train` job: `train_task`) and returns the JSON-ready
result. `emit(event)` sends progress events (`{"type": "progress", "steps_done",
"num_steps"}`); `should_stop()` is polled between chunks of a run and stops it with
`Cancelled`. Runs inside a worker process only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...._io import jsonable
from ..config import Limits
from ..jobs import (
    EquilibriumJob,
    JobError,
    SampleJob,
    positions_as_lists,
    run_equilibrium,
    run_sample,
    summarize_trace,
)

__all__ = ["KINDS", "Cancelled", "check_capsule", "check_params", "run_task", "validated"]

KINDS = ("sample", "equilibrium", "train")


class Cancelled(Exception):
    """Raised inside a run when its job was cancelled."""


def check_params(params: dict[str, Any], limits: Limits) -> None:
    """413 for capsule parameters that would size a state over `limits.max_dimensions`:
    an integer parameter above it, or a (nested) list holding more values."""
    for k, v in params.items():
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) > limits.max_dimensions:
            raise JobError(
                f"params.{k}",
                f"integer parameter {v} is over the limit max_dimensions={limits.max_dimensions} "
                "(integer parameters size the state)",
                413,
            )
        if isinstance(v, list):
            n = _count(v)
            if n > limits.max_dimensions and len(v) > 1:
                raise JobError(
                    f"params.{k}",
                    f"list of {n} values is over the limit max_dimensions={limits.max_dimensions}",
                    413,
                )


def check_capsule(name: Any, params: Any) -> None:
    """422 for an unknown capsule or a parameter its factory does not take, checked in the
    submitting process (cheap: no worker needed to refuse a typo)."""
    import inspect

    import capsules

    reg = capsules.registry()
    if not isinstance(name, str) or name not in reg:
        raise JobError("capsule", f"unknown capsule {name!r}; known: {', '.join(reg)}")
    if not isinstance(params, dict):
        raise JobError("params", "must be a JSON object")
    sig = inspect.signature(reg[name].factory)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return
    unknown = sorted(set(params) - set(sig.parameters))
    if unknown:
        raise JobError(
            "params",
            f"invalid parameters for {name}: unknown {unknown}; it takes {list(sig.parameters)}",
        )


def _count(v: Any) -> int:
    if isinstance(v, list):
        return sum(_count(x) for x in v)
    if isinstance(v, dict):
        return sum(_count(x) for x in v.values())
    return 1


def validated(model: type, payload: dict[str, Any]) -> Any:
    from pydantic import ValidationError

    try:
        return model(**payload)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err.get("loc", ())) or "payload"
        raise JobError(field, str(err.get("msg", "invalid value"))) from e
    except TypeError as e:
        raise JobError("payload", f"must be a JSON object of request fields: {e}") from e


def run_task(
    kind: str,
    payload: dict[str, Any],
    limits: Limits,
    emit: Callable[[dict[str, Any]], None],
    should_stop: Callable[[], bool],
    *,
    state_dir: Path | None = None,
) -> dict[str, Any]:
    """Run one job of `kind` (see the module); raises `JobError` for bad input. `state_dir`:
    where a `train` job reads its data and writes its checkpoint."""
    if kind == "sample":
        return _sample(payload, limits, emit, should_stop, state_dir)
    if kind == "equilibrium":
        return _equilibrium(payload, limits)
    if kind == "train":
        if state_dir is None:
            raise JobError("kind", "train jobs need the service's state directory", 503)
        from .train_task import run_train

        return run_train(payload, state_dir, emit, should_stop)
    raise JobError("kind", f"unknown job kind {kind!r}; choose one of {KINDS}")


def _sample(payload, limits, emit, should_stop, state_dir: Path | None) -> dict[str, Any]:
    import jax
    import numpy as np

    from ..presets import preset_file, preset_summary, with_preset
    from ..schemas import SampleRequest

    req = with_preset(validated(SampleRequest, payload), state_dir)
    check_params(req.params, limits)
    job = SampleJob(
        **req.model_dump(exclude={"return_positions", "preset"}),
        preset=preset_file(req, state_dir),  # a tuner preset's file, for sampler "mams"
    )

    def callback(done: int, total: int) -> None:
        if should_stop():
            raise Cancelled()
        emit({"type": "progress", "steps_done": int(done), "num_steps": int(total)})

    def check_returned(chains: int, draws: int, dims: int) -> None:
        if req.return_positions == "none":
            return
        size = chains * dims * (draws if req.return_positions == "all" else 1)
        if size > limits.max_draws_returned:
            raise JobError(
                "return_positions",
                f"{size} values to return, over the limit max_draws_returned="
                f"{limits.max_draws_returned}; thin more, or ask for 'final'",
                413,
            )

    t0 = time.perf_counter()
    trace, _ = run_sample(job, limits=limits, callback=callback, before_run=check_returned)
    energies = np.asarray(trace.energies)
    out: dict[str, Any] = {
        "capsule": req.capsule,
        "sampler": req.sampler,
        "summary": summarize_trace(trace),
        "elapsed_s": time.perf_counter() - t0,
    }
    if req.preset is not None:
        out["summary"]["preset"] = preset_summary(req, state_dir)
    if req.return_positions != "none":
        pos = trace.positions
        if req.return_positions == "final":
            pos = jax.tree.map(lambda l: l[:, -1], pos)
        out["positions"] = positions_as_lists(pos)
        out["energies"] = jsonable(energies)
    return out


def _equilibrium(payload, limits) -> dict[str, Any]:
    from ..schemas import EquilibriumRequest

    req = validated(EquilibriumRequest, payload)
    check_params(req.params, limits)
    job = EquilibriumJob(**req.model_dump())
    t0 = time.perf_counter()
    _, _, summary = run_equilibrium(job, limits=limits)
    return {
        "capsule": req.capsule,
        "summary": jsonable(summary),
        "elapsed_s": time.perf_counter() - t0,
    }
