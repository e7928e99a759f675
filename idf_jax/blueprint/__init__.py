"""Object facades with the blueprint's names, for people who start from the blueprint.

`EnergyDiffusionEngine` and `sample_equilibrium(engine=..., initial_state=...)` wrap the
functional core (`idf_jax.sample_equilibrium`, `idf_jax.thermo`). This layer may look up
capsules by domain name; nothing below it imports it.
"""

from .engine import ConstraintViolation as ConstraintViolation
from .engine import EnergyDiffusionEngine as EnergyDiffusionEngine
from .engine import sample_equilibrium as sample_equilibrium

__all__ = ["ConstraintViolation", "EnergyDiffusionEngine", "sample_equilibrium"]
