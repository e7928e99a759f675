"""`idf.sample_tuned(..., preset=)` with a tuner preset (target "sample_tuned"): the MAMS
tuner's target acceptance, trajectory-length factor and warm-up fraction."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import idf_jax as idf
from idf_jax._checks import ArgumentError
from tests.helpers import assert_within

ev = idf.evolve
SD = jnp.array([0.5, 1.0, 2.0, 4.0])


def energy(x):
    return 0.5 * jnp.sum((x / SD) ** 2)


X0 = jax.random.normal(jax.random.key(0), (32, 4))
# 10-d, unit variances, correlation 0.95: a diagonal mass cannot remove it, so the tuned
# step stays below MAMS's cap L / 1.1 (on an axis-aligned Gaussian it sits at the cap)
COV10 = 0.05 * jnp.eye(10) + 0.95
PREC10 = jnp.linalg.inv(COV10)


def energy10(x):
    return 0.5 * x @ PREC10 @ x


X10 = jax.random.normal(jax.random.key(1), (32, 10))


def _tuner(tmp_path, name, **config):
    return ev.save_preset(tmp_path, name, {"method": "mams", **config}, target="sample_tuned")


def test_default_settings_preset_is_the_default_tuning(tmp_path):
    path = _tuner(tmp_path, "dflt", target_acceptance=0.9, l_factor=0.5, warmup_fraction=0.05)
    tr = idf.sample_tuned(energy, jax.random.key(3), X0, 400, preset=path)
    ref = idf.sample_tuned(energy, jax.random.key(3), X0, 400, method="mams")
    np.testing.assert_array_equal(np.asarray(tr.positions), np.asarray(ref.positions))
    np.testing.assert_array_equal(np.asarray(tr.stats["L"]), np.asarray(ref.stats["L"]))
    # method "mams" with the preset is the same call
    tr2 = idf.sample_tuned(energy, jax.random.key(3), X0, 400, "mams", preset=path)
    np.testing.assert_array_equal(np.asarray(tr2.positions), np.asarray(tr.positions))


def test_tuner_settings_reach_the_tuner_and_sampling_stays_correct(tmp_path):
    low = _tuner(tmp_path, "low", target_acceptance=0.6, l_factor=0.5)
    tr = idf.sample_tuned(energy10, jax.random.key(4), X10, 1500, preset=low)
    ref = idf.sample_tuned(energy10, jax.random.key(4), X10, 1500, method="mams")
    eps, eps_ref = float(tr.stats["step_size"][0]), float(ref.stats["step_size"][0])
    assert eps > 1.2 * eps_ref, (eps, eps_ref)  # acceptance 0.6 < 0.9: a longer step
    acc = float(np.mean(np.asarray(tr.stats["acceptance_rate"])))
    acc_ref = float(np.mean(np.asarray(ref.stats["acceptance_rate"])))
    assert acc < acc_ref - 0.1, (acc, acc_ref)
    # warm-up 20 % of 1500 = 300 steps (default 5 %, at least 100: 100): more tuning work
    long = _tuner(tmp_path, "long", warmup_fraction=0.2)
    tr_long = idf.sample_tuned(energy10, jax.random.key(4), X10, 1500, preset=long)
    assert float(tr_long.stats["tuning_grad_evals"][0]) > 1.5 * float(
        ref.stats["tuning_grad_evals"][0]
    )
    assert_within(np.asarray(tr.positions) ** 2, np.ones(10), z=6.0, what="E x^2")
    # an explicit num_warmup wins over the preset's fraction
    a = idf.sample_tuned(energy, jax.random.key(5), X0, 50, preset=low, num_warmup=120)
    b = idf.sample_tuned(
        energy,
        jax.random.key(5),
        X0,
        50,
        preset=_tuner(tmp_path, "low2", target_acceptance=0.6, l_factor=0.5),
        num_warmup=120,
    )
    np.testing.assert_array_equal(np.asarray(a.positions), np.asarray(b.positions))


def test_bad_tuner_presets_raise_argument_errors(tmp_path):
    path = _tuner(tmp_path, "t", target_acceptance=0.8)
    with pytest.raises(ArgumentError) as e:
        idf.sample_tuned(energy, jax.random.key(0), X0, 10, "hmc", preset=path)
    assert e.value.argument == "method"
    bad = tmp_path / "bad.json"
    for config in (
        {"target_acceptance": 1.5},
        {"l_factor": -1.0},
        {"warmup_fraction": 0.0},
        {"target_acceptance": "high"},
        {"method": "hmc", "target_acceptance": 0.8},
        {"step_size": 0.1},
    ):
        bad.write_text(json.dumps({"name": "b", "target": "sample_tuned", "config": config}))
        with pytest.raises(ArgumentError) as e:
            idf.sample_tuned(energy, jax.random.key(0), X0, 10, preset=bad)
        assert e.value.argument == "preset", config
