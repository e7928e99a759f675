"""Enterprise capsule: energy-optimal datacenter configuration.

Physical model (all powers in kW, temperatures in degrees C, rates in requests/s):

- Server s, when on, draws  P_s = P_idle_s + (P_max_s - P_idle_s) * u_s  (the linear
  utilisation model of Fan, Weber & Barroso, "Power provisioning for a warehouse-sized
  computer", ISCA 2007); an off server draws nothing. A server is on exactly when it hosts
  at least one workload replica (an idle powered server only costs energy).
- Each server is an M/M/1 queue with service rate mu_s. Workload w brings a Poisson stream
  of lambda_w requests/s and runs as n_w >= 1 replicas on distinct servers; every replica
  processes the full stream (hot standby / state-machine replication), so server s sees
  lambda_s = sum_w lambda_w x_ws, utilisation u_s = lambda_s / mu_s, and mean response time
  R_s = 1 / (mu_s - lambda_s)  (M/M/1). `latency_max` requires R_s <= L_max, i.e. the linear
  capacity  lambda_s <= mu_s - 1 / L_max.
- Uptime: servers fail independently with availability a; a workload is up while one of its
  replicas is, so  uptime = prod_w (1 - (1 - a)^{n_w}).  `uptime` requires uptime >= U.
- Cooling: a CRAC unit supplies air at setpoint T_sup; its coefficient of performance is
  the HP Labs curve  COP(T) = 0.0068 T^2 + 0.0008 T + 0.458  (Moore, Chase, Ranganathan &
  Sharma, "Making scheduling 'cool'", USENIX ATC 2005), so P_cool = P_IT / COP(T_sup) and the
  facility draws  P_fac = P_IT (1 + 1 / COP(T_sup)).
- Inlet temperatures follow the abstract heat-flow (recirculation) model of Tang, Gupta &
  Varsamopoulos (IEEE TPDS 2008):  T_in = T_sup + D P  with D (degC/kW) the
  heat-recirculation matrix. Every inlet must stay <= T_in_max (ASHRAE A1: 27 degC).
- The setpoint moves on the CRAC's grid [T_min, T_max] in steps of `setpoint_step_c`. COP
  rises with T, so for a given placement the best setpoint is the warmest grid value that
  keeps every inlet below its limit; the discrete energy uses exactly that setpoint.

Energy = facility power + penalty_kw * sum_c (v_c + v_c^2) with v_c >= 0 the normalised
violation of each constraint: uptime (U - uptime) / (1 - U), latency (lambda_s - cap_s) / mu_s,
inlet temperature (T_in_s - T_in_max) / 1 degC.

Modules:
- `model`: `DatacenterModel` (the parsed datacenter as an `equinox.Module`) and `cop`;
- `config`: `parse_config`, the validated config -> model step;
- `energy`: the physics, the discrete energy of a 0/1 placement, `decode_placement`;
- `capsule`: the registered `datacenter` capsule (a continuous relaxation of the placement);
- `search`: Metropolis moves over 0/1 placements (`placement_sampler`, `anneal_placement`);
- `milp`: `milp_reference`, the exact optimum (scipy HiGHS) and its LP bound;
- `facade`: the blueprint's `EnterpriseDiffusionCapsule.optimize_infrastructure`.
"""

from .capsule import datacenter as datacenter
from .config import parse_config as parse_config
from .energy import best_setpoint as best_setpoint
from .energy import decode_placement as decode_placement
from .energy import discrete_energy as discrete_energy
from .energy import is_feasible as is_feasible
from .facade import EnterpriseDiffusionCapsule as EnterpriseDiffusionCapsule
from .milp import milp_reference as milp_reference
from .model import DatacenterModel as DatacenterModel
from .model import cop as cop
from .search import PlacementInfo as PlacementInfo
from .search import PlacementState as PlacementState
from .search import anneal_placement as anneal_placement
from .search import placement_sampler as placement_sampler

__all__ = [
    "DatacenterModel",
    "EnterpriseDiffusionCapsule",
    "PlacementInfo",
    "PlacementState",
    "anneal_placement",
    "best_setpoint",
    "cop",
    "datacenter",
    "decode_placement",
    "discrete_energy",
    "is_feasible",
    "milp_reference",
    "parse_config",
    "placement_sampler",
]
