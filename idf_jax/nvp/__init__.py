"""NVP: Next Vector Prediction, the physics-informed next-state forecaster.

Modules: `simulator` (datacenter telemetry simulator / EIL environment), `weather` (TMY3 from
pvlib), `data` (windows and input checks), `model` (causal transformer), `conservation`
(energy-balance projection), `loss` (physics-informed loss), `train` (optax training),
`checkpoint` (self-contained files), `predictor` (`NVPPredictor`).
"""

from . import checkpoint as checkpoint
from . import conservation as conservation
from . import data as data
from . import loss as loss
from . import model as model
from . import simulator as simulator
from . import train as train
from . import weather as weather
from .conservation import Balance as Balance
from .conservation import make_balance as make_balance
from .loss import LossWeights as LossWeights
from .loss import loss_fn as loss_fn
from .loss import loss_terms as loss_terms
from .model import Forecast as Forecast
from .model import NVPConfig as NVPConfig
from .model import NVPModel as NVPModel
from .model import forecast as forecast
from .predictor import DEFAULT_CHECKPOINT as DEFAULT_CHECKPOINT
from .predictor import NVPPredictor as NVPPredictor
from .train import TrainConfig as TrainConfig
from .train import train_windows as train_windows
