"""`idf predict` / `idf backtest` with the checkpoint's control input (the packaged rack model:
the cooling setpoint, degF) read from the CSV, given by --setpoint, or assumed and reported;
bad setpoint columns refused in one line naming the column. Run in-process through
`idf_jax.runtime.cli.main`, as tests/runtime/test_cli.py."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from idf_jax.nvp import simulator
from idf_jax.nvp.predictor import DEFAULT_CHECKPOINT
from idf_jax.runtime.cli import main

ROWS = 60
SP_F = 21.0 * 9.0 / 5.0 + 32.0  # 69.8 degF
DEFAULT_F = 18.0 * 9.0 / 5.0 + 32.0  # 64.4 degF, the checkpoint's default


def run(capsys, *args):
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def _write(path, names, x):
    rows = "\n".join(f"{300 * i}," + ",".join(f"{v:.6g}" for v in r) for i, r in enumerate(x))
    path.write_text("timestamp," + ",".join(names) + "\n" + rows + "\n")
    return str(path)


@pytest.fixture(scope="module")
def csvs(tmp_path_factory):
    """A rack run at 21 °C: the CSV without and with its setpoint column."""
    d = tmp_path_factory.mktemp("setpoint")
    obs = simulator.simulate_schedule(
        simulator.rack_params(), jax.random.key(5), np.full(ROWS, 21.0)
    )
    x, names = simulator.rack_telemetry(obs)
    sp = simulator.rack_controls(obs)
    assert np.allclose(sp, SP_F)
    return dict(
        d=d,
        x=x,
        names=names,
        bare=_write(d / "bare.csv", names, x),
        col=_write(d / "col.csv", (*names, "setpoint"), np.concatenate([x, sp], 1)),
    )


def _predict(capsys, data, out, *extra):
    rc, stdout, err = run(
        capsys, "predict", "-m", DEFAULT_CHECKPOINT, "--data", data, "--out", str(out), *extra
    )
    assert rc == 0, err
    return stdout, json.loads((out / "forecast.json").read_text())


def _rolling(out):
    lines = (out / "predictions.csv").read_text().splitlines()
    head = lines[0].split(",")
    vals = np.array([[float(v) for v in ln.split(",")] for ln in lines[1:]])
    return vals[:, head.index("temp_mean")]


def test_setpoint_column_changes_the_forecast_and_the_default_is_reported(capsys, csvs):
    d = csvs["d"]
    stdout, rep = _predict(capsys, csvs["bare"], d / "bare")
    assert "warning: assumed setpoint = 64.4 degF (the checkpoint's default)" in stdout
    assert rep["assumed_controls"] == ["setpoint"]
    assert rep["controls"]["setpoint"] == {
        "value": pytest.approx(DEFAULT_F),
        "unit": "degF",
        "source": "assumed default",
    }
    assert rep["next"]["controls"]["setpoint"] == pytest.approx(DEFAULT_F)
    stdout, col = _predict(capsys, csvs["col"], d / "col")
    assert "assumed" not in stdout and "setpoint from column 'setpoint'" in stdout
    assert col["assumed_controls"] == [] and col["next"]["assumed_controls"] == []
    assert col["controls"]["setpoint"]["source"] == "column 'setpoint'"
    assert col["next"]["controls"]["setpoint"] == pytest.approx(SP_F)
    # the rack air follows the supply setpoint: at 21 °C it is forecast warmer than at 18 °C,
    # close to the air temperature the 21 °C run actually had
    t_bare, t_col = _rolling(d / "bare"), _rolling(d / "col")
    actual = csvs["x"][2:, 2]
    assert (t_col - t_bare).min() > 0.5
    assert np.abs(t_col - actual).mean() < 0.25 * np.abs(t_bare - actual).mean()
    assert col["next"]["temp"] > rep["next"]["temp"] + 0.5
    # the one step ahead: header, mean / interval per channel, then the setpoint used
    ahead = (d / "col" / "ahead.csv").read_text().splitlines()
    assert ahead[0].endswith("temp_hi90,setpoint") and ahead[1].startswith(f"{ROWS},")
    assert float(ahead[1].split(",")[-1]) == pytest.approx(SP_F)


@pytest.mark.slow  # four compiled CLI runs (~25-60 s on a loaded 2-core machine)
def test_setpoint_option_equals_the_column_and_backtest_reports_it(capsys, csvs):
    d = csvs["d"]
    _, col = _predict(capsys, csvs["col"], d / "col", "--horizon", "3")
    stdout, opt = _predict(
        capsys, csvs["bare"], d / "opt", "--setpoint", "21degC", "--horizon", "3"
    )
    assert "setpoint = 69.8 degF from --setpoint over the CSV and the forecast" in stdout
    assert opt["assumed_controls"] == [] and opt["controls"]["setpoint"]["source"] == "--setpoint"
    # a constant 21 °C column and --setpoint 21degC condition every forecast identically
    np.testing.assert_array_equal(_rolling(d / "opt"), _rolling(d / "col"))
    np.testing.assert_allclose(opt["ahead"]["mean"], col["ahead"]["mean"], rtol=1e-6)
    assert opt["ahead"]["controls"]["setpoint"] == pytest.approx([SP_F] * 3)
    mase = {}
    for name in ("bare", "col"):
        bt = d / f"bt_{name}"
        args = ["-m", DEFAULT_CHECKPOINT, "--data", csvs[name], "--horizons", "1,4"]
        rc, stdout, err = run(capsys, "backtest", *args, "--out", str(bt))
        assert rc == 0, err
        m = json.loads((bt / "metrics.json").read_text())
        assert m["assumed_controls"] == (["setpoint"] if name == "bare" else [])
        assert ("warning: assumed setpoint = 64.4 degF" in stdout) == (name == "bare")
        assert (bt / "backtest.png").read_bytes()[:4] == b"\x89PNG"
        mase[name] = m["metrics"]["1"]["temp"]["mase"]
    # assuming 18 °C for a 21 °C rack: the temperature forecast is far off (issue 19: ~15x)
    assert mase["col"] < 1.5 and mase["bare"] > 5 * mase["col"], mase


def _bad(tmp_path, csvs, column, values, name="bad.csv"):
    x = csvs["x"]
    sp = np.full((x.shape[0], 1), SP_F)
    path = _write(tmp_path / name, (*csvs["names"], column), np.concatenate([x, sp], 1))
    text = (tmp_path / name).read_text().splitlines()
    for row, v in values.items():  # data row -> replacement of the last cell
        cells = text[1 + row].split(",")
        text[1 + row] = ",".join(cells[:-1] + [v])
    (tmp_path / name).write_text("\n".join(text) + "\n")
    return path


@pytest.mark.parametrize(
    "column, values, needle",
    [
        ("setpoint", {3: "warm"}, "row 3 column 'setpoint' is not a number: 'warm'"),
        ("setpoint", {5: ""}, "row 5 column 'setpoint' is not a number"),
        ("setpoint", {7: "nan"}, "row 7 column 'setpoint' is not finite"),
        (
            "setpoint",
            {9: "95"},
            "row 9 column 'setpoint' is 95 degF, outside the model's training range",
        ),
        ("setpoint", {2: "-500"}, "row 2 column 'setpoint' is -500 degF, outside"),
        ("setpoint_degC", {}, "column 'setpoint_degC' is in degC, but the checkpoint takes"),
    ],
)
@pytest.mark.parametrize("command", ["predict", "backtest"])
def test_a_bad_setpoint_column_is_one_line_naming_it(
    capsys, csvs, tmp_path, command, column, values, needle
):
    data = _bad(tmp_path, csvs, column, values)
    rc, _, err = run(
        capsys, command, "-m", DEFAULT_CHECKPOINT, "--data", data, "--out", str(tmp_path / "o")
    )
    assert rc == 1 and needle in err, err
    assert err.count("\n") == 1 and err.startswith("idf: error: ")
    assert not (tmp_path / "o").exists()  # refused before anything is written


@pytest.mark.parametrize(
    "command, data, value, needle",
    [
        ("predict", "bare", "hot", "expected a number with an optional unit"),
        ("predict", "bare", "40degC", "outside the model's training range"),
        ("predict", "bare", "21kW", "cannot convert kW"),
        ("backtest", "col", "21degC", "has the control column(s) ['setpoint']"),
    ],
)
def test_bad_setpoint_option(capsys, csvs, tmp_path, command, data, value, needle):
    args = ["-m", DEFAULT_CHECKPOINT, "--data", csvs[data], "--out", str(tmp_path / "o")]
    rc, _, err = run(capsys, command, *args, "--setpoint", value)
    assert rc == 2 and "--setpoint" in err and needle in err, err
    assert err.count("\n") == 1
