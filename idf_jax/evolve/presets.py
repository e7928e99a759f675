"""Presets of the evolution engine: the core's `idf_jax._presets` (loading a preset needs no
evolution engine), re-exported here as `idf.evolve.load_preset` etc."""

from .._presets import PRESET_DIR as PRESET_DIR
from .._presets import apply_preset as apply_preset
from .._presets import available_presets as available_presets
from .._presets import load_preset as load_preset
from .._presets import merge_preset as merge_preset
from .._presets import preset_record as preset_record
from .._presets import read_preset as read_preset
from .._presets import save_preset as save_preset

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
