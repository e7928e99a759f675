"""The registered `enterprise.datacenter` capsule: a continuous relaxation of placement.

Discrete choices. The placement x in {0,1}^{W x S} is discrete. The capsule's `energy_fn`
is a continuous relaxation (x_ws = sigmoid(logit_ws), server on-probability
1 - prod_w (1 - x_ws), a continuous setpoint), usable by any Langevin sampler; at 0/1 values
and a grid setpoint it equals the discrete energy (`energy.discrete_energy`). The discrete
space itself is searched by `search` (Metropolis moves) and solved exactly by `milp`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._base import Capsule, register
from .config import parse_config
from .energy import decode_placement, facility_energy
from .model import DatacenterModel

__all__ = ["datacenter", "relaxed_placement"]

RelaxedState = dict[str, Array]
"""{'logits': (W, S), 'setpoint': ()} for one chain (a leading chain axis in batches)."""


def relaxed_placement(
    m: DatacenterModel, state: RelaxedState
) -> tuple[Float[Array, "W S"], Float[Array, ""]]:
    """(x, T): the fractional placement sigmoid(logits) and the setpoint
    T_min + (T_max - T_min) sigmoid(s) of a relaxed state."""
    x = jax.nn.sigmoid(state["logits"])
    t_lo, t_hi = m.setpoint_grid[0], m.setpoint_grid[-1]
    t = t_lo + (t_hi - t_lo) * jax.nn.sigmoid(state["setpoint"])
    return x, t


@register(
    "enterprise.datacenter",
    "Datacenter facility power (servers + CRAC cooling) over workload placement and setpoint, "
    "with uptime, latency and inlet-temperature penalties",
)
def datacenter(config: Mapping[str, Any]) -> Capsule:
    """Datacenter capsule: energy = facility power (kW) + constraint penalties.

    The state is {'logits': (W, S), 'setpoint': ()}: x_ws = sigmoid(logit) is the relaxed
    placement of a replica of workload w on server s and the setpoint is
    T_min + (T_max - T_min) sigmoid(s). At x in {0,1} and a grid setpoint the energy equals
    the discrete model (see the package docstring). `decode` rounds x at 0.5, picks the
    warmest feasible grid setpoint and returns the configuration dict. The parsed
    `DatacenterModel` is the capsule's `model`.
    """
    m = parse_config(config)
    W, S = m.shape

    def energy_fn(state: RelaxedState) -> Float[Array, ""]:
        x, t = relaxed_placement(m, state)
        return facility_energy(m, x, t)

    def init(key: PRNGKeyArray, num_chains: int) -> RelaxedState:
        k1, k2 = jax.random.split(key)
        return {
            "logits": jax.random.normal(k1, (num_chains, W, S)),
            "setpoint": jax.random.normal(k2, (num_chains,)),
        }

    def decode(state: RelaxedState) -> dict[str, Any]:
        x, _ = relaxed_placement(m, state)
        return decode_placement(m, np.asarray(x) > 0.5)

    return Capsule(
        name="enterprise.datacenter",
        energy_fn=energy_fn,
        init=init,
        decode=decode,
        params={"config": dict(config)},
        description="datacenter facility power with uptime / latency / inlet penalties",
        model=m,
    )
