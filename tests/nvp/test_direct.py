"""Direct multi-horizon head: every horizon from one pass of a trained NVP, fitted in closed
form on training origins, validated on others."""

import os

import jax
import numpy as np
import pytest

from idf_jax.nvp import checkpoint, simulator
from idf_jax.nvp.direct import fit_direct_head, window_features
from idf_jax.nvp.loss import make_physics

V1 = os.path.join(os.path.dirname(__file__), "data", "rack_fixed_setpoint_v1.ckpt")


def test_direct_head_beats_persistence_on_average_at_every_horizon():
    model, cfg, norm, spec, _ = checkpoint.load(V1)
    phys = make_physics(spec, cfg.channels)
    obs = simulator.simulate(simulator.rack_params(), jax.random.key(4), 3 * 288)
    x, _ = simulator.rack_telemetry(obs)
    hs = (1, 4, 12)
    o_tr, o_va, o_te = np.arange(31, 500), np.arange(500, 650), np.arange(650, len(x) - 12)
    phi = {k: window_features(model, norm, phys, x, o) for k, o in
           (("tr", o_tr), ("va", o_va), ("te", o_te))}  # fmt: skip
    assert phi["tr"].shape == (len(o_tr), cfg.window * 3 + cfg.d_model)
    head = fit_direct_head(phi["tr"], o_tr, phi["va"], o_va, x, norm.std, hs, steps_per_day=288)
    mu, sd = head.predict(phi["te"], x, o_te, norm.std)
    assert mu.shape == sd.shape == (len(o_te), 3, 3) and np.all(sd > 0)
    for k, h in enumerate(hs):
        err = np.abs(mu[:, k] - x[o_te + h]).mean(0)
        naive = np.abs(x[o_te] - x[o_te + h]).mean(0)
        assert np.mean(err / naive) < 1.0, (h, err, naive)  # 469 training origins only
    with pytest.raises(ValueError, match="window - 1"):
        window_features(model, norm, phys, x, np.array([3]))
    with pytest.raises(ValueError, match="largest horizon"):
        fit_direct_head(phi["tr"], o_tr, phi["va"], o_va + 400, x, norm.std, hs)
