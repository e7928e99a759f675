"""NVP model, loss and training: shapes, masking, jit / vmap / grad, determinism, resume."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from idf_jax.nvp import checkpoint, conservation, data, loss, simulator
from idf_jax.nvp import model as nvp_model
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
        np.log(4), rel=1e-5
    )


def test_forecast_shapes_and_balance(tiny, rack):
    cfg, phys, norm, model, (xs, ms, ts) = tiny
    fc = jax.jit(lambda y, m: forecast(model, phys.balance, norm, phys.util_idx, y, m))(
        xs[0], ms[0]
    )
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
    vm = jax.jit(jax.vmap(fn))(xs[:4], ms[:4])
    np.testing.assert_allclose(np.asarray(vm[2]), np.asarray(jax.jit(fn)(xs[2], ms[2])), rtol=1e-5)


def test_entropy_and_helmholtz_terms_known_answers():
    names = ("cooling", "temp_0", "temp_1", "temp_2")
    spec = dict(
        dt=1.0,
        storage={},
        heat_flows=[dict(flow="cooling", hot=["temp_0"], cold_value=12.0, offset_k=273.15)],
        layout=["temp_0", "temp_1", "temp_2"],
        helmholtz_lambda=0.0,
    )
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


@pytest.mark.slow  # a training epoch and a checkpoint round trip: ~90 s on the loaded 2 cores
def test_one_epoch_trains_and_checkpoints(tmp_path):
    x, names, spec = _rack_series()
    cfg = NVPConfig(channels=names, window=W, d_model=8, num_heads=2, num_layers=1)
    tc = TrainConfig(epochs=1, batch_size=32, seed=1, max_epoch_windows=64)
    p = str(tmp_path / "one.ckpt")
    res = train([x[:550]], [x[550:]], cfg, spec, tc, checkpoint=p, progress=False)
    assert len(res.history) == 1 and np.isfinite(res.best_val)
    assert res.normalizer.var_scale.shape == (3,)  # calibrated on validation
    model, cfg2, norm, spec2, _ = checkpoint.load(p)
    assert cfg2 == cfg and spec2 == spec
    np.testing.assert_allclose(norm.var_scale, res.normalizer.var_scale)
    assert all(np.array_equal(a, b) for a, b in zip(_leaves(model), _leaves(res.model)))


@pytest.mark.slow
def test_training_deterministic_resumable_checkpointed(tmp_path):
    x, names, spec = _rack_series()
    cfg = NVPConfig(channels=names, window=W, d_model=8, num_heads=2, num_layers=1)
    tc = TrainConfig(epochs=3, batch_size=32, patience=10, seed=4, max_epoch_windows=128)
    tr, va = x[:550], x[550:]
    p1 = str(tmp_path / "a.ckpt")
    r1 = train([tr], [va], cfg, spec, tc, checkpoint=p1, progress=False)
    assert len(r1.history) == 3
    # a second run with the same seed, stopped after one epoch (as if killed) ...
    p3 = str(tmp_path / "b.ckpt")
    part = train([tr], [va], cfg, spec, tc, checkpoint=p3, progress=False, stop_after=1)
    # same seed: identical first epoch
    assert [(h["train"], h["val"]) for h in part.history] == [
        (h["train"], h["val"]) for h in r1.history[:1]
    ]
    # ... and resumed: identical, bit for bit, to the uninterrupted run
    r3 = train([tr], [va], cfg, spec, tc, checkpoint=p3, resume=True, progress=False)
    assert [(h["train"], h["val"]) for h in r3.history] == [
        (h["train"], h["val"]) for h in r1.history
    ]
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


def _with_heads(model, key):
    """The tiny model with random (non-zero) mean head and skip path, so every term counts."""
    k1, k2, k3 = jax.random.split(key, 3)
    rnd = lambda k, a: 0.1 * jax.random.normal(k, a.shape, a.dtype)
    return eqx.tree_at(
        lambda m: (m.head_mu.weight, m.head_mu.bias, m.skip.weight),
        model,
        (rnd(k1, model.head_mu.weight), rnd(k2, model.head_mu.bias), rnd(k3, model.skip.weight)),
    )


def test_residual_scale_heads_values_jit_vmap_grad(tiny):
    """Normalizer.res_std = s: mu = z_T + skip + s head_mu, log v = log v(s=1) + 2 log s."""
    cfg, phys, norm, model, (xs, ms, ts) = tiny
    model = _with_heads(model, jax.random.key(5))
    s = np.array([0.5, 1e-3, 2.0])
    norm_s = norm._replace(res_std=s)
    from idf_jax.nvp.model import embed_features

    z, feats = embed_features(
        jnp.asarray(xs[3]), jnp.asarray(ms[3]), norm, phys.balance, phys.util_idx
    )
    mu1, lv1 = model(feats, z, jnp.asarray(ms[3]))
    mus, lvs = jax.jit(lambda m, f, zz, mk: m(f, zz, mk, jnp.asarray(s, jnp.float32)))(
        model, feats, z, jnp.asarray(ms[3])
    )
    head = model.head_mu(model.ln_f(_last_hidden(model, feats, ms[3])))
    np.testing.assert_allclose(
        np.asarray(mus), np.asarray(mu1 - head + s * head), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(np.asarray(lvs), np.asarray(lv1) + 2 * np.log(s), rtol=1e-5)
    # vmap over windows equals a loop; the projected forecast still meets the balance
    fn = lambda y, m: forecast(model, phys.balance, norm_s, phys.util_idx, y, m).mean
    vm = jax.jit(jax.vmap(fn))(xs[:4], ms[:4])
    np.testing.assert_allclose(np.asarray(vm[1]), np.asarray(fn(xs[1], ms[1])), rtol=1e-5)
    rel = conservation.relative_residual(phys.balance, np.asarray(vm), xs[:4, -1])
    assert rel.max() < 1e-4
    # grad: finite, and the mean head's gradient flows through s (the tiny-s channel's row is
    # scaled down by s relative to the unit-scale L_pred of the same errors)
    grads = eqx.filter_jit(eqx.filter_grad(loss.loss_fn))(model, phys, norm_s, xs, ms, ts)
    leaves = jax.tree.leaves(eqx.filter(grads, eqx.is_inexact_array))
    assert all(np.all(np.isfinite(np.asarray(g))) for g in leaves)
    assert float(jnp.abs(grads.head_mu.weight).max()) > 0
    # frozen skip path in physical units is untouched by s: zero heads give the same mean
    zero = eqx.tree_at(
        lambda m: (m.head_mu.weight, m.head_mu.bias),
        model,
        (jnp.zeros_like(model.head_mu.weight), jnp.zeros_like(model.head_mu.bias)),
    )
    a = forecast(zero, phys.balance, norm_s, phys.util_idx, xs[2], ms[2]).mean_raw
    b = forecast(zero, phys.balance, norm, phys.util_idx, xs[2], ms[2]).mean_raw
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)


def _last_hidden(model, feats, mask):
    from idf_jax.nvp.model import sinusoidal_encoding

    L = feats.shape[0]
    x = jax.vmap(model.embed)(feats) + jnp.asarray(sinusoidal_encoding(L, model.embed.out_features))
    i = jnp.arange(L)
    mask = jnp.asarray(mask)
    am = (i[None, :] <= i[:, None]) & (mask[None, :] | (i[None, :] == i[:, None]))
    for blk in model.blocks:
        x = blk(x, am)
    return x[-1]


def test_residual_scale_loss_units(tiny):
    """L_pred with res_std = s equals L_pred with the channel std multiplied by s."""
    cfg, phys, norm, model, (xs, ms, ts) = tiny
    model = _with_heads(model, jax.random.key(6))
    s = np.array([0.5, 0.25, 2.0])
    got = loss.loss_terms(model, phys, norm._replace(res_std=s), xs, ms, ts)["pred"]
    fc = jax.vmap(
        lambda y, m: forecast(model, phys.balance, norm._replace(res_std=s), phys.util_idx, y, m)
    )(xs, ms)
    unit = norm.std * s
    v = np.maximum(np.asarray(fc.var, np.float64) / unit**2, 1e-6)
    e2 = ((ts - np.asarray(fc.mean, np.float64)) / unit) ** 2
    want = np.mean(0.5 * (np.log(v) + e2 / v)) + np.mean(e2)
    assert float(got) == pytest.approx(want, rel=1e-4)


def test_linear_residual_std_known_answer():
    """Channel 0 is an exact linear function of the last value of channel 1 (residual 0 ->
    the floor), channel 1 an AR(1) with unit innovations (residual std ~ its noise)."""
    from idf_jax.nvp.model import Normalizer
    from idf_jax.nvp.train import linear_residual_std, ridge_init

    rng = np.random.default_rng(0)
    n, w = 3000, 4
    b = np.zeros(n)
    for t in range(1, n):
        b[t] = 0.8 * b[t - 1] + rng.normal()
    a = np.concatenate([[0.0], 2.0 * b[:-1] + 1.0])
    x = np.stack([a, b], axis=1)
    cfg = NVPConfig(channels=("a", "b"), window=w, d_model=8, num_heads=2, num_layers=1)
    norm = fit_normalizer([x[:2000]], conservation.make_balance(None, cfg.channels))
    tr = data.windows(x[:2000], w, min_history=w)
    va = data.windows(x[2000:], w, min_history=w)
    model = ridge_init(NVPModel(cfg, key=jax.random.key(0)), norm, tr, va)
    s = linear_residual_std(model, norm, tr, rel_floor=1e-3)
    assert s[0] == pytest.approx(1e-3 * norm.diff_std[0], rel=1e-6)  # exact channel: the floor
    assert s[1] == pytest.approx(1.0 / norm.std[1], rel=0.05)  # unit innovations, normalised
    assert isinstance(norm._replace(res_std=s), Normalizer)
    # JSON round trip of the normaliser keeps res_std (checkpoint header)
    back = Normalizer.from_json(norm._replace(res_std=s).to_json())
    np.testing.assert_allclose(back.res_std, s)
    assert Normalizer.from_json(norm.to_json()).res_std is None


def test_lin_head_zero_init_values_jit_vmap_grad_checkpoint(tiny, tmp_path):
    """lin_head > 0 adds s * MLP(linear forecast) to the mean: zero at initialisation (the same
    model as without it), differentiable, vmappable, and saved/loaded with the checkpoint."""
    cfg, phys, norm, model, (xs, ms, ts) = tiny
    import dataclasses

    cfg_l = dataclasses.replace(cfg, lin_head=16)
    m_l = NVPModel(cfg_l, key=jax.random.key(1))
    assert model.lin_mlp is None and m_l.lin_mlp is not None
    norm_s = norm._replace(res_std=np.array([0.5, 0.25, 2.0]))
    fn = lambda m, y, k: forecast(m, phys.balance, norm_s, phys.util_idx, y, k).mean
    np.testing.assert_allclose(
        np.asarray(fn(m_l, xs[4], ms[4])), np.asarray(fn(model, xs[4], ms[4])), rtol=1e-6
    )
    # a non-zero last layer: mean moves by exactly s * std * MLP(lin) before projection
    last = m_l.lin_mlp.layers[-1]
    m_l = eqx.tree_at(lambda m: m.lin_mlp.layers[-1].bias, m_l, jnp.asarray([0.1, -0.2, 0.3]))
    from idf_jax.nvp.model import embed_features

    y, k = jnp.asarray(xs[4]), jnp.asarray(ms[4])
    z, f = embed_features(y, k, norm_s, phys.balance, phys.util_idx)
    mu0, _ = model(f, z, k, jnp.asarray(norm_s.res_std, jnp.float32))
    mu1, _ = m_l(f, z, k, jnp.asarray(norm_s.res_std, jnp.float32))
    np.testing.assert_allclose(
        np.asarray(mu1 - mu0), norm_s.res_std * [0.1, -0.2, 0.3], rtol=1e-4, atol=1e-6
    )
    vm = jax.jit(jax.vmap(lambda y, k: fn(m_l, y, k)))(xs[:4], ms[:4])
    np.testing.assert_allclose(np.asarray(vm[3]), np.asarray(fn(m_l, xs[3], ms[3])), rtol=1e-5)
    g = eqx.filter_jit(eqx.filter_grad(loss.loss_fn))(m_l, phys, norm_s, xs, ms, ts)
    assert np.all(np.isfinite(np.asarray(g.lin_mlp.layers[0].weight)))
    assert float(jnp.abs(g.lin_mlp.layers[-1].weight).max()) > 0
    m_g = eqx.tree_at(
        lambda m: m.lin_mlp.layers[-1].weight,
        m_l,
        0.1 * jax.random.normal(jax.random.key(2), last.weight.shape),
    )
    g = eqx.filter_jit(eqx.filter_grad(loss.loss_fn))(m_g, phys, norm_s, xs, ms, ts)
    assert float(jnp.abs(g.lin_mlp.layers[0].weight).max()) > 0  # flows through the MLP
    assert last.weight.shape == (3, 16)
    p = str(tmp_path / "lin.ckpt")
    checkpoint.save(p, m_l, cfg_l, norm_s, None)
    back, cfg2, norm2, _, _ = checkpoint.load(p)
    assert cfg2.lin_head == 16
    np.testing.assert_allclose(norm2.res_std, norm_s.res_std)
    assert all(np.array_equal(a, b) for a, b in zip(_leaves(back), _leaves(m_l)))
    # an older checkpoint (no lin_head in its config JSON) loads as lin_head = 0
    assert (
        NVPConfig.from_json({k: v for k, v in cfg.to_json().items() if k != "lin_head"}).lin_head
        == 0
    )


def test_short_history_edge_padded_for_linear_path(tiny):
    """A history shorter than the window: the linear path sees the oldest real step repeated."""
    cfg, phys, norm, model, (xs, ms, ts) = tiny
    model = _with_heads(model, jax.random.key(7))
    from idf_jax.nvp.model import embed_features

    y = jnp.asarray(xs[20])
    short = jnp.asarray(np.arange(W) >= W - 3)
    z, f = embed_features(y, short, norm, phys.balance, phys.util_idx)
    zero_h = eqx.tree_at(
        lambda m: (m.head_mu.weight, m.head_mu.bias),
        model,
        (jnp.zeros_like(model.head_mu.weight), jnp.zeros_like(model.head_mu.bias)),
    )
    mu, _ = zero_h(f, z, short)
    z_full = np.asarray(z).copy()
    z_full[: W - 3] = z_full[W - 3]
    want = (
        z_full[-1]
        + np.asarray(model.skip.weight) @ z_full.reshape(-1)
        + np.asarray(model.skip.bias)
    )
    np.testing.assert_allclose(np.asarray(mu), want, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # two 600-step fits: ~65 s on the loaded 2 cores
def test_fit_lin_head_learns_nonlinear_channel():
    """Channel a = b_{t-1}^2: the linear path cannot fit it, the correction MLP (stage 2) can;
    steps=0 or a useless fit leaves the model unchanged."""
    from idf_jax.nvp.train import fit_lin_head, linear_residual_std, ridge_init

    rng = np.random.default_rng(1)
    n, w = 3000, 4
    b = np.zeros(n)
    for t in range(1, n):
        b[t] = 0.8 * b[t - 1] + 0.6 * rng.normal()
    a = np.concatenate([[0.0], b[:-1] ** 2])
    x = np.stack([a, b], axis=1)
    cfg = NVPConfig(
        channels=("a", "b"), window=w, d_model=8, num_heads=2, num_layers=1, lin_head=16
    )
    norm = fit_normalizer([x[:2000]], conservation.make_balance(None, cfg.channels))
    tr = data.windows(x[:2000], w, min_history=w)
    va = data.windows(x[2000:], w, min_history=w)
    model = ridge_init(NVPModel(cfg, key=jax.random.key(0)), norm, tr, va)
    norm = norm._replace(res_std=linear_residual_std(model, norm, tr))
    assert fit_lin_head(model, norm, tr, va, steps=0) is model
    fitted = fit_lin_head(model, norm, tr, va, steps=600, seed=0)
    again = fit_lin_head(model, norm, tr, va, steps=600, seed=0)
    assert all(np.array_equal(p, q) for p, q in zip(_leaves(fitted), _leaves(again)))  # seeded
    f = lambda m: jax.vmap(
        lambda y, k: forecast(m, conservation.make_balance(None, cfg.channels), norm, (), y, k).mean
    )(va[0].astype(np.float32), va[1])
    err_lin = np.abs(np.asarray(f(model))[:, 0] - va[2][:, 0]).mean()
    err_fit = np.abs(np.asarray(f(fitted))[:, 0] - va[2][:, 0]).mean()
    assert err_fit < 0.5 * err_lin


def test_prefix_cache_extend_equals_full_forward(tiny):
    """Causality: caching the first `keep` positions and computing only the rest gives the
    full forward's outputs, with padding, under jit and vmap, and the same gradient."""
    keep = W - 3
    cfg, phys, norm, _, (xs, ms, _) = tiny
    model = NVPModel(
        NVPConfig(channels=cfg.channels, window=W, d_model=8, num_heads=2, num_layers=2),
        key=jax.random.key(7),
    )
    model = jax.tree.map(lambda x: x + 0.1 if eqx.is_inexact_array(x) else x, model)  # heads != 0
    feats_of = lambda y, m: nvp_model.embed_features(y, m, norm, phys.balance, phys.util_idx)

    def full(y, m):
        z, f = feats_of(y, m)
        return model(f, z, m)

    def cached(y, m):
        z, f = feats_of(y, m)
        return model.extend(model.prefix_cache(f, m, keep), f, z, m)

    masks = ms[:8].copy()
    masks[0, : W - 3] = False  # a padded window
    a = jax.jit(jax.vmap(full))(xs[:8], masks)
    b = jax.jit(jax.vmap(cached))(xs[:8], masks)
    for u, v in zip(a, b):
        np.testing.assert_allclose(np.asarray(v), np.asarray(u), rtol=1e-5, atol=1e-5)
    g = lambda fn: jax.jit(jax.grad(lambda y: fn(y, masks[1])[0].sum()))(xs[1])  # noqa: E731
    np.testing.assert_allclose(np.asarray(g(cached)), np.asarray(g(full)), rtol=1e-4, atol=1e-5)
