"""Request and response models of the service (pydantic v2).

Hard bounds live here (a value that can never be valid: 422 naming the field);
configurable limits (chains, steps, dimensions, work) are checked against
`ServiceConfig.limits` in the handlers and answered with 413 naming the field.
Non-finite floats (NaN, Infinity, which Python's JSON parser accepts) are rejected.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
)

__all__ = [
    "SampleRequest",
    "SampleResponse",
    "EquilibriumRequest",
    "EquilibriumResponse",
    "PredictRequest",
    "SenseRequest",
    "StreamMessage",
    "ActRequest",
    "ProveRequest",
    "CapsuleInfoModel",
    "JobRequest",
    "TrainRequest",
    "BudgetsModel",
    "JobAccepted",
    "JobInfo",
    "ErrorResponse",
]

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False, str_max_length=10_000)

Scalar = StrictBool | StrictInt | StrictFloat | Annotated[str, Field(max_length=1000)]

_MAX_DEPTH = 8
_MAX_VALUES = 1_000_000


def _check_json(value: Any) -> Any:
    """A capsule parameter: JSON scalars, lists and objects (a covariance matrix, a
    datacenter config) nested at most 8 deep, at most 1 M values, finite numbers only."""
    count = 0
    stack = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        count += 1
        if count > _MAX_VALUES:
            raise ValueError(f"more than {_MAX_VALUES} values")
        if depth > _MAX_DEPTH:
            raise ValueError(f"nested deeper than {_MAX_DEPTH} levels")
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError("numbers must be finite (no NaN or Infinity)")
        if isinstance(v, str) and len(v) > 1000:
            raise ValueError("strings must be at most 1000 characters")
        if isinstance(v, list):
            stack.extend((x, depth + 1) for x in v)
        elif isinstance(v, dict):
            for k, x in v.items():
                if len(k) > 200:
                    raise ValueError("keys must be at most 200 characters")
                stack.append((x, depth + 1))
        elif v is not None and not isinstance(v, (bool, int, float, str)):
            raise ValueError(f"not a JSON value: {type(v).__name__}")
    return value


ParamValue = Annotated[
    Scalar | list[Any] | dict[str, Any] | None,
    AfterValidator(_check_json),
    Field(description="a JSON value: number, string, bool, list (nested: arrays) or object"),
]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Number = StrictFloat | StrictInt


class _Model(BaseModel):
    model_config = _STRICT


class SampleRequest(_Model):
    """Sample `chains` chains of a sampler on a registered capsule's energy."""

    capsule: Name = Field(description="registry name, e.g. molecular.lennard_jones_cluster")
    params: dict[Name, ParamValue] = Field(default_factory=dict, description="capsule parameters")
    sampler: Literal["mala", "ula", "underdamped", "hmc", "mams"] = Field(
        "mala",
        description="mams: idf.sample_tuned(method='mams'), tuned on the chains during "
        "burn_in (0: the tuner's warm-up); step_size, friction and num_integration_steps "
        "are then not used",
    )
    chains: int = Field(16, ge=1, description="number of chains (limit: service config)")
    steps: int = Field(1000, ge=1, description="steps per chain, burn-in included")
    thin: int = Field(1, ge=1)
    burn_in: int = Field(0, ge=0)
    step_size: float = Field(1e-3, gt=0, le=1e6)
    temperature: float = Field(1.0, gt=0, le=1e12)
    friction: float = Field(1.0, gt=0, le=1e12)
    num_integration_steps: int = Field(10, ge=1, le=1000)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    return_positions: Literal["none", "final", "all"] = Field(
        "none", description="positions returned: none, the final draw per chain, or all draws"
    )
    preset: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
        description="a sampler preset by name (packaged, or presets/<name>.json in the "
        "state directory; written by `idf evolve sampler`): its sampler, step_size and "
        "num_integration_steps, unless the request sets them; or a tuner preset (target "
        "sample_tuned): sampler mams with the preset's tuner settings",
    )


class SampleResponse(BaseModel):
    capsule: str
    sampler: str
    summary: dict[str, Any]
    energies: list[list[float | None]] | None = None
    positions: dict[str, Any] | None = None
    elapsed_s: float


