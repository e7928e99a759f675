"""`idf.sample_tuned(..., preset=)`: sampler presets written by `idf evolve sampler`."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import idf_jax as idf
from idf_jax._checks import ArgumentError
from tests.helpers import assert_within

ev = idf.evolve
SD = jnp.array([0.5, 1.0, 2.0])


def energy(x):
    return 0.5 * jnp.sum((x / SD) ** 2)


X0 = jax.random.normal(jax.random.key(0), (16, 3))


def test_mala_preset_round_trip_uses_the_preset_settings(tmp_path):
    path = ev.save_preset(tmp_path, "mala-gauss", {"step_size": 0.3}, target="mala")
    tr = idf.sample_tuned(energy, jax.random.key(1), X0, 400, preset=path, num_warmup=200)
    # exactly MALA at the preset's step size, the warm-up a discarded burn-in
    ref = idf.sample(idf.mala(energy, 0.3), jax.random.key(1), X0, 600, burn_in=200)
    np.testing.assert_array_equal(np.asarray(tr.positions), np.asarray(ref.positions))
    np.testing.assert_allclose(np.asarray(tr.stats["step_size"]), 0.3, rtol=1e-6)
    assert float(tr.stats["tuning_seconds"][0]) == 0.0
    assert float(tr.stats["tuning_grad_evals"][0]) == pytest.approx(200.0)
    assert float(tr.stats["sampling_grad_evals"][0]) == pytest.approx(400.0)
    z = np.asarray(tr.positions) / np.asarray(SD)[None, None]
    assert_within(z**2, np.ones(3), z=6.0, what="E (x / sd)^2")
    # method naming the preset's sampler is the same call
    tr2 = idf.sample_tuned(energy, jax.random.key(1), X0, 400, "mala", preset=path, num_warmup=200)
    np.testing.assert_array_equal(np.asarray(tr2.positions), np.asarray(tr.positions))


def test_hmc_preset_and_explicit_steps_win(tmp_path):
    path = ev.save_preset(
        tmp_path, "hmc-gauss", {"step_size": 0.2, "num_integration_steps": 4}, target="hmc"
    )
    tr = idf.sample_tuned(energy, jax.random.key(2), X0, 50, preset=str(path), num_warmup=20)
    assert float(tr.stats["L"][0]) == 4.0
    assert float(tr.stats["sampling_grad_evals"][0]) == pytest.approx(50 * 4)
    tr = idf.sample_tuned(
        energy, jax.random.key(2), X0, 50, preset=path, num_warmup=20, num_integration_steps=3
    )
    assert float(tr.stats["L"][0]) == 3.0


def test_bad_presets_raise_argument_errors_listing_the_available_ones(tmp_path):
    with pytest.raises(ArgumentError) as e:
        idf.sample_tuned(energy, jax.random.key(0), X0, 10, preset="no-such-preset")
    assert e.value.argument == "preset"
    msg = str(e.value)
    assert "no-such-preset" in msg and "packaged sampler presets" in msg
    for name in ev.available_presets():
        assert name in msg
    # a sample_equilibrium preset is not a sampler preset
    with pytest.raises(ArgumentError, match="not a sampler") as e:
        idf.sample_tuned(energy, jax.random.key(0), X0, 10, preset="lj13-anneal")
    assert e.value.argument == "preset"
    path = ev.save_preset(tmp_path, "m", {"step_size": 0.1}, target="mala")
    with pytest.raises(ArgumentError) as e:
        idf.sample_tuned(energy, jax.random.key(0), X0, 10, "hmc", preset=path)
    assert e.value.argument == "method"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "b", "target": "mala", "config": {"step_size": -1.0}}))
    with pytest.raises(ArgumentError, match="step_size"):
        idf.sample_tuned(energy, jax.random.key(0), X0, 10, preset=bad)
    bad.write_text(
        json.dumps({"name": "b", "target": "mala", "config": {"step_size": 0.1, "L": 3}})
    )
    with pytest.raises(ArgumentError, match="L"):
        idf.sample_tuned(energy, jax.random.key(0), X0, 10, preset=bad)


@pytest.mark.slow
def test_cli_sampler_preset_round_trip(tmp_path):
    """What `idf evolve sampler` writes, `sample_tuned(preset=...)` loads."""
    from capsules import make
    from idf_jax.runtime.cli import main

    rc = main(
        [
            "evolve", "sampler", "--capsule", "plasma.thomson", "--param", "n=4",
            "--steps", "40", "--generations", "1", "--population", "2", "--chains", "4",
            "--budget-s", "60", "--name", "mala-t4", "--out", str(tmp_path),
        ]
    )  # fmt: skip
    assert rc == 0
    path = tmp_path / "mala-t4.json"
    cfg = ev.load_preset(path)
    cap = make("plasma.thomson", n=4)
    x0 = cap.init(jax.random.key(0), 4)
    tr = idf.sample_tuned(cap.energy_fn, jax.random.key(1), x0, 20, preset=path, num_warmup=10)
    np.testing.assert_allclose(np.asarray(tr.stats["step_size"]), cfg["step_size"], rtol=1e-6)
    assert np.all(np.isfinite(np.asarray(tr.energies)))
