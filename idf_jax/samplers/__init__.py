"""Samplers: transition kernels as PyTrees (`equinox.Module`s with `init` and `step`).

Each family also exposes its one transition with the parameters as arguments
(`build_mala_kernel(energy_fn)(key, state, step_size, temperature)`), which annealing,
adaptation and tempering reuse.
"""

from ._base import Energy as Energy
from ._base import FunctionSampler as FunctionSampler
from ._base import Sampler as Sampler
from .dynamic_hmc import DynamicHMC as DynamicHMC
from .dynamic_hmc import DynamicHMCInfo as DynamicHMCInfo
from .dynamic_hmc import dynamic_hmc as dynamic_hmc
from .ghmc import GHMC as GHMC
from .ghmc import GHMCInfo as GHMCInfo
from .ghmc import GHMCState as GHMCState
from .ghmc import build_ghmc_kernel as build_ghmc_kernel
from .ghmc import ghmc as ghmc
from .gibbs import GibbsInfo as GibbsInfo
from .gibbs import IsingGibbs as IsingGibbs
from .gibbs import IsingGibbsState as IsingGibbsState
from .gibbs import PottsGibbs as PottsGibbs
from .gibbs import PottsGibbsState as PottsGibbsState
from .gibbs import block_gibbs as block_gibbs
from .hmc import HMC as HMC
from .hmc import HMCInfo as HMCInfo
from .hmc import build_hmc_kernel as build_hmc_kernel
from .hmc import hmc as hmc
from .hmc import leapfrog as leapfrog
from .langevin import MALA as MALA
from .langevin import ULA as ULA
from .langevin import LangevinInfo as LangevinInfo
from .langevin import LangevinState as LangevinState
from .langevin import UnderdampedLangevin as UnderdampedLangevin
from .langevin import UnderdampedState as UnderdampedState
from .langevin import build_mala_kernel as build_mala_kernel
from .langevin import build_ula_kernel as build_ula_kernel
from .langevin import build_underdamped_kernel as build_underdamped_kernel
from .langevin import mala as mala
from .langevin import ula as ula
from .langevin import underdamped_langevin as underdamped_langevin
from .mclmc import MAMS as MAMS
from .mclmc import MCLMC as MCLMC
from .mclmc import MAMSInfo as MAMSInfo
from .mclmc import MAMSState as MAMSState
from .mclmc import MCLMCInfo as MCLMCInfo
from .mclmc import MCLMCState as MCLMCState
from .mclmc import build_mams_kernel as build_mams_kernel
from .mclmc import build_mclmc_kernel as build_mclmc_kernel
from .mclmc import mams as mams
from .mclmc import mclmc as mclmc
from .nuts import NUTS as NUTS
from .nuts import NUTSInfo as NUTSInfo
from .nuts import nuts as nuts
from .projected import ProjectedLangevin as ProjectedLangevin
from .projected import projected_langevin as projected_langevin
from .smc import SMCResult as SMCResult
from .smc import TemperedEnergy as TemperedEnergy
from .smc import smc as smc
from .tempering import ReplicaExchange as ReplicaExchange
from .tempering import ReplicaExchangeInfo as ReplicaExchangeInfo
from .tempering import ReplicaExchangeState as ReplicaExchangeState
from .tempering import replica_exchange as replica_exchange
