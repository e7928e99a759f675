"""The closed-loop baselines of experiments/_baselines.py: the tuned rule's decisions by hand,
and the foresight MPC on a small deterministic plant (no demand noise, no bursts)."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "experiments"))
import _baselines  # noqa: E402

from idf_jax.nvp import simulator as sim  # noqa: E402


@pytest.fixture(scope="module")
def params():
    return sim.make_params(start_hour=24.0 * 30, ar_sigma=0.0, burst_prob=0.0)


def test_rule_decisions_by_hand(params):
    a = _baselines.rule_policy(params, jnp.float32(0.5), jnp.float32(25.0), 2.0, 24.0, 32.0)
    # 0.5 of 40 servers per rack = 20, plus 2 spares; uniform shares; setpoint as tuned
    np.testing.assert_array_equal(np.asarray(a.servers_on), [22.0] * 4)
    np.testing.assert_allclose(np.asarray(a.weights), [0.25] * 4)
    assert float(a.setpoint) == 24.0 and not np.isfinite(float(a.power_cap))
    hot = _baselines.rule_policy(params, jnp.float32(0.99), jnp.float32(31.0), 3.0, 24.0, 32.0)
    np.testing.assert_array_equal(np.asarray(hot.servers_on), [40.0] * 4)  # capped at n
    assert float(hot.setpoint) == 21.0  # within 1.5 K of the limit: 3 K cooler


def test_mpc_oracle_respects_constraints_and_saves(params):
    key = jax.random.key(0)
    kw = dict(burn=16, steps=48)
    mpc = _baselines.run_mpc_oracle(params, key, 32.0, 0.999, horizon=4, **kw)
    assert int(mpc["violations"]) == 0 and float(mpc["max_temp"]) <= 32.0
    # all servers on at 18 °C (the fixed operating point, uniform shares, no spares needed)
    fixed = _baselines.run_rule(params, key, 40.0, 18.0, 32.0, 0.999, **kw)
    assert int(fixed["violations"]) == 0
    assert float(mpc["energy_kwh"]) < 0.9 * float(fixed["energy_kwh"])
