"""idf-jax: the Industriverse Diffusion Framework in JAX.

Everything is an energy E(x) over a PyTree x; the target is p(x) ∝ exp(-E(x)/T).
This module is the single front door: every public name is re-exported here.
"""

# --- core: samplers, the driver, diagnostics -------------------------------------------
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
from .samplers.gibbs import GibbsInfo as GibbsInfo
from .samplers.gibbs import IsingGibbsState as IsingGibbsState
from .samplers.gibbs import PottsGibbsState as PottsGibbsState
from .samplers.gibbs import block_gibbs as block_gibbs

# --- thermodynamics: schedules, annealing, adaptation, tempering, diffusion, metrics -------
from . import diffusion as diffusion
from . import relax as relax
from . import schedules as schedules
from . import thermo as thermo
from . import validate as validate
from .adapt import AdaptationResult as AdaptationResult
from .adapt import adapt as adapt
from .adapt import adapt_run as adapt_run
from .anneal import EquilibriumResult as EquilibriumResult
from .anneal import sample_equilibrium as sample_equilibrium
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

# --- modelling: NVP forecaster, EIL decision loop, the blueprint's engine facade ----------
from . import eil as eil
from . import engine as engine
from . import nvp as nvp
from .eil import EILOptimizer as EILOptimizer
from .eil import detect_regime_shift as detect_regime_shift
from .engine import EnergyDiffusionEngine as EnergyDiffusionEngine
from .nvp import NVPPredictor as NVPPredictor

__version__ = "0.1.0"


# --- runtime: `%load_ext idf_jax` (IPython imported lazily) -------------------------------
def load_ipython_extension(ipython):
    """`%load_ext idf_jax`: registers `%idf_visualize` and `%idf_simulate`."""
    from .notebook import load_ipython_extension as _load

    _load(ipython)
