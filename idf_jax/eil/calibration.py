"""What EIL learns online about each source: demand noise, power scale, temperature margin.

- demand noise ``sigma`` per interval [share of servers] for the chance constraints:
  ``max(configured floor, std of one-step demand changes, 1.1 q / z)`` over the last week of
  readings (672 differences), q the largest one-step rise seen and z = Phi^-1(uptime): the
  Gaussian model is widened until it covers the worst observed rise (plus 10 %) at the
  requested quantile (bursty load is far heavier-tailed than a Gaussian);
- the plant model's power scale: measured / modelled facility power, an exponential moving
  average (rate `calibration_rate`) of the ratio clipped to [0.5, 2];
- the NVP path's empirical temperature margin [K]: 1.1 x the largest one-step
  under-prediction of the hottest rack over the last week of decisions (0 until 8 are known).
"""

from __future__ import annotations

import collections
import statistics
from collections.abc import Iterable

import equinox as eqx
import numpy as np

from .plant import PlantAction, PlantModel, PlantState, predict
from .store import EnergyReading

__all__ = ["DEMAND_MEMORY", "SourceCalibration", "modelled_power", "z_of"]

DEMAND_MEMORY = 673
"""One week of 15-min readings (+1 for differences)."""

_predict = eqx.filter_jit(predict)


def z_of(p: float) -> float:
    """Phi^-1(p) on the host (no device round trip on the decision path)."""
    return statistics.NormalDist().inv_cdf(min(max(float(p), 1e-12), 1.0 - 1e-12))


def modelled_power(model: PlantModel, state: PlantState, action: PlantAction) -> float:
    """Facility power [kW] the plant model predicts for `action` at `state`."""
    return float(_predict(model, state, action)["power"])


class SourceCalibration:
    """Online estimates for one source (module doc). `demands`: earlier offered loads
    (share of all servers), oldest first (e.g. from a reopened database)."""

    def __init__(self, demand_floor: float, rate: float, demands: Iterable[float] = ()):
        self.demand_floor = float(demand_floor)
        self.rate = float(rate)
        self.demands: collections.deque[float] = collections.deque(demands, maxlen=DEMAND_MEMORY)
        self.ratio: float | None = None
        self._temp_resid: collections.deque[float] = collections.deque(maxlen=DEMAND_MEMORY)
        self._last_pred: tuple[float, float] | None = None

    # ------------------------------------------------------------------ demand noise
    def demand_sigma(self, uptime: float) -> float:
        """Demand noise per interval used by the chance constraints [share of servers]."""
        d = np.asarray(self.demands)
        if d.size < 9:
            return self.demand_floor
        diff = np.diff(d)
        z = z_of(uptime)
        return max(self.demand_floor, float(np.std(diff)), 1.1 * float(diff.max()) / max(z, 1e-6))

    # ------------------------------------------------------------------ power scale
    def power_ratio(self) -> float:
        """Measured / modelled facility power (1 until a reading has been seen)."""
        return 1.0 if self.ratio is None else self.ratio

    def observe_power(self, measured_kw: float, modelled_kw: float) -> None:
        """Update the power ratio with one reading (ignored unless both are > 0)."""
        if modelled_kw > 0 and measured_kw > 0:
            r = float(np.clip(measured_kw / modelled_kw, 0.5, 2.0))
            a = self.rate
            self.ratio = r if self.ratio is None else (1 - a) * self.ratio + a * r

    # ------------------------------------------------------------------ temperature margin
    def predicted(self, timestamp: float, temp_max: float) -> None:
        """Remember the hottest rack forecast for the interval after reading `timestamp`."""
        self._last_pred = (timestamp, temp_max)

    def temp_margin(self, latest: EnergyReading | None, num_racks: int) -> float:
        """The margin [K] (module doc), first updated from `latest` when it is the reading
        that followed the previous forecast."""
        last, self._last_pred = self._last_pred, None
        if last is not None and latest is not None and latest.timestamp > last[0]:
            temps = [latest.metrics.get(f"temp_{r}") for r in range(num_racks)]
            known = [t for t in temps if t is not None]
            if len(known) == len(temps):
                self._temp_resid.append(max(known) - last[1])
        if len(self._temp_resid) < 8:
            return 0.0
        return max(0.0, 1.1 * float(max(self._temp_resid)))
