"""NVP: Next Vector Prediction, the physics-informed next-state forecaster.

Modules: `physics` (the datacenter physics, one source for the simulator and EIL), `simulator`
(datacenter telemetry simulator / EIL environment), `weather` (TMY3 from
pvlib), `data` (windows and input checks), `model` (causal transformer), `conservation`
(energy-balance projection), `loss` (physics-informed loss), `train` (optax training),
`checkpoint` (self-contained files), `predictor` (`NVPPredictor`), `metrics` (MASE, skill
against persistence, CRPS, interval coverage), `baselines` (persistence, seasonal naive,
ridge AR with time-of-day features, ETS; multi-horizon with residual-based sds), `backtest`
(rolling multi-horizon backtests of a predictor).

Default checkpoint: `NVPPredictor()` without a path loads `checkpoints/rack_default.ckpt`
(~100 KB), trained by `experiments/nvp_default_checkpoint.py` on 60 days of the simulator's
one-server preset under piecewise-constant setpoint schedules of 16-27 °C (5-minute steps;
channels cpu 0-1, power W, temp deg F, and the control input setpoint deg F; energy balance
C dT = (P - UA max(T - T_setpoint, 0)) dt with the setpoint read from its channel,
`control_inputs`). Pass the setpoint for the forecast interval with
``predict_next(history, controls={'setpoint': 69.8})`` or over a horizon with
``forecast(history, controls=..., horizon=H)``; without one the 18 °C default is assumed and
the result says so (``assumed_controls``). It answers the blueprint example::

    nvp = NVPPredictor()
    p = nvp.predict_next(telemetry_history=[{'cpu': 0.75, 'power': 850, 'temp': 72},
                                            {'cpu': 0.78, 'power': 865, 'temp': 73},
                                            {'cpu': 0.81, 'power': 880, 'temp': 74}])
    p['power'], p['interval']['power'], p['confidence'], p['energy_valid']

Train your own: `nvp.train.train([train_array], [val_array], NVPConfig(channels=...), spec)`
with a balance spec (see `conservation`, `simulator.row_balance_spec`) or `spec=None`.

Action-conditioned NVP (`control`): controls are channels of the window marked as inputs
(not scored in the loss); `control.ControlledNVP()` loads `checkpoints/eil_row.ckpt` (kW / °C
channels of the simulator's row preset, trained on excited actions by
`experiments/eil_nvp_checkpoint.py`), whose pure `rollout` EIL vmaps over candidate actions.
"""

from . import baselines as baselines
from . import checkpoint as checkpoint
from . import conservation as conservation
from . import control as control
from . import control_inputs as control_inputs
from . import data as data
from . import loss as loss
from . import metrics as metrics
from . import model as model
from . import physics as physics
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
