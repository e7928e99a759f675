"""NVP training from CSV telemetry, shared by `idf train` and the service's `train` jobs.

`plan_training(nvp_cfg, data)` checks an `nvp:` config section (model, training and run keys;
see `idf_jax.runtime.cli.train`) and reads the CSV files under `data` into training and
validation ranges; `run_training(plan)` fits the model with `idf_jax.nvp.train.train`, which
writes the checkpoint (atomically) with its channels, units, interval and training ranges.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

__all__ = ["RUN_KEYS", "TrainingPlan", "plan_training", "run_training"]

RUN_KEYS = {
    "channels",
    "val_fraction",
    "balance",
    "checkpoint",
    "resume",
    "units",
    "interval_s",
    "controls",
}


@dataclasses.dataclass(frozen=True)
class TrainingPlan:
    """What `plan_training` read and checked: the CSV files, their training and validation
    ranges, the model and training configurations, the series metadata stored in the
    checkpoint, the energy-balance spec, and the run keys (checkpoint path, resume)."""

    files: list[Path]
    train_series: list[Any]
    val_series: list[Any]
    model_cfg: Any
    train_cfg: Any
    series: Any
    balance: Any
    checkpoint: str
    resume: bool


def plan_training(nvp_cfg: dict[str, Any], data: Path) -> TrainingPlan:
    """Check `nvp_cfg` (the `nvp:` section) and read the CSV telemetry under `data` (a folder
    of CSVs or one CSV); ValueError naming the problem."""
    try:
        from ..nvp import NVPConfig, TrainConfig
        from ..nvp.data import read_series_csv
        from ..nvp.metadata import SeriesMeta
    except ImportError as e:
        raise ImportError(f"NVP training is not part of this build: {e}") from e

    cfg = dict(nvp_cfg)
    model_fields = {f.name for f in dataclasses.fields(NVPConfig)} - {"channels"}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(cfg) - model_fields - train_fields - RUN_KEYS
    if unknown:
        raise ValueError(
            f"unknown nvp config keys {sorted(unknown)}; known: "
            f"{sorted(model_fields | train_fields | RUN_KEYS)}"
        )
    channels = cfg.get("channels")
    if (
        not channels
        or not isinstance(channels, (list, tuple))
        or not all(isinstance(c, str) for c in channels)
    ):
        raise ValueError("nvp.channels must list the telemetry columns, e.g. [cpu, power, temp]")
    files = sorted(data.glob("*.csv")) if data.is_dir() else [data]
    if not files:
        raise ValueError(f"no CSV files in {str(data)!r}")
    val_fraction = float(cfg.get("val_fraction", 0.2))
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"nvp.val_fraction must be in (0, 1), got {val_fraction}")
    model_cfg = NVPConfig(channels=tuple(channels), **{k: cfg[k] for k in model_fields if k in cfg})
    train_kwargs: dict[str, Any] = {
        k: (tuple(cfg[k]) if isinstance(cfg[k], list) else cfg[k]) for k in train_fields if k in cfg
    }
    train_cfg = TrainConfig(**train_kwargs)
    units = cfg.get("units") or {}
    if not isinstance(units, dict):
        raise ValueError("nvp.units must map channels to units, e.g. {power: kW}")
    given = cfg.get("interval_s")
    train_series, val_series, steps = [], [], set()
    need = model_cfg.min_history + 1
    for f in files:
        values, _, step = read_series_csv(
            f, channels, interval_s=None if given is None else float(given)
        )
        steps.add(step)
        n_val = int(round(len(values) * val_fraction))
        if len(values) - n_val < need or n_val < need:
            raise ValueError(
                f"{f}: {len(values)} rows are too few to split into training and validation "
                f"ranges of at least {need} rows each"
            )
        train_series.append(values[: len(values) - n_val])
        val_series.append(values[len(values) - n_val :])
    if len(steps) != 1:
        raise ValueError(f"the CSV files have different sampling intervals: {sorted(steps)} s")
    series = SeriesMeta(
        tuple(channels),
        {c: str(units.get(c, "unspecified")) for c in channels},
        steps.pop(),
        controls=tuple(cfg.get("controls") or ()),
    )
    return TrainingPlan(
        files=files,
        train_series=train_series,
        val_series=val_series,
        model_cfg=model_cfg,
        train_cfg=train_cfg,
        series=series,
        balance=cfg.get("balance"),
        checkpoint=str(cfg.get("checkpoint", "models/nvp.ckpt")),
        resume=bool(cfg.get("resume", False)),
    )


def run_training(
    plan: TrainingPlan,
    *,
    checkpoint: str | None = None,
    progress: bool = True,
    extra_meta: dict[str, Any] | None = None,
) -> Any:
    """Train as `plan` says (`idf_jax.nvp.train.train`); the `TrainResult`. `checkpoint`
    overrides the plan's path; the files read are recorded in the checkpoint (`data`)."""
    from ..nvp.train import train as train_nvp

    meta = {"data": [str(f) for f in plan.files], **(extra_meta or {})}
    return train_nvp(
        plan.train_series,
        plan.val_series,
        plan.model_cfg,
        plan.balance,
        plan.train_cfg,
        checkpoint=checkpoint or plan.checkpoint,
        resume=plan.resume,
        progress=progress,
        extra_meta=meta,
        series=plan.series,
    )
