"""EIL, the Energy Intelligence Layer: sense -> act -> prove with a verifiable ledger.

- `EILOptimizer`: ``sense(reading)``, ``act(goal, constraints)``, ``prove(prediction_id)``
  (judged on the measured outcome), ``verify_ledger(anchor=...)``, ``anchor()``,
  ``regime()`` (see `idf_jax.eil.optimizer`).
- `detect_regime_shift`, `pelt`: penalised change-point detection (`idf_jax.eil.regime`).
- `Ledger`, `verify_ledger_file`: append-only, hash-chained, Ed25519-signed SQLite ledger,
  verifiable offline with the public key (`idf_jax.eil.ledger`; keys: `keys`; signed
  anchors against truncation and rollback: `anchor`).
- `TelemetryStore`, `SourceConfig`, `CHANNELS`: validated telemetry history (`store`).
- `row_source`: the simulator's datacenter row as a source, the layout the packaged
  action-conditioned NVP was trained for (`presets`).
- `NVPPlanner`: candidate scoring (one vmapped call) and gradient refinement through the
  action-conditioned NVP (`planner`, `idf_jax.nvp.control`).
- `PlantModel`, `PlantState`, `PlantAction`, `predict`: the differentiable datacenter
  model, EIL's fallback scorer (`plant`; as a forecaster: `plant_forecaster`).

Inside: `decision` (the one decision procedure over a `Forecaster` protocol: score, filter,
refine, in one jitted call; `Candidates`, `Objective`, `Limits`), `candidates` (the action
space), `sensing` (readings -> operating point, NVP window, exogenous forecast),
`calibration` (demand noise, power scale, temperature margin learned online), `goals`
(weights and constraints), `proof` (the PFT verdict).
"""

from .decision import Candidates as Candidates
from .decision import Forecaster as Forecaster
from .decision import Limits as Limits
from .decision import Objective as Objective
from .ledger import DEV_KEY as DEV_KEY
from .ledger import KEY_ENV as KEY_ENV
from .ledger import Ledger as Ledger
from .ledger import VerifyResult as VerifyResult
from .ledger import verify_ledger_file as verify_ledger_file
from .optimizer import ACTION_TYPES as ACTION_TYPES
from .optimizer import GOALS as GOALS
from .optimizer import EILOptimizer as EILOptimizer
from .planner import NVPForecaster as NVPForecaster
from .planner import NVPPlanner as NVPPlanner
from .plant import PlantAction as PlantAction
from .plant import PlantModel as PlantModel
from .plant import PlantState as PlantState
from .plant import predict as predict
from .plant_forecaster import PlantForecaster as PlantForecaster
from .presets import row_source as row_source
from .regime import detect_regime_shift as detect_regime_shift
from .regime import pelt as pelt
from .store import CHANNELS as CHANNELS
from .store import SourceConfig as SourceConfig
from .store import TelemetryStore as TelemetryStore
