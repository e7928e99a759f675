"""`idf train`: train the NVP forecaster from a config section and a folder of CSV telemetry.

    idf train --config config.yaml --data ./data/

The `nvp:` section of a project config.yaml:

    nvp:
      channels: [cpu, power, temp]   # CSV columns (header names), in model order
      window: 48                     # NVPConfig fields: window, d_model, num_heads,
      d_model: 32                    #   num_layers, mlp_ratio, min_history
      epochs: 30                     # TrainConfig fields: epochs, batch_size, learning_rate,
      batch_size: 64                 #   weight_decay, warmup_frac, clip_norm, patience, seed, ...
      units: {cpu: fraction, power: kW, temp: degC}   # stored in the checkpoint
      interval_s: 900                # sampling interval; checked against a timestamp column
      controls: []                   # channels that are control inputs (e.g. setpoint)
      val_fraction: 0.2              # the last 20% of every series is the validation range
      balance: null                  # energy-balance spec of idf_jax.nvp (None: no balance)
      checkpoint: models/nvp.ckpt
      resume: false

Each CSV file is one series (a header row, then one sample per row, oldest first). A
`timestamp` column (seconds or ISO 8601) is checked: unsorted, duplicate or gapped times are
refused. The checkpoint records channels, units, interval, controls and training ranges, so
the model is refused for data in other units or at another interval.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import typer

from ._common import console, load_yaml

__all__ = ["train", "train_from_config"]


def train(
    config: Path = typer.Option(..., "--config", "-c", help="project config.yaml (nvp section)"),
    data: Path = typer.Option(..., "--data", help="folder of CSV telemetry files (or one CSV)"),
    out: Path | None = typer.Option(
        None, help="checkpoint path", show_default="config nvp.checkpoint"
    ),
    epochs: int | None = typer.Option(None, min=1, show_default="config nvp.epochs, else 30"),
    seed: int | None = typer.Option(None, min=0, show_default="config nvp.seed, else 0"),
):
    """Train the NVP forecaster on telemetry CSVs with a live progress display.

    Example: idf train --config config.yaml --data ./data/
    """
    cfg = load_yaml(config)
    nvp_cfg = dict(cfg.get("nvp", {}) or {})
    if epochs is not None:
        nvp_cfg["epochs"] = epochs
    if seed is not None:
        nvp_cfg["seed"] = seed
    if out is not None:
        nvp_cfg["checkpoint"] = str(out)
    if not data.exists():
        raise typer.BadParameter(f"{str(data)!r} does not exist", param_hint="--data")
    result = train_from_config(nvp_cfg, data)
    console().print(result)


_RUN_KEYS = {
    "channels",
    "val_fraction",
    "balance",
    "checkpoint",
    "resume",
    "units",
    "interval_s",
    "controls",
}


def train_from_config(nvp_cfg: dict[str, Any], data: Path) -> str:
    """Train NVP on the CSV telemetry under `data` as `nvp_cfg` says; returns a report line."""
    try:
        from ...nvp import NVPConfig, TrainConfig
        from ...nvp.data import read_series_csv
        from ...nvp.metadata import SeriesMeta
        from ...nvp.train import train as train_nvp
    except ImportError as e:
        raise ImportError(f"NVP training is not part of this build: {e}") from e

    cfg = dict(nvp_cfg)
    model_fields = {f.name for f in dataclasses.fields(NVPConfig)} - {"channels"}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(cfg) - model_fields - train_fields - _RUN_KEYS
    if unknown:
        raise ValueError(
            f"unknown nvp config keys {sorted(unknown)}; known: "
            f"{sorted(model_fields | train_fields | _RUN_KEYS)}"
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
    ckpt = str(cfg.get("checkpoint", "models/nvp.ckpt"))
    Path(ckpt).parent.mkdir(parents=True, exist_ok=True)
    res = train_nvp(
        train_series,
        val_series,
        model_cfg,
        cfg.get("balance"),
        train_cfg,
        checkpoint=ckpt,
        resume=bool(cfg.get("resume", False)),
        progress=True,
        extra_meta={"data": [str(f) for f in files]},
        series=series,
    )
    return (
        f"trained NVP on {len(files)} series ({', '.join(channels)}): best validation loss "
        f"{res.best_val:.5g} at epoch {res.best_epoch}; checkpoint {res.checkpoint}"
    )
