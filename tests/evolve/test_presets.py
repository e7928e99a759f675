"""Presets: save / load round trip, apply_preset, packaged presets, errors."""

import json

import pytest

import idf_jax as idf
from idf_jax._checks import ArgumentError

ev = idf.evolve


def _target(x, *, num_steps, target_acceptance=0.57, t_end_ratio=1e-2):
    return x, num_steps, target_acceptance, t_end_ratio


def test_round_trip_and_provenance(tmp_path):
    cfg = {"num_steps": 500, "target_acceptance": 0.41, "t_end_ratio": 0.003}
    path = ev.save_preset(
        tmp_path,
        "lj-small",
        cfg,
        provenance={
            "command": "idf evolve equilibrium ...",
            "seeds": [0, 1],
            "budget_s": 60,
            "fitness": 3.2,
        },
    )
    assert path.name == "lj-small.json"
    assert ev.load_preset(path) == cfg
    rec = json.loads(path.read_text())
    assert rec["target"] == "sample_equilibrium" and rec["provenance"]["seeds"] == [0, 1]
    assert "date" in rec["provenance"]
    # the caller's keywords win over the preset's
    assert ev.apply_preset(_target, path, "x", num_steps=10) == ("x", 10, 0.41, 0.003)


def test_unknown_keyword_and_missing_preset_are_clear_errors(tmp_path):
    path = ev.save_preset(tmp_path / "p.json", "p", {"num_steps": 5, "method": "population"})
    with pytest.raises(ArgumentError, match="method") as e:
        ev.apply_preset(_target, path, "x")
    assert e.value.argument == "preset"
    with pytest.raises(ArgumentError) as e:
        ev.load_preset("no-such-preset")
    assert e.value.argument == "preset"
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ArgumentError):
        ev.load_preset(bad)


def test_packaged_presets_load_and_fit_sample_equilibrium():
    import inspect

    names = ev.available_presets()
    assert names, "the package ships at least one tuned preset"
    accepted = set(inspect.signature(idf.sample_equilibrium).parameters)
    for name in names:
        rec = ev.presets.read_preset(name)
        assert rec["provenance"]["command"] and "fitness" in rec["provenance"]
        if rec["target"] == "sample_equilibrium":
            assert set(rec["config"]) <= accepted, name


def _hooked(x, *, num_steps=1000, target_acceptance=0.57, relax=True, preset=None):
    """A function with the one-line preset hook the lead adds to sample_equilibrium."""
    if preset is not None:
        return _hooked(x, **ev.presets.merge_preset(_hooked, preset, locals()))
    return x, num_steps, target_acceptance, relax


def test_the_one_line_preset_hook(tmp_path):
    path = ev.save_preset(tmp_path, "h", {"num_steps": 250, "target_acceptance": 0.37})
    assert _hooked("x", preset=path) == ("x", 250, 0.37, True)
    # what the caller sets explicitly (not the default) wins over the preset
    assert _hooked("x", preset=path, num_steps=50, relax=False) == ("x", 50, 0.37, False)
    bad = ev.save_preset(tmp_path, "b", {"no_such_option": 1})
    with pytest.raises(ArgumentError):
        _hooked("x", preset=bad)


def test_sample_equilibrium_preset_hook(tmp_path):
    import json

    import jax
    import jax.numpy as jnp
    import numpy as np
    import pytest

    import idf_jax as idf
    from idf_jax._checks import ArgumentError

    energy = lambda x: jnp.sum((x - 1.0) ** 2)
    x0 = jnp.zeros((4, 2))
    key = jax.random.key(0)
    path = tmp_path / "p.json"
    cfg = {"method": "anneal", "t_end_ratio": 0.05, "relax_steps": 20}
    path.write_text(json.dumps({"name": "p", "target": "sample_equilibrium", "config": cfg}))
    a = idf.sample_equilibrium(energy, key, x0, num_steps=30, preset=str(path))
    b = idf.sample_equilibrium(energy, key, x0, num_steps=30, **cfg)
    np.testing.assert_array_equal(np.asarray(a.best_energy), np.asarray(b.best_energy))
    # an explicit argument wins over the preset
    c = idf.sample_equilibrium(energy, key, x0, num_steps=30, preset=str(path), t_end_ratio=0.5)
    d = idf.sample_equilibrium(energy, key, x0, num_steps=30, **{**cfg, "t_end_ratio": 0.5})
    np.testing.assert_array_equal(np.asarray(c.best_energy), np.asarray(d.best_energy))
    path.write_text(
        json.dumps({"name": "p", "target": "sample_equilibrium", "config": {"bogus": 1}})
    )
    with pytest.raises(ArgumentError, match="bogus"):
        idf.sample_equilibrium(energy, key, x0, num_steps=30, preset=str(path))
    assert "lj13-anneal" in idf.evolve.available_presets()
