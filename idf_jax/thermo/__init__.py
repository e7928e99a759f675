"""Everything that reasons about temperature.

- `schedules`: temperature schedules and the constant-thermodynamic-speed ladder;
- `anneal`: `sample_equilibrium`, the search for the lowest-energy states (annealing or
  basin hopping, chosen by `method`);
- `basin_hopping`: basin hopping, parallel-tempering basin hopping and population
  annealing over many chains in one compiled loop;
- `moves`: move proposals `(key, x, scale) -> x'` for basin hopping;
- `relax`: deterministic local minimisation (L-BFGS, FIRE);
- `constraints`: composable constraints (penalties and projections);
- `diffusion`: VP/VE SDEs, score matching, reverse SDE and probability flow;
- `metrics`: Boltzmann weights, free energies, entropy estimators (re-exported here);
- `validate`: energy-law fidelity and entropy coherence;
- `implicit`: differentiable minima (envelope and implicit function theorems).
"""

from . import anneal as anneal
from . import basin_hopping as basin_hopping
from . import constraints as constraints
from . import diffusion as diffusion
from . import implicit as implicit
from . import metrics as metrics
from . import moves as moves
from . import relax as relax
from . import schedules as schedules
from . import validate as validate
from .metrics import AISResult as AISResult
from .metrics import EntropyProduction as EntropyProduction
from .metrics import annealed_importance_sampling as annealed_importance_sampling
from .metrics import bar as bar
from .metrics import boltzmann_weights as boltzmann_weights
from .metrics import ensemble_free_energy as ensemble_free_energy
from .metrics import entropy_production as entropy_production
from .metrics import free_energy as free_energy
from .metrics import gaussian_entropy as gaussian_entropy
from .metrics import histogram_entropy as histogram_entropy
from .metrics import jarzynski as jarzynski
from .metrics import knn_entropy as knn_entropy
from .metrics import log_mean_exp as log_mean_exp
from .metrics import zwanzig as zwanzig

__all__ = [
    "anneal",
    "basin_hopping",
    "moves",
    "constraints",
    "diffusion",
    "implicit",
    "metrics",
    "relax",
    "schedules",
    "validate",
    "boltzmann_weights",
    "log_mean_exp",
    "free_energy",
    "zwanzig",
    "jarzynski",
    "bar",
    "AISResult",
    "annealed_importance_sampling",
    "gaussian_entropy",
    "histogram_entropy",
    "knn_entropy",
    "EntropyProduction",
    "ensemble_free_energy",
    "entropy_production",
]
