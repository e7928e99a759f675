"""`idf train`: train the NVP forecaster from a config section and a data folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def train_from_config(nvp_cfg: dict[str, Any], data: Path) -> str:
    """Train NVP on the CSV telemetry under `data` as `nvp_cfg` says; returns a report line."""
    try:
        from . import nvp  # noqa: F401
    except ImportError as e:
        raise ImportError("NVP training is not part of this build (idf_jax.nvp is missing)") from e
    raise ImportError("NVP training entry point not wired yet")
