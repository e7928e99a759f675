"""Stamp series metadata (units, interval, controls, training ranges) into the packaged NVP
checkpoints without retraining them.

    PYTHONPATH=. python experiments/checkpoint_metadata.py

The training data of each checkpoint is regenerated exactly as its training script does
(`experiments/nvp_default_checkpoint.py`, `experiments/eil_nvp_checkpoint.py`: same
simulator presets, weather and seeds), the ranges are measured on it, and the header is
rewritten (`idf_jax.nvp.checkpoint.rewrite_series`); the weights and their SHA-256 are
unchanged. Both training scripts now pass the same metadata, so a retrained checkpoint
carries it too.
"""

from __future__ import annotations

import sys

import numpy as np

from idf_jax.nvp import checkpoint as ckpt
from idf_jax.nvp import control
from idf_jax.nvp.predictor import DEFAULT_CHECKPOINT

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import eil_nvp_checkpoint as eil_script  # noqa: E402
import nvp_default_checkpoint as rack_script  # noqa: E402


def main() -> None:
    x, names, meta = rack_script.training_data()
    ckpt.rewrite_series(DEFAULT_CHECKPOINT, meta)
    print(DEFAULT_CHECKPOINT, meta.to_json())
    tr, spec = eil_script.training_data()
    meta = eil_script.series_meta([x for x, _, _ in tr], spec)
    ckpt.rewrite_series(control.EIL_CHECKPOINT, meta)
    print(control.EIL_CHECKPOINT, {c: np.round(v, 3).tolist() for c, v in meta.ranges.items()})


if __name__ == "__main__":
    main()
