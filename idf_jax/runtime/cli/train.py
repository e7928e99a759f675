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
      checkpoint: models/nvp.ckpt    # relative to the project folder (that of config.yaml)
      resume: false

Each CSV file is one series (a header row, then one sample per row, oldest first). A
`timestamp` column (seconds or ISO 8601) is checked: unsorted, duplicate or gapped times are
refused. The checkpoint records channels, units, interval, controls and training ranges, so
the model is refused for data in other units or at another interval.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..training import plan_training, run_training
from ._common import console, load_yaml, project_path

__all__ = ["train", "train_from_config"]


def train(
    config: Path = typer.Option(..., "--config", "-c", help="project config.yaml (nvp section)"),
    data: Path = typer.Option(..., "--data", help="folder of CSV telemetry files (or one CSV)"),
    out: Path | None = typer.Option(
        None,
        help="checkpoint path",
        show_default="config nvp.checkpoint, else models/nvp.ckpt; in the --config project",
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
    nvp_cfg["checkpoint"] = str(project_path(out, config, nvp_cfg, "checkpoint", "models/nvp.ckpt"))
    if not data.exists():
        raise typer.BadParameter(f"{str(data)!r} does not exist", param_hint="--data")
    result = train_from_config(nvp_cfg, data)
    console().print(result)


def train_from_config(nvp_cfg: dict[str, Any], data: Path) -> str:
    """Train NVP on the CSV telemetry under `data` as `nvp_cfg` says; returns a report line."""
    plan = plan_training(nvp_cfg, data)
    Path(plan.checkpoint).parent.mkdir(parents=True, exist_ok=True)
    res = run_training(plan)
    channels = plan.model_cfg.channels
    return (
        f"trained NVP on {len(plan.files)} series ({', '.join(channels)}): best validation loss "
        f"{res.best_val:.5g} at epoch {res.best_epoch}; checkpoint {res.checkpoint}"
    )
