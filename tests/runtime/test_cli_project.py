"""Results land in the project folder of `--config` (the one `idf init` made) unless an
explicit path is given: sample, equilibrium, train (checkpoint), predict and backtest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
import yaml
from _runtime_helpers import NAME

from idf_jax.runtime.cli import main
from idf_jax.runtime.cli._common import project_path


def run(capsys, *args):
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def project(capsys, tmp_path, monkeypatch):
    """An `idf init` project using the test Gaussian; the working directory elsewhere."""
    root = tmp_path / "proj"
    rc, _, err = run(capsys, "init", str(root), "--domain", "molecular")
    assert rc == 0, err
    cfg = yaml.safe_load((root / "config.yaml").read_text())
    cfg["capsule"] = {"name": NAME, "params": {"dim": 2}}
    cfg["sampler"] = {"kind": "ula", "step_size": 0.1}
    cfg["sample"] = dict(cfg["sample"], chains=2, steps=10, burn_in=0, thin=1)
    cfg["equilibrium"] = dict(cfg["equilibrium"], chains=2, steps=20)
    (root / "config.yaml").write_text(yaml.safe_dump(cfg))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return root


def test_project_path_rules(tmp_path):
    cfg = tmp_path / "p" / "config.yaml"
    assert project_path("x/y", cfg, {"out": "z"}, "out", "d") == Path("x/y")  # as given
    assert project_path(None, cfg, {"out": "z"}, "out", "d") == tmp_path / "p" / "z"
    assert project_path(None, cfg, {}, "out", "results/s") == tmp_path / "p" / "results" / "s"
    assert project_path(None, cfg, {"out": "/abs/r"}, "out", "d") == Path("/abs/r")
    assert project_path(None, None, {}, "out", "results/s") == Path("results/s")  # no project
    with pytest.raises(typer.BadParameter, match="out must be a path"):
        project_path(None, cfg, {"out": 3}, "out", "d")


def test_init_config_names_project_relative_outputs(project):
    cfg = yaml.safe_load((project / "config.yaml").read_text())
    assert cfg["predict"]["out"] == "results/predict"
    assert cfg["backtest"]["out"] == "results/backtest"
    assert cfg["nvp"]["checkpoint"] == "models/nvp.ckpt"


@pytest.mark.slow  # compiles a sampler and an annealing run: ~20-90 s on a busy machine
def test_sample_and_equilibrium_write_into_the_project(capsys, project):
    conf = str(project / "config.yaml")
    rc, _, err = run(capsys, "sample", "--config", conf, "--no-progress", "--no-plots")
    assert rc == 0, err
    s = json.loads((project / "results" / "sample" / "summary.json").read_text())
    assert s["chains"] == 2 and not Path("results").exists()  # not in the working directory
    rc, _, err = run(
        capsys, "sample", "--config", conf, "--no-progress", "--no-plots", "--out", "mine"
    )
    assert rc == 0, err
    assert Path("mine/summary.json").is_file()  # an explicit --out: as given
    rc, _, err = run(capsys, "equilibrium", "--config", conf, "--no-plots")
    assert rc == 0, err
    assert (project / "results" / "equilibrium" / "summary.json").is_file()


def test_train_checkpoint_defaults_into_the_project(capsys, project, monkeypatch):
    import idf_jax.runtime.cli.train as train_cli

    seen = {}

    def fake(nvp_cfg, data):
        seen["checkpoint"] = nvp_cfg["checkpoint"]
        return "trained"

    monkeypatch.setattr(train_cli, "train_from_config", fake)
    conf = str(project / "config.yaml")
    rc, _, err = run(capsys, "train", "--config", conf, "--data", str(project / "data"))
    assert rc == 0, err
    assert seen["checkpoint"] == str(project / "models" / "nvp.ckpt")
    rc, _, err = run(
        capsys, "train", "--config", conf, "--data", str(project / "data"), "--out", "m.ckpt"
    )
    assert rc == 0 and seen["checkpoint"] == "m.ckpt"


@pytest.mark.slow  # the simulator, the packaged model and two backtests: ~30-110 s when busy
def test_predict_and_backtest_default_into_the_project(capsys, project):
    import jax

    from idf_jax.nvp import simulator
    from idf_jax.nvp.predictor import DEFAULT_CHECKPOINT

    obs = simulator.simulate(simulator.rack_params(), jax.random.key(3), 60)
    x, names = simulator.rack_telemetry(obs)
    rows = "\n".join(f"{300 * i}," + ",".join(f"{v:.6g}" for v in r) for i, r in enumerate(x))
    csv = project / "data" / "rack.csv"
    csv.write_text("timestamp," + ",".join(names) + "\n" + rows + "\n")
    cfg = yaml.safe_load((project / "config.yaml").read_text())
    cfg["nvp"]["checkpoint"] = DEFAULT_CHECKPOINT  # an absolute path stays as it is
    (project / "config.yaml").write_text(yaml.safe_dump(cfg))
    conf = str(project / "config.yaml")
    rc, _, err = run(capsys, "predict", "--config", conf, "--data", str(csv))
    assert rc == 0, err
    assert (project / "results" / "predict" / "predictions.csv").is_file()
    rc, _, err = run(capsys, "backtest", "--config", conf, "--data", str(csv), "--horizons", "1,4")
    assert rc == 0, err
    assert (project / "results" / "backtest" / "metrics.json").is_file()
    assert not Path("results").exists()
    rc, _, err = run(capsys, "predict", "--data", str(csv))  # neither checkpoint nor config
    assert rc == 2 and "--checkpoint" in err
