"""The `idf` command, run in-process through `idf_jax.runtime.cli.main`."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import yaml
from _runtime_helpers import NAME

from idf_jax.runtime.cli import main
from idf_jax.runtime.cli.monitor import _histogram_quantile, render_dashboard


def run(capsys, *args):
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_help_everywhere(capsys):
    for cmd in (
        [],
        ["sample"],
        ["equilibrium"],
        ["train"],
        ["serve"],
        ["monitor"],
        ["deploy"],
        ["capsules"],
        ["init"],
    ):
        rc, out, _ = run(capsys, *cmd, "--help")
        assert rc == 0 and "Usage:" in out, cmd
    rc, out, _ = run(capsys, "sample", "--help")
    assert "Example: idf sample --capsule" in " ".join(out.split())


@pytest.mark.parametrize(
    "args, needle",
    [
        (["sample", "--chains", "-3"], "--chains"),
        (["sample", "--bogus"], "--bogus"),
        (["sample", "--capsule", "no.such"], "unknown capsule"),
        (["sample", "--capsule", NAME, "--param", "dim"], "KEY=VALUE"),
        (["sample", "--capsule", NAME, "--param", "dim=-1"], "dim must be"),
        (["sample", "--capsule", NAME, "--sampler", "gibbs"], "unknown sampler"),
        (["sample", "--capsule", NAME, "--steps", "10", "--thin", "3"], "thin"),
        (["sample", "--config", "/nonexistent/config.yaml"], "does not exist"),
        (["deploy", "--namespace", "Bad_NS", "--dry-run"], "DNS-1123"),
        (["deploy"], "--cluster"),
        (["monitor", "--dashboard", "nope"], "unknown dashboard"),
        (["init", "proj", "--domain", "astrology"], "unknown domain"),
        (["nonsense"], "No such command"),
    ],
)
def test_bad_options_one_line_nonzero(capsys, args, needle):
    rc, out, err = run(capsys, *args)
    assert rc != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("idf: error:"), err
    assert needle in lines[0]


def test_sample_writes_npz_netcdf_plots(capsys, tmp_path):
    out = tmp_path / "res"
    rc, stdout, err = run(
        capsys,
        "sample",
        "--capsule",
        NAME,
        "--param",
        "dim=3",
        "--chains",
        "4",
        "--steps",
        "60",
        "--burn-in",
        "20",
        "--thin",
        "2",
        "--step-size",
        "0.5",
        "--seed",
        "1",
        "--out",
        str(out),
        "--no-progress",
    )
    assert rc == 0, err
    assert "summary" in stdout and "energy" in stdout
    with np.load(out / "samples.npz") as z:
        x, e = z["position_x"], z["energies"]
        assert x.shape == (4, 20, 3) and e.shape == (4, 20)
        np.testing.assert_allclose(e, 0.5 * (x**2).sum(-1), rtol=1e-5, atol=1e-5)
        assert z["stats_acceptance_rate"].shape == (4,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import arviz as az
    idata = az.from_netcdf(out / "samples.nc")
    np.testing.assert_allclose(idata.posterior["x"].values, x)
    for png in ("energy_trace.png", "energy_hist.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    s = json.loads((out / "summary.json").read_text())
    assert s["chains"] == 4 and s["draws"] == 20 and s["params"] == {"dim": 3}
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_init_scaffolds_commented_config(capsys, tmp_path):
    root = tmp_path / "my-project"
    rc, out, err = run(capsys, "init", str(root), "--domain", "molecular")
    assert rc == 0, err
    text = (root / "config.yaml").read_text()
    assert text.count("#") > 10
    cfg = yaml.safe_load(text)
    assert set(cfg) >= {"capsule", "sampler", "sample", "equilibrium", "nvp", "service", "deploy"}
    assert cfg["capsule"]["name"].startswith("molecular.")
    assert (root / "data").is_dir() and (root / "results").is_dir()
    rc, _, err = run(capsys, "init", str(root), "--domain", "molecular")
    assert rc == 2 and "not empty" in err


def test_sample_from_config_file(capsys, tmp_path):
    cfg = {
        "capsule": {"name": NAME, "params": {"dim": 2}},
        "sampler": {"kind": "ula", "step_size": 0.1},
        "sample": {"chains": 3, "steps": 20, "out": str(tmp_path / "r")},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    rc, _, err = run(
        capsys, "sample", "--config", str(tmp_path / "c.yaml"), "--no-progress", "--no-plots"
    )
    assert rc == 0, err
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert s["sampler"] == "ula" and s["chains"] == 3 and s["draws"] == 20


def test_capsules_lists_json(capsys):
    rc, out, _ = run(capsys, "capsules", "--json")
    assert rc == 0
    assert json.loads(out)[NAME]["parameters"] == {"dim": "2", "sigma": "1.0"}


def test_histogram_quantile_exact_on_uniform_buckets():
    # 100 observations spread uniformly over (0, 1]: cumulative counts at 0.1 steps.
    buckets = [(round(0.1 * k, 1), 10.0 * k) for k in range(1, 11)] + [(float("inf"), 100.0)]
    assert _histogram_quantile(buckets, 0.5) == pytest.approx(0.5)
    assert _histogram_quantile(buckets, 0.99) == pytest.approx(0.99)
    assert np.isnan(_histogram_quantile([], 0.5))


def test_dashboards_render_from_metrics():
    m = {
        "idf_samples_drawn_total": [({"kind": "sample"}, 100.0)],
        "idf_http_requests_total": [
            ({"route": "/v1/sample", "method": "POST", "status": "200"}, 4.0),
            ({"route": "/v1/sample", "method": "POST", "status": "422"}, 1.0),
        ],
        "idf_http_request_duration_seconds_bucket": [
            ({"route": "/v1/sample", "le": "0.1"}, 2.0),
            ({"route": "/v1/sample", "le": "1.0"}, 5.0),
            ({"route": "/v1/sample", "le": "+Inf"}, 5.0),
        ],
    }
    prev = {"idf_samples_drawn_total": [({"kind": "sample"}, 40.0)]}
    from rich.console import Console

    con = Console(width=150, record=True)
    con.print(render_dashboard("energy-metrics", m, prev, 2.0))
    text = con.export_text()
    assert "samples drawn" in text and "100" in text and "30.0" in text  # (100 - 40) / 2 s
    con.print(render_dashboard("http", m, None, 0.0))
    text = con.export_text()
    assert "/v1/sample" in text and "1" in text


@pytest.mark.slow
def test_equilibrium_command_writes_results(capsys, tmp_path):
    import idf_jax.thermo.anneal  # noqa: F401  (a broken import must fail, not skip)

    out = tmp_path / "eq"
    rc, stdout, err = run(
        capsys,
        "equilibrium",
        "--capsule",
        NAME,
        "--param",
        "dim=3",
        "--chains",
        "4",
        "--steps",
        "100",
        "--out",
        str(out),
    )
    assert rc == 0, err
    with np.load(out / "equilibrium.npz") as z:
        assert z["position_x"].shape == (4, 3) and z["energy"].shape == (4,)
        assert z["energy"].min() < 1e-6  # the Gaussian's minimum E = 0 at x = 0
    s = json.loads((out / "summary.json").read_text())
    assert s["best_energy"] < 1e-6
    assert (out / "equilibrium.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_train_command_writes_a_loadable_checkpoint(capsys, tmp_path):
    import idf_jax.nvp as nvp

    data = tmp_path / "data"
    data.mkdir()
    t = np.arange(200)
    rng = np.random.default_rng(0)
    for k in range(2):
        cpu = 0.5 + 0.3 * np.sin(2 * np.pi * (t + 17 * k) / 24) + 0.02 * rng.standard_normal(200)
        power = 300.0 + 600.0 * cpu
        temp = 65.0 + 10.0 * np.convolve(cpu, np.ones(4) / 4, mode="same")
        rows = "\n".join(
            f"{900 * i},{a:.5f},{b:.3f},{c:.3f}"
            for i, (a, b, c) in enumerate(zip(cpu, power, temp))
        )
        (data / f"s{k}.csv").write_text("timestamp,cpu,power,temp\n" + rows + "\n")
    ckpt = tmp_path / "models" / "nvp.ckpt"
    cfg = {
        "nvp": {
            "channels": ["cpu", "power", "temp"],
            "window": 8,
            "d_model": 16,
            "num_heads": 2,
            "num_layers": 1,
            "epochs": 2,
            "batch_size": 16,
            "checkpoint": str(ckpt),
            "units": {"cpu": "fraction", "power": "kW", "temp": "degC"},
        }
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    rc, stdout, err = run(
        capsys, "train", "--config", str(tmp_path / "config.yaml"), "--data", str(data)
    )
    assert rc == 0, err
    assert "best validation loss" in stdout
    p = nvp.NVPPredictor(model_path=str(ckpt))
    pred = p.predict_next(telemetry_history=[{"cpu": 0.5, "power": 600.0, "temp": 70.0}] * 4)
    assert np.isfinite(pred["power"])
    assert p.series is not None and p.series.interval_s == 900.0
    assert p.series.units["power"] == "kW"
    # shuffled rows are refused, naming the file and the row
    lines = (data / "s0.csv").read_text().splitlines()
    (data / "s0.csv").write_text("\n".join([lines[0], lines[2], lines[1], *lines[3:]]) + "\n")
    rc, _, err = run(
        capsys, "train", "--config", str(tmp_path / "config.yaml"), "--data", str(data)
    )
    assert rc == 1 and "out of order at row 1" in err
    cfg["nvp"]["bogus"] = 1
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    rc, _, err = run(
        capsys, "train", "--config", str(tmp_path / "config.yaml"), "--data", str(data)
    )
    assert rc == 1 and "bogus" in err


def test_predict_and_backtest_commands(capsys, tmp_path):
    import jax

    from idf_jax.nvp import simulator

    obs = simulator.simulate(simulator.rack_params(), jax.random.key(3), 120)
    x, names = simulator.rack_telemetry(obs)
    rows = "\n".join(f"{300 * i}," + ",".join(f"{v:.6g}" for v in r) for i, r in enumerate(x))
    csv = tmp_path / "rack.csv"
    csv.write_text("timestamp," + ",".join(names) + "\n" + rows + "\n")
    from idf_jax.nvp.predictor import DEFAULT_CHECKPOINT

    out = tmp_path / "pred"
    rc, stdout, err = run(
        capsys, "predict", "--checkpoint", DEFAULT_CHECKPOINT, "--data", str(csv), "--out", str(out)
    )
    assert rc == 0, err
    assert "next step after row 119" in stdout
    lines = (out / "predictions.csv").read_text().splitlines()
    assert (
        lines[0].startswith("row,cpu_mean,cpu_lo90,cpu_hi90") and len(lines) == 1 + 118
    )  # targets 2..119
    assert (out / "forecast.png").read_bytes()[:4] == b"\x89PNG"
    bt = tmp_path / "bt"
    rc, stdout, err = run(
        capsys,
        "backtest",
        "--checkpoint",
        DEFAULT_CHECKPOINT,
        "--data",
        str(csv),
        "--horizons",
        "1,4",
        "--out",
        str(bt),
    )
    assert rc == 0, err
    m = json.loads((bt / "metrics.json").read_text())
    assert set(m["metrics"]) == {"1", "4"} and "skill" in m["metrics"]["4"]["power"]
    assert (bt / "backtest.png").read_bytes()[:4] == b"\x89PNG"
    # rows 15 minutes apart for a 5-minute model: refused, naming both intervals
    slow = "\n".join(f"{900 * i}," + ",".join(f"{v:.6g}" for v in r) for i, r in enumerate(x))
    csv.write_text("timestamp," + ",".join(names) + "\n" + slow + "\n")
    rc, _, err = run(capsys, "predict", "--checkpoint", DEFAULT_CHECKPOINT, "--data", str(csv))
    assert rc == 1 and "900 s" in err and "300 s" in err
    rc, _, err = run(
        capsys,
        "backtest",
        "--checkpoint",
        DEFAULT_CHECKPOINT,
        "--data",
        str(csv),
        "--horizons",
        "0",
    )
    assert rc == 2 and "horizons" in err


def test_sample_with_a_sampler_preset_equals_its_settings(capsys, tmp_path):
    from idf_jax._presets import save_preset

    path = save_preset(tmp_path / "tuned.json", "tuned", {"step_size": 0.5}, target="mala")
    common = ["sample", "--capsule", NAME, "--param", "dim=2", "--chains", "3", "--steps", "30"]
    common += ["--seed", "4", "--no-progress", "--no-plots"]
    rc, _, err = run(capsys, *common, "--preset", str(path), "--out", str(tmp_path / "a"))
    assert rc == 0, err
    rc, _, err = run(capsys, *common, "--step-size", "0.5", "--out", str(tmp_path / "b"))
    assert rc == 0, err
    with np.load(tmp_path / "a" / "samples.npz") as a, np.load(tmp_path / "b" / "samples.npz") as b:
        np.testing.assert_array_equal(a["position_x"], b["position_x"])
    rc, _, err = run(capsys, *common, "--preset", str(path), "--sampler", "hmc")
    assert rc == 2 and "--preset" in err and "is for mala" in err
    rc, _, err = run(capsys, *common, "--preset", "no-such-preset")
    assert rc == 2 and "no preset 'no-such-preset'" in err and err.count("\n") == 1


def test_sample_with_a_tuner_preset_runs_sample_tuned(capsys, tmp_path):
    import jax

    import idf_jax as idf
    from idf_jax._presets import save_preset
    from idf_jax.runtime.service.jobs import build_capsule

    config = {"method": "mams", "target_acceptance": 0.8, "l_factor": 0.3, "warmup_fraction": 0.1}
    path = save_preset(tmp_path / "tuner.json", "tuner", config, target="sample_tuned")
    common = ["sample", "--capsule", NAME, "--param", "dim=3", "--chains", "4", "--steps", "1500"]
    common += ["--seed", "2", "--no-progress", "--no-plots"]
    rc, _, err = run(capsys, *common, "--preset", str(path), "--out", str(tmp_path / "a"))
    assert rc == 0, err
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["sampler"] == "mams" and summary["draws"] == 1350  # 10 % warm-up: 150
    assert summary["tuned"]["step_size"] > 0 and summary["tuned"]["tuning_grad_evals"] > 0
    # the very call `idf.sample_tuned(preset=...)` on the job's chains and key
    cap = build_capsule(NAME, {"dim": 3})
    k_init, k_run = jax.random.split(jax.random.key(2))
    want = idf.sample_tuned(
        cap.energy_fn, k_run, cap.init(k_init, 4), 1350, num_warmup=150, preset=path
    )
    with np.load(tmp_path / "a" / "samples.npz") as a:
        np.testing.assert_allclose(a["position_x"], np.asarray(want.positions), rtol=1e-6)
        # N(0, I_3) at T = 1: <E> = 3 / 2
        assert abs(float(np.mean(a["energies"])) - 1.5) < 0.3, float(np.mean(a["energies"]))


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--sampler", "hmc"], "tuner preset (sampler mams)"),
        (["--step-size", "0.1"], "--step-size would not be used"),
        (["--steps", "80"], "--steps: sampler 'mams' tunes for 100 warm-up steps"),
    ],
)
def test_sample_tuner_preset_conflicts_are_one_line_errors(capsys, tmp_path, extra, needle):
    from idf_jax._presets import save_preset

    path = save_preset(tmp_path / "t.json", "t", {"method": "mams"}, target="sample_tuned")
    args = ["sample", "--capsule", NAME, "--chains", "2", "--steps", "300", "--no-progress"]
    rc, _, err = run(capsys, *args, "--no-plots", "--preset", str(path), *extra)
    assert rc == 2 and needle in err and err.count("\n") == 1, err


def test_sample_bad_tuner_preset_names_the_setting(capsys, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"target": "sample_tuned", "config": {"l_factor": -1.0}}))
    rc, _, err = run(capsys, "sample", "--capsule", NAME, "--preset", str(bad), "--no-progress")
    assert rc == 2 and "--preset" in err and "l_factor -1.0" in err, err
