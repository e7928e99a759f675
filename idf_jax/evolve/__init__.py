"""The evolution engine: population-based search over configurations, scored on known answers.

- `minimize(fitness_fn, space, key, strategy="CMA_ES", ...)`: an evosax evolution strategy
  over a named space of `Real`, `Int` and `Choice` parameters; a JAX fitness runs for the
  whole population in one jit(vmap), the generations in one `lax.scan`; a host fitness is
  called one generation at a time. Checkpoint / resume, progress bar, time budget.
- `MapElites(bins, ranges)`: a quality-diversity archive (the best per descriptor cell)
  kept next to the single best.
- `tune_equilibrium`, `tune_sampler`: the library tuning itself (annealing configuration
  by cost to the known minimum; sampler settings by effective samples per gradient).
- Presets: `load_preset`, `apply_preset`, `save_preset`, `available_presets`: tuned
  configurations as JSON with the run's provenance.
"""

from .archive import Archive as Archive
from .archive import MapElites as MapElites
from .archive import archive_insert as archive_insert
from .presets import apply_preset as apply_preset
from .presets import available_presets as available_presets
from .presets import load_preset as load_preset
from .presets import preset_record as preset_record
from .presets import save_preset as save_preset
from .search import EvolveResult as EvolveResult
from .search import default_population_size as default_population_size
from .search import default_restart_patience as default_restart_patience
from .search import minimize as minimize
from .space import Choice as Choice
from .space import Int as Int
from .space import Real as Real
from .space import Space as Space
from .strategies import available_strategies as available_strategies
from .tuning import EquilibriumTask as EquilibriumTask
from .tuning import equilibrium_space as equilibrium_space
from .tuning import tune_equilibrium as tune_equilibrium
from .tuning import tune_sampler as tune_sampler

__all__ = [
    "Archive",
    "Choice",
    "EquilibriumTask",
    "EvolveResult",
    "Int",
    "MapElites",
    "Real",
    "Space",
    "apply_preset",
    "archive_insert",
    "available_presets",
    "available_strategies",
    "default_population_size",
    "default_restart_patience",
    "equilibrium_space",
    "load_preset",
    "minimize",
    "preset_record",
    "save_preset",
    "tune_equilibrium",
    "tune_sampler",
]
