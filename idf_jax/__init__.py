"""idf-jax: the Industriverse Diffusion Framework in JAX.

Everything is an energy E(x) over a PyTree x; the target is p(x) ∝ exp(-E(x)/T).
This module is the single front door: every public name is reachable from here.

The core (samplers, the driver, adaptation, diagnostics, thermodynamics) is imported
eagerly; the modelling layers (`nvp`, `eil`), the evolution engine (`evolve`), the
blueprint facade (`engine`,
`EnergyDiffusionEngine`) and the runtime are imported on first use (PEP 562), so
`import idf_jax` stays light.
"""

import importlib as _importlib
from typing import TYPE_CHECKING

# --- core: samplers, the driver, adaptation, diagnostics -------------------------------
from . import adaptation as adaptation
from . import diagnostics as diagnostics
from . import interop as interop
from . import run as run
from . import samplers as samplers
from .adaptation import AdaptationResult as AdaptationResult
from .adaptation import adapt as adapt
from .adaptation import adapt_run as adapt_run
from .diagnostics import ess as ess
from .diagnostics import ess_tail as ess_tail
from .interop import to_arviz as to_arviz
from .interop import to_ase as to_ase
from .diagnostics import rhat as rhat
from .diagnostics import summary as summary
from .run import Trace as Trace
from .run import sample as sample
from .run.tuned import sample_tuned as sample_tuned
from .run import sample_nuts_desync as sample_nuts_desync
from .samplers import HMCInfo as HMCInfo
from .samplers import LangevinInfo as LangevinInfo
from .samplers import LangevinState as LangevinState
from .samplers import ReplicaExchangeInfo as ReplicaExchangeInfo
from .samplers import ReplicaExchangeState as ReplicaExchangeState
from .samplers import FunctionSampler as FunctionSampler
from .samplers import Sampler as Sampler
from .samplers import projected_langevin as projected_langevin
from .samplers import UnderdampedState as UnderdampedState
from .samplers import dynamic_hmc as dynamic_hmc
from .samplers import ghmc as ghmc
from .samplers import hmc as hmc
from .samplers import MAMSInfo as MAMSInfo
from .samplers import MCLMCInfo as MCLMCInfo
from .samplers import mams as mams
from .samplers import mclmc as mclmc
from .samplers import mala as mala
from .samplers import NUTSInfo as NUTSInfo
from .samplers import nuts as nuts
from .samplers import SMCResult as SMCResult
from .samplers import TemperedEnergy as TemperedEnergy
from .samplers import smc as smc
from .samplers import replica_exchange as replica_exchange
from .samplers import ula as ula
from .samplers import underdamped_langevin as underdamped_langevin
from .samplers.gibbs import GibbsInfo as GibbsInfo
from .samplers.gibbs import IsingGibbsState as IsingGibbsState
from .samplers.gibbs import PottsGibbsState as PottsGibbsState
from .samplers.gibbs import block_gibbs as block_gibbs

# --- thermodynamics: schedules, annealing, relaxation, constraints, diffusion, metrics --
from . import thermo as thermo
from .thermo import anneal as anneal
from .thermo import constraints as constraints
from .thermo import diffusion as diffusion
from .thermo import schedules as schedules
from .thermo import validate as validate
from .thermo.anneal import EquilibriumResult as EquilibriumResult
from .thermo.anneal import sample_equilibrium as sample_equilibrium
from .thermo.diffusion import VESDE as VESDE
from .thermo.diffusion import VPSDE as VPSDE
from .thermo.diffusion import forward_diffuse as forward_diffuse
from .thermo.diffusion import reverse_denoise as reverse_denoise
from .thermo.metrics import boltzmann_weights as boltzmann_weights
from .thermo.metrics import free_energy as free_energy
from .thermo.relax import relax as relax
from .thermo.validate import energy_law_fidelity as energy_law_fidelity
from .thermo.validate import entropy_coherence as entropy_coherence

__version__ = "0.1.0"

# --- modelling and the blueprint facade: imported on first use ---------------------------
# name -> (module, attribute or None for the module itself)
_LAZY = {
    "nvp": ("idf_jax.nvp", None),
    "eil": ("idf_jax.eil", None),
    "evolve": ("idf_jax.evolve", None),
    "blueprint": ("idf_jax.blueprint", None),
    "engine": ("idf_jax.blueprint.engine", None),
    "NVPPredictor": ("idf_jax.nvp", "NVPPredictor"),
    "EILOptimizer": ("idf_jax.eil", "EILOptimizer"),
    "detect_regime_shift": ("idf_jax.eil", "detect_regime_shift"),
    "EnergyDiffusionEngine": ("idf_jax.blueprint.engine", "EnergyDiffusionEngine"),
}


if TYPE_CHECKING:  # what the lazy names resolve to, for type checkers and editors
    from . import blueprint as blueprint
    from . import eil as eil
    from . import evolve as evolve
    from . import nvp as nvp
    from .blueprint import engine as engine
    from .blueprint.engine import EnergyDiffusionEngine as EnergyDiffusionEngine
    from .eil import EILOptimizer as EILOptimizer
    from .eil import detect_regime_shift as detect_regime_shift
    from .nvp import NVPPredictor as NVPPredictor


def __getattr__(name: str):
    """PEP 562: import the modelling layers only when first used."""
    if name in _LAZY:
        module_name, attr = _LAZY[name]
        module = _importlib.import_module(module_name)
        value = module if attr is None else getattr(module, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'idf_jax' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


# --- runtime: `%load_ext idf_jax` (IPython imported lazily) -------------------------------
def load_ipython_extension(ipython):
    """`%load_ext idf_jax`: registers `%idf_visualize` and `%idf_simulate`."""
    _importlib.import_module("idf_jax.runtime.notebook").load_ipython_extension(ipython)


__all__ = [
    "sample_tuned",
    "mclmc",
    "mams",
    "MCLMCInfo",
    "MAMSInfo",
    "ghmc",
    "dynamic_hmc",
    "AdaptationResult",
    "EILOptimizer",
    "EnergyDiffusionEngine",
    "EquilibriumResult",
    "FunctionSampler",
    "GibbsInfo",
    "HMCInfo",
    "IsingGibbsState",
    "LangevinInfo",
    "LangevinState",
    "NUTSInfo",
    "NVPPredictor",
    "PottsGibbsState",
    "ReplicaExchangeInfo",
    "ReplicaExchangeState",
    "SMCResult",
    "Sampler",
    "TemperedEnergy",
    "Trace",
    "UnderdampedState",
    "VESDE",
    "VPSDE",
    "adapt",
    "adapt_run",
    "anneal",
    "adaptation",
    "blueprint",
    "block_gibbs",
    "boltzmann_weights",
    "constraints",
    "detect_regime_shift",
    "diagnostics",
    "diffusion",
    "eil",
    "evolve",
    "energy_law_fidelity",
    "engine",
    "entropy_coherence",
    "ess",
    "ess_tail",
    "interop",
    "forward_diffuse",
    "free_energy",
    "hmc",
    "load_ipython_extension",
    "mala",
    "nuts",
    "nvp",
    "projected_langevin",
    "relax",
    "replica_exchange",
    "reverse_denoise",
    "rhat",
    "run",
    "sample",
    "sample_equilibrium",
    "sample_nuts_desync",
    "samplers",
    "schedules",
    "smc",
    "summary",
    "thermo",
    "to_arviz",
    "to_ase",
    "ula",
    "underdamped_langevin",
    "validate",
]
