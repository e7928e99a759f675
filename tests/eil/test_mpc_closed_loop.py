"""The closed loop's MPC calibration and state-oracle bound (experiments/eil_closed_loop.py)."""

import os
import sys

import jax
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "experiments"))
import eil_closed_loop as loop  # noqa: E402  # pyright: ignore[reportMissingImports]  (sys.path)

from idf_jax.nvp import simulator as sim  # noqa: E402


def test_training_days_never_touch_the_test_window():
    for start, days in [(7, 7), (100, 7), (280, 7), (360, 3)]:
        train = loop.training_days(start, days)
        assert len(train) == 6
        assert all(d + 7 < start - 14 or d > start + days + 14 for d in train)
    assert loop.training_days(100, 7) == [3, 48, 138, 183, 228, 273]


def test_demand_series_is_the_loop_demand():
    """The calibration's demand equals what the simulator serves under any action."""
    params = sim.make_params(start_hour=24.0 * 30)
    key = jax.random.key(3)
    d = loop.demand_series(params, key, 20)
    state = sim.init_state(params)
    other = sim.default_action(params)._replace(setpoint=np.float32(25.0))
    for k, want in zip(jax.random.split(key, 20), d, strict=True):
        state, obs = sim.step(params, state, other, k)
        assert float(obs["demand"]) == pytest.approx(want, abs=1e-6)


def test_state_oracle_without_noise_serves_everything():
    """No AR noise, no bursts: the state oracle's forecast is exact and it keeps uptime
    with a small headroom, using fewer servers than all of them."""
    params = sim.make_params(start_hour=24.0 * 30, ar_sigma=0.0, burst_prob=0.0)
    out = loop.run_state_oracle(params, jax.random.key(0), 0.02, 24.0, burn=8, steps=48)
    assert int(out["violations"]) == 0
    full = loop.run_state_oracle(params, jax.random.key(0), 1.0, 24.0, burn=8, steps=48)
    assert float(out["energy_kwh"]) < float(full["energy_kwh"])