class EquilibriumRequest(_Model):
    """Anneal `chains` chains of a capsule to low-energy states (`idf.sample_equilibrium`)."""

    capsule: Name
    params: dict[Name, ParamValue] = Field(default_factory=dict)
    chains: int = Field(16, ge=1)
    steps: int = Field(2000, ge=1)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    relax: bool = True


class EquilibriumResponse(BaseModel):
    capsule: str
    summary: dict[str, Any]
    elapsed_s: float


Reading = dict[Name, Number]


class PredictRequest(_Model):
    """One telemetry history (`history`) or several (`histories`), oldest sample first."""

    history: list[Reading] | None = Field(None, min_length=1)
    histories: list[Annotated[list[Reading], Field(min_length=1)]] | None = Field(
        None, min_length=1
    )


class StreamMessage(_Model):
    """A message in on WS /v1/nvp/stream: a reading of one series, or a reset of it."""

    type: Literal["reading", "reset"]
    reading: Reading | None = Field(None, min_length=1)
    series: Name = "default"
    timestamp: Number | None = None


class SenseRequest(_Model):
    source: Name
    metrics: dict[Name, Number] = Field(min_length=1)
    timestamp: Number | None = None
    interval_s: Number | None = Field(None, description="seconds the reading covers")


class ActRequest(_Model):
    goal: Name = "minimize_energy"
    constraints: dict[Name, Number] = Field(default_factory=dict)
    source: Name | None = Field(None, description="telemetry source (default: last sensed)")
    weights: list[Number] | None = Field(
        None,
        min_length=3,
        max_length=3,
        description="w1 (energy), w2 (entropy), w3 (irreversibility)",
    )


class ProveRequest(_Model):
    """A prediction to judge on its measured outcome; `actual_state`, when given, is the
    client's claim of the outcome, checked against the telemetry (never a reward source)."""

    prediction_id: Name
    actual_state: dict[Name, Number] | None = Field(default=None, min_length=1)


class CapsuleInfoModel(BaseModel):
    name: str
    description: str
    parameters: dict[str, str]


class ErrorResponse(BaseModel):
    detail: Any


class BudgetsModel(_Model):
    """A job's budgets (default and maximum: the service's `job_wall_s`, `job_memory_mb`)."""

    wall_s: float | None = Field(None, gt=0, le=1e7, description="wall-time budget, seconds")
    memory_mb: float | None = Field(
        None, gt=0, le=1e7, description="memory budget, MB above the worker's idle footprint"
    )


RowValue = StrictFloat | StrictInt | Annotated[str, Field(max_length=64)]


class TrainRequest(_Model):
    """Train an NVP forecaster as `idf train` does, on CSV telemetry in the state directory
    (`data`) or on the rows given (`rows`, oldest first); the checkpoint is written to
    `<state dir>/models/<name>.ckpt` (atomically: replaced only by a finished training)."""

    nvp: dict[Name, ParamValue] = Field(
        description="the nvp: section of idf train (channels, window, d_model, epochs, "
        "batch_size, units, interval_s, controls, val_fraction, ...; the service sets the "
        "checkpoint)"
    )
    data: str | None = Field(
        None,
        min_length=1,
        max_length=1000,
        description="a CSV file or a folder of CSV files, relative to the state directory",
    )
    rows: list[dict[Name, RowValue]] | None = Field(
        None,
        min_length=2,
        max_length=100_000,
        description="one series: records {channel: number, timestamp?: seconds or ISO 8601}",
    )
    name: str = Field(
        "nvp",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
        description="checkpoint name: models/<name>.ckpt in the state directory",
    )


class JobRequest(_Model):
    """An asynchronous job: `kind` and the body of the matching synchronous route."""

    kind: Literal["sample", "equilibrium", "train"]
    payload: dict[Name, Any] = Field(
        description="a SampleRequest (kind sample), an EquilibriumRequest (kind equilibrium) "
        "or a TrainRequest (kind train)"
    )
    budgets: BudgetsModel = Field(default_factory=lambda: BudgetsModel.model_validate({}))


class JobAccepted(BaseModel):
    id: str
    status: str


class JobInfo(BaseModel):
    id: str
    kind: str
    status: str
    progress: float
    created: float
    started: float | None = None
    finished: float | None = None
    budgets: dict[str, Any]
    error: dict[str, Any] | None = None
    result: Any = None
