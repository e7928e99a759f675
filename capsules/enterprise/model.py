"""The parsed datacenter (`DatacenterModel`) and the CRAC efficiency curve (`cop`)."""

from __future__ import annotations

from typing import TypeVar

import equinox as eqx
import numpy as np
from jaxtyping import Array, Float

__all__ = ["DatacenterModel", "cop"]


_T = TypeVar("_T", float, Array, np.ndarray)


def cop(setpoint_c: _T) -> _T:
    """CRAC coefficient of performance at supply temperature T (degC), Moore et al. 2005:
    COP(T) = 0.0068 T^2 + 0.0008 T + 0.458 (dimensionless: heat removed / work)."""
    t = setpoint_c
    return 0.0068 * t * t + 0.0008 * t + 0.458


class DatacenterModel(eqx.Module):
    """A parsed, validated datacenter (see the package docstring); a PyTree whose arrays are
    leaves (float32) and whose names are static, so jitted code is reused across models of
    the same shape. Build it with `parse_config`."""

    server_names: tuple[str, ...] = eqx.field(static=True)
    workload_names: tuple[str, ...] = eqx.field(static=True)
    idle_kw: Float[Array, " S"]  # kW
    max_kw: Float[Array, " S"]  # kW
    service_rate: Float[Array, " S"]  # requests/s
    request_rate: Float[Array, " W"]  # requests/s
    availability: Float[Array, ""]
    recirculation: Float[Array, "S S"]  # degC / kW
    inlet_max_c: Float[Array, ""]
    setpoint_grid: Float[Array, " K"]  # degC, ascending
    uptime: Float[Array, ""]
    latency_max_ms: Float[Array, ""]
    penalty_kw: Float[Array, ""]

    @property
    def capacity(self) -> Float[Array, " S"]:
        """Largest request rate per server meeting the latency limit: mu - 1 / L_max."""
        return self.service_rate - 1000.0 / self.latency_max_ms

    @property
    def shape(self) -> tuple[int, int]:
        """(W, S): number of workloads and servers."""
        return len(self.workload_names), len(self.server_names)
