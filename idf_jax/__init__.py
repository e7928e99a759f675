"""idf-jax: the Industriverse Diffusion Framework in JAX.

Everything is an energy E(x) over a PyTree x; the target is p(x) ∝ exp(-E(x)/T).
This module is the single front door: every public name is re-exported here.
"""

from . import diagnostics as diagnostics
from .diagnostics import ess as ess
from .diagnostics import rhat as rhat
from .diagnostics import summary as summary
from .run import Trace as Trace
from .run import sample as sample
from .samplers import HMCInfo as HMCInfo
from .samplers import LangevinInfo as LangevinInfo
from .samplers import LangevinState as LangevinState
from .samplers import Sampler as Sampler
from .samplers import UnderdampedState as UnderdampedState
from .samplers import hmc as hmc
from .samplers import mala as mala
from .samplers import ula as ula
from .samplers import underdamped_langevin as underdamped_langevin

__version__ = "0.1.0"

# --- anneal area: schedules, annealing, adaptation, engine facade
from . import relax as relax
from . import schedules as schedules
from .anneal import EquilibriumResult as EquilibriumResult
from .anneal import sample_equilibrium as sample_equilibrium
from .adapt import AdaptationResult as AdaptationResult
from .adapt import adapt as adapt
from .adapt import adapt_run as adapt_run
# --- thermodynamics (replica exchange, diffusion, thermo metrics, validation) ---
from . import diffusion as diffusion
from . import thermo as thermo
from . import validate as validate
from .diffusion import VESDE as VESDE
from .diffusion import VPSDE as VPSDE
from .diffusion import forward_diffuse as forward_diffuse
from .diffusion import reverse_denoise as reverse_denoise
from .samplers import ReplicaExchangeInfo as ReplicaExchangeInfo
from .samplers import ReplicaExchangeState as ReplicaExchangeState
from .samplers import replica_exchange as replica_exchange
from .thermo import boltzmann_weights as boltzmann_weights
from .thermo import free_energy as free_energy
from .validate import energy_law_fidelity as energy_law_fidelity
from .validate import entropy_coherence as entropy_coherence
# --- nvp: Next Vector Prediction (physics-informed forecaster) ---
from . import nvp as nvp  # noqa: E402
from .nvp import NVPPredictor as NVPPredictor  # noqa: E402
from . import engine as engine  # noqa: E402
from .engine import EnergyDiffusionEngine as EnergyDiffusionEngine  # noqa: E402
# --- physical capsules (issue 4): lattice block Gibbs
from .samplers.gibbs import GibbsInfo as GibbsInfo
from .samplers.gibbs import IsingGibbsState as IsingGibbsState
from .samplers.gibbs import PottsGibbsState as PottsGibbsState
from .samplers.gibbs import block_gibbs as block_gibbs
# --- eil: Energy Intelligence Layer (sense -> act -> prove, regime detection, proof ledger) ---
from . import eil as eil  # noqa: E402
from .eil import EILOptimizer as EILOptimizer  # noqa: E402
from .eil import detect_regime_shift as detect_regime_shift  # noqa: E402

# --- runtime (CLI, service, notebook magics) ---------------------------------------------
def load_ipython_extension(ipython):
    """`%load_ext idf_jax`: registers `%idf_visualize` and `%idf_simulate` (IPython loaded lazily)."""
    from .notebook import load_ipython_extension as _load

    _load(ipython)
