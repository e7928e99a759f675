"""Samplers: pure (init, step) pairs over energy functions."""

from ._base import Sampler as Sampler
from .hmc import HMCInfo as HMCInfo
from .hmc import hmc as hmc
from .hmc import leapfrog as leapfrog
from .langevin import LangevinInfo as LangevinInfo
from .langevin import LangevinState as LangevinState
from .langevin import UnderdampedState as UnderdampedState
from .langevin import mala as mala
from .langevin import ula as ula
from .langevin import underdamped_langevin as underdamped_langevin
from .tempering import ReplicaExchangeInfo as ReplicaExchangeInfo
from .tempering import ReplicaExchangeState as ReplicaExchangeState
from .tempering import replica_exchange as replica_exchange
