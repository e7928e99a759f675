"""Everything that reasons about temperature.

- `schedules`: temperature schedules and the constant-thermodynamic-speed ladder;
- `anneal`: `sample_equilibrium`, annealing to the lowest-energy states;
- `relax`: deterministic local minimisation (L-BFGS, FIRE);
- `constraints`: composable constraints (penalties and projections);
- `diffusion`: VP/VE SDEs, score matching, reverse SDE and probability flow;
- `metrics`: Boltzmann weights, free energies, entropy estimators (re-exported here);
- `validate`: energy-law fidelity and entropy coherence.
"""

from . import anneal as anneal
from . import constraints as constraints
from . import diffusion as diffusion
from . import metrics as metrics
from . import relax as relax
from . import schedules as schedules
from . import validate as validate
from .metrics import *  # noqa: F403  (the metric functions, as `idf.thermo.free_energy`)
from .metrics import __all__ as _metrics_all

__all__ = [
    "anneal",
    "constraints",
    "diffusion",
    "metrics",
    "relax",
    "schedules",
    "validate",
    *_metrics_all,
]
