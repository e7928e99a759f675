"""Source presets: the datacenter row of `idf_jax.nvp.simulator` as an EIL telemetry source.

`row_source()` is the source the packaged action-conditioned NVP
(`idf_jax/nvp/checkpoints/eil_row.ckpt`) was trained for: 4 racks x 40 servers, 15-minute
intervals, the simulator's server power curve (0.10 / 0.25 kW idle / peak). Its planning
fallback (`plant`) is the simulator's documented physics (`simulator_plant`). With
``EILOptimizer(planner="auto")`` (the default), a source with this layout is planned with
the NVP.
"""

from __future__ import annotations

import dataclasses
import types

from .plant import PlantModel
from .store import SourceConfig

__all__ = ["simulator_plant", "row_source", "ROW_SOURCE"]

ROW_SOURCE = "row-1"


def _row_preset():
    """The row preset's physical parameters (the `simulator.DatacenterParams` defaults)
    without loading its weather file."""
    from ..nvp import simulator as sim

    return types.SimpleNamespace(
        **{
            f.name: f.default
            for f in dataclasses.fields(sim.DatacenterParams)
            if f.default is not dataclasses.MISSING
        }
    )


def simulator_plant(params=None, demand_sigma: float = 0.04) -> PlantModel:
    """The plant model with the parameters of a `simulator.DatacenterParams` (default: the
    row preset, `simulator.make_params()`)."""
    p = _row_preset() if params is None else params
    return PlantModel(
        num_racks=p.num_racks, servers_per_rack=float(p.servers_per_rack), dt=float(p.dt),
        p_idle_kw=float(p.p_idle_kw), p_peak_kw=float(p.p_peak_kw),
        heat_capacity_kj_per_k=float(p.heat_capacity_kj_per_k), ua_kw_per_k=float(p.ua_kw_per_k),
        row_conductance_kw_per_k=float(p.row_conductance_kw_per_k),
        envelope_kw_per_k=float(p.envelope_kw_per_k),
        cooling_capacity_kw=float(p.cooling_capacity_kw),
        cop_carnot_fraction=float(p.cop_carnot_fraction), cop_max=float(p.cop_max),
        cop_free=float(p.cop_free), fan_kw=float(p.fan_kw), demand_sigma=float(demand_sigma),
    )  # fmt: skip


def row_source(
    name: str = ROW_SOURCE,
    params=None,
    *,
    demand_sigma: float = 0.04,
    setpoint: float = 18.0,
    temp_max: float = 32.0,
) -> SourceConfig:
    """`SourceConfig` of the simulator's row (`params`, default the row preset): servers,
    power curve and interval from the simulator, rack temperature limit `temp_max` °C,
    default supply setpoint `setpoint` °C, demand-noise floor `demand_sigma` (share of all
    servers per interval)."""
    p = _row_preset() if params is None else params
    return SourceConfig(
        name, num_servers=int(p.num_racks * p.servers_per_rack), idle_kw=float(p.p_idle_kw),
        peak_kw=float(p.p_peak_kw), interval_s=float(p.dt), temp_max=float(temp_max),
        setpoint=float(setpoint), demand_sigma=float(demand_sigma),
        plant=simulator_plant(p, demand_sigma),
    )  # fmt: skip
