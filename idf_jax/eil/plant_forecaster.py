"""The plant model as a `Forecaster` of the EIL decision procedure (`idf_jax.eil.decision`).

A candidate is held for ``horizon`` intervals at the exogenous forecast (demand and outside
temperature fixed over the horizon, `idf_jax.eil.plant.rollout`). Temperatures and peak power
are also checked in the high-demand scenario ``d + z sigma`` (z = Phi^-1(uptime)): chance
constraints at the same quantile as the uptime target. Facility power is scaled by the
online calibration ratio (measured / modelled facility power, `idf_jax.eil.calibration`).

    E_H = ratio sum_h E_h + C sum_r (T_r,H - T_r,0) / COP_now
    S_H = sum_h S_gen,h

with ``COP_now = P_IT,1 / (P_cool,1 - P_fan)`` (clipped to [1, 20]): the heat left stored in
the racks must be removed later at about today's coefficient of performance.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ..nvp.physics import KELVIN
from .decision import Summary
from .plant import PlantAction, PlantModel, PlantState, rollout

__all__ = ["PlantForecaster", "CALIBRATED_KEYS"]

CALIBRATED_KEYS = ("energy", "entropy", "power", "power_it", "cooling_power")
"""Next-interval forecasts scaled by the calibration ratio."""


class PlantForecaster(eqx.Module):
    """`model` at `state` (the exogenous forecast), facility power scaled by `ratio`,
    high-demand scenario at `z` demand standard deviations, `horizon` intervals."""

    model: PlantModel
    state: PlantState
    ratio: Array | np.floating | float
    z: Array | np.floating | float
    horizon: int = eqx.field(static=True)

    def prepare(self) -> None:
        """Nothing is shared between the plant model's candidates."""
        return None

    def outside_kelvin(self) -> Array:
        return jnp.asarray(self.state.t_out) + KELVIN

    def evaluate(self, prepared: None, action: PlantAction) -> Summary:
        """Horizon totals and constraint margins of `action` (module doc)."""
        del prepared
        state, m = self.state, self.model
        demands = jnp.stack(
            [jnp.asarray(state.demand, jnp.float32), state.demand + self.z * m.demand_sigma]
        )
        both = jax.vmap(lambda d: rollout(m, state._replace(demand=d), action, self.horizon))(
            demands
        )
        outs = jax.tree.map(lambda x: x[0], both)
        outs_hi = jax.tree.map(lambda x: x[1], both)
        c_now = jnp.clip(
            outs["power_it"][0] / jnp.maximum(outs["cooling_power"][0] - m.fan_kw, 1e-6), 1.0, 20.0
        )
        stored = m.heat_capacity_kj_per_k * jnp.sum(outs["temps"][-1] - state.temps)
        ratio = self.ratio
        first = {k: v[0] for k, v in outs.items() if k != "temps"}
        for k in CALIBRATED_KEYS:
            first[k] = first[k] * ratio
        return Summary(
            e_h=ratio * jnp.sum(outs["energy"]) + stored / c_now,
            s_h=jnp.sum(outs["entropy_gen"]),
            uptime=jnp.min(outs["uptime"]),
            temp_max=jnp.maximum(jnp.max(outs["temp_max"]), jnp.max(outs_hi["temp_max"])),
            power_max=ratio * jnp.maximum(jnp.max(outs["power"]), jnp.max(outs_hi["power"])),
            unserved=jnp.max(outs["unserved"]),
            first=first,
        )
