"""Datacenter simulator: documented physics, exact energy balance, actions, weather driver."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from idf_jax.nvp import conservation, simulator
from idf_jax.nvp.weather import load_tmy3


@pytest.fixture(scope="module")
def params():
    return simulator.make_params()


def test_tmy3_is_the_shipped_hourly_year():
    w = load_tmy3()
    assert w.temp_air.shape == (8760,) and w.ghi.shape == (8760,)
    assert -30 < w.temp_air.min() < 0 < 30 < w.temp_air.max() < 45  # Greensboro NC, deg C
    assert w.ghi.min() >= 0 and 800 < w.ghi.max() < 1200  # W/m^2
    with pytest.raises(ValueError, match="no TMY3 file"):
        load_tmy3("nope.csv")


def test_outside_temperature_follows_tmy3(params):
    w = load_tmy3()
    # interval k covers hours [k dt, (k+1) dt); with dt = 900 s the 4th interval's midpoint is
    # hour 0.875 -> interpolation between hours 0 and 1
    t = float(simulator.outside_temp(params, jnp.asarray(3)))
    assert t == pytest.approx(0.125 * w.temp_air[0] + 0.875 * w.temp_air[1], rel=1e-5)


def test_server_power_curve(params):
    # Fan et al. 2007: P(u) = P_idle + (P_peak - P_idle) (2u - u^1.4)
    u = jnp.asarray([0.0, 0.5, 1.0])
    p = np.asarray(simulator.server_power(params, u))
    np.testing.assert_allclose(p, [0.10, 0.10 + 0.15 * (1.0 - 0.5**1.4), 0.25], rtol=1e-5)


def test_cop_curve(params):
    c_hot = float(simulator.cop(params, jnp.asarray(35.0), jnp.asarray(18.0)))
    c_mild = float(simulator.cop(params, jnp.asarray(20.0), jnp.asarray(18.0)))
    c_free = float(simulator.cop(params, jnp.asarray(5.0), jnp.asarray(18.0)))
    # Carnot fraction 0.45 between 12 C chilled water and 40 C condenser
    assert c_hot == pytest.approx(0.45 * 285.15 / 28.0, rel=1e-5)
    assert c_hot < c_mild <= params.cop_max and c_free == params.cop_free


def test_simulated_row_satisfies_exact_balance(params):
    obs = simulator.simulate(params, jax.random.key(0), 500)
    x, names = simulator.row_telemetry(obs)
    assert x.shape == (500, 9) and np.all(np.isfinite(x))
    bal = conservation.make_balance(simulator.row_balance_spec(params), names)
    rel = conservation.relative_residual(bal, x[1:], x[:-1])
    assert rel.max() < 1e-4  # float32 simulation; the discrete balance is exact by construction
    assert np.all((x[:, 0] >= 0) & (x[:, 0] <= 1))
    assert np.all(obs["pue"] > 1.0)


def test_rack_preset_matches_blueprint_scale():
    rp = simulator.rack_params()
    obs = simulator.simulate(rp, jax.random.key(1), 400)
    x, names = simulator.rack_telemetry(obs)
    assert names == ("cpu", "power", "temp")
    assert 400 <= x[:, 1].min() and x[:, 1].max() <= 1000  # W
    assert 64 < x[:, 2].mean() < 80  # deg F
    bal = conservation.make_balance(simulator.rack_balance_spec(rp), names)
    assert conservation.relative_residual(bal, x[1:], x[:-1]).max() < 1e-4


def _run(params, action, n=96, key=3):
    return simulator.simulate(params, jax.random.key(key), n, action=action, burn_in=0)


def test_actions_act(params):
    base = simulator.default_action(params)
    o0 = _run(params, base)
    capped = _run(params, base._replace(power_cap=jnp.asarray(25.0)))
    assert capped["power"].max() <= 25.0 + 1e-4
    assert capped["unserved"].mean() > o0["unserved"].mean()
    half = _run(params, base._replace(servers_on=base.servers_on * 0.5))
    assert half["power"].mean() < o0["power"].mean()  # fewer idle servers
    warm = _run(params, base._replace(setpoint=jnp.asarray(24.0)))
    assert warm["temps"][-1].mean() > o0["temps"][-1].mean() + 3.0
    moved = _run(params, base._replace(weights=jnp.asarray([0.0, 0.0, 0.5, 0.5])))
    assert moved["rack_power"][:, 0].mean() < o0["rack_power"][:, 0].mean()
    assert moved["temps"][-1, 0] < o0["temps"][-1, 0]


def test_step_is_pure_and_jittable(params):
    st = simulator.init_state(params)
    act = simulator.default_action(params)
    f = jax.jit(simulator.step)
    s1, o1 = f(params, st, act, jax.random.key(5))
    s2, o2 = simulator.step(params, st, act, jax.random.key(5))
    np.testing.assert_allclose(np.asarray(s1.temps), np.asarray(s2.temps), rtol=1e-6)
    assert int(s1.step) == 1
    # vmap over a batch of candidate setpoints (what a planner does)
    sp = jnp.asarray([16.0, 18.0, 22.0])
    acts = jax.vmap(lambda s: act._replace(setpoint=s))(sp)
    _, ob = jax.vmap(lambda a: simulator.step(params, st, a, jax.random.key(5)))(acts)
    assert ob["cooling"].shape == (3,) and float(ob["cooling"][0]) > float(ob["cooling"][2])


def test_bad_parameters():
    with pytest.raises(ValueError, match="too large"):
        simulator.make_params(dt=4000.0)
    with pytest.raises(ValueError, match="base_weights"):
        simulator.make_params(base_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="num_steps"):
        simulator.simulate(simulator.make_params(), jax.random.key(0), 0)
