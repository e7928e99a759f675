"""NVP model, loss and training: shapes, masking, jit / vmap / grad, determinism, resume."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from idf_jax.nvp import checkpoint, conservation, data, loss, simulator
from idf_jax.nvp.model import NVPConfig, NVPModel, fit_normalizer, forecast, utilisation_entropy
from idf_jax.nvp.train import TrainConfig, train

W = 8


@pytest.fixture(scope="module")
def rack():
    rp = simulator.rack_params()
    obs = simulator.simulate(rp, jax.random.key(0), 900)
    x, names = simulator.rack_telemetry(obs)
    spec = simulator.rack_balance_spec(rp)
    return x, names, spec


@pytest.fixture(scope="module")
def tiny(rack):
    x, names, spec = rack
    cfg = NVPConfig(channels=names, window=W, d_model=8, num_heads=2, num_layers=1)
    phys = loss.make_physics(spec, names)
    norm = fit_normalizer([x], phys.balance)
    model = NVPModel(cfg, key=jax.random.key(1))
    xs, ms, ts = data.windows(x, W, min_history=2)
    return cfg, phys, norm, model, (xs[:32].astype(np.float32), ms[:32], ts[:32].astype(np.float32))


def test_entropy_known_values():
    assert float(utilisation_entropy(jnp.asarray([0.5]))) == pytest.approx(np.log(2), rel=1e-5)
    assert float(utilisation_entropy(jnp.asarray([1.0, 1.0, 1.0, 1.0]))) == pytest.approx(
        np.log(4), rel=1e-5)


def test_forecast_shapes_and_balance(tiny, rack):
    cfg, phys, norm, model, (xs, ms, ts) = tiny
    fc = jax.jit(lambda y, m: forecast(model, phys.balance, norm, phys.util_idx, y, m))(
        xs[0], ms[0])
    assert fc.mean.shape == (3,) and fc.var.shape == (3,)
    assert np.all(np.asarray(fc.var) > 0)
    rel = conservation.relative_residual(phys.balance, np.asarray(fc.mean)[None], xs[0][-1:])
    assert rel[0] < 1e-4


def test_padding_is_masked(tiny):
    cfg, phys, norm, model, (xs, ms, ts) = tiny
    f = jax.jit(lambda y, m: forecast(model, phys.balance, norm, phys.util_idx, y, m).mean)
    y = xs[10].copy()
    mask = np.arange(W) >= W - 3  # only the last 3 steps are real
    a = np.asarray(f(y, mask))
    y2 = y.copy()
    y2[: W - 3] = 1234.5  # garbage in the padded part
    np.testing.assert_allclose(np.asarray(f(y2, mask)), a, rtol=1e-6)
    assert not np.allclose(np.asarray(f(y2, np.ones(W, bool))), a)


def test_loss_jit_vmap_grad(tiny):
    cfg, phys, norm, model, (xs, ms, ts) = tiny
    terms = jax.jit(lambda m: loss.loss_terms(m, phys, norm, xs, ms, ts))(model)
    assert all(np.isfinite(float(v)) for v in terms.values())
    assert float(terms["entropy"]) == 0.0 and float(terms["diffusion"]) == 0.0  # no such physics
    grads = eqx.filter_jit(eqx.filter_grad(loss.loss_fn))(model, phys, norm, xs, ms, ts)
    leaves = jax.tree.leaves(eqx.filter(grads, eqx.is_inexact_array))
    assert all(np.all(np.isfinite(np.asarray(g))) for g in leaves)
    assert any(float(jnp.abs(g).max()) > 0 for g in leaves)
    # vmap of the per-window forecast over the batch equals a python loop
    fn = lambda y, m: forecast(model, phys.balance, norm, phys.util_idx, y, m).mean
    vm = jax.vmap(fn)(xs[:4], ms[:4])
    np.testing.assert_allclose(np.asarray(vm[2]), np.asarray(fn(xs[2], ms[2])), rtol=1e-5)


def test_entropy_and_helmholtz_terms_known_answers():
    names = ("cooling", "temp_0", "temp_1", "temp_2")
    spec = dict(dt=1.0, storage={}, heat_flows=[dict(flow="cooling", hot=["temp_0"],
                                                     cold_value=12.0, offset_k=273.15)],
                layout=["temp_0", "temp_1", "temp_2"], helmholtz_lambda=0.0)
    phys = loss.make_physics(spec, names)
    lap = loss.path_laplacian(3)
    np.testing.assert_allclose(lap, [[-1, 1, 0], [1, -2, 1], [0, 1, -1]])
    psi = np.array([1.0, 2.0, 3.0])
    # linear along a free-ended row: the interior is harmonic, the ends are not
    np.testing.assert_allclose(lap @ psi, [1.0, 0.0, -1.0])
    assert phys.heat_flows == ((0, (1,), 12.0, 273.15),)


def _rack_series():
    rp = simulator.rack_params()
    obs = simulator.simulate(rp, jax.random.key(3), 700)
    x, names = simulator.rack_telemetry(obs)
    return x, names, simulator.rack_balance_spec(rp)


def _leaves(m):
    return [np.asarray(a) for a in jax.tree.leaves(eqx.filter(m, eqx.is_inexact_array))]


def test_training_deterministic_resumable_checkpointed(tmp_path):
    x, names, spec = _rack_series()
    cfg = NVPConfig(channels=names, window=W, d_model=8, num_heads=2, num_layers=1)
    tc = TrainConfig(epochs=3, batch_size=32, patience=10, seed=4, max_epoch_windows=128)
    tr, va = x[:550], x[550:]
    p1 = str(tmp_path / "a.ckpt")
    r1 = train([tr], [va], cfg, spec, tc, checkpoint=p1, progress=False)
    # same seed, same result, bit for bit
    r2 = train([tr], [va], cfg, spec, tc, progress=False)
    assert all(np.array_equal(a, b) for a, b in zip(_leaves(r1.model), _leaves(r2.model)))
    assert [h["val"] for h in r1.history] == [h["val"] for h in r2.history]
    # stopped after one epoch, then resumed: identical to the uninterrupted run
    p3 = str(tmp_path / "b.ckpt")
    part = train([tr], [va], cfg, spec, tc, checkpoint=p3, progress=False, stop_after=1)
    assert len(part.history) == 1
    r3 = train([tr], [va], cfg, spec, tc, checkpoint=p3, resume=True, progress=False)
    assert [h["val"] for h in r3.history] == [h["val"] for h in r1.history]
    assert all(np.array_equal(a, b) for a, b in zip(_leaves(r3.model), _leaves(r1.model)))
    # the best checkpoint is self-contained and loads back exactly
    model, cfg2, norm, spec2, header = checkpoint.load(p1)
    assert cfg2 == cfg and spec2 == spec
    assert all(np.array_equal(a, b) for a, b in zip(_leaves(model), _leaves(r1.model)))
    assert header["extra"]["best_epoch"] == r1.best_epoch
    np.testing.assert_allclose(norm.mean, r1.normalizer.mean)


def test_bad_config():
    with pytest.raises(ValueError, match="divisible"):
        NVPConfig(channels=("a",), d_model=10, num_heads=3)
    with pytest.raises(ValueError, match="distinct"):
        NVPConfig(channels=("a", "a"))
    with pytest.raises(ValueError, match="min_history"):
        NVPConfig(channels=("a",), window=4, min_history=5)
