"""`idf predict` and `idf backtest`: an NVP checkpoint on a telemetry CSV, with plots.

    idf predict  --checkpoint models/nvp.ckpt --data data/site.csv --out results/predict
    idf backtest --checkpoint models/nvp.ckpt --data data/site.csv --horizons 1,4,24
    idf backtest --config project/config.yaml --data project/data/site.csv

With `--config` (a project made by `idf init`) the checkpoint defaults to the config's
`nvp.checkpoint` and the results go to `results/predict` / `results/backtest`, both inside
the project folder.

The CSV holds the checkpoint's channels as columns (and optionally a `timestamp` column,
seconds or ISO 8601, checked for order and spacing against the checkpoint's interval), and
its control inputs where it logs them: the packaged rack model takes the cooling setpoint,
a `setpoint` column in degF (`_controls`: names, units, range checks, `--setpoint`).
Without a setpoint column or `--setpoint` the checkpoint's default (18 °C) is assumed; the
command then prints a warning and writes it under `assumed_controls`.

`predict` writes the rolling one-step forecasts (`predictions.csv`: mean and 90 % interval
per channel), the forecast of the `--horizon` steps after the last row (`ahead.csv`,
conditioned on `--setpoint`, else the last setpoint in the CSV held), `forecast.json` (the
next step, the steps ahead, the controls used and where they came from) and a
forecast-vs-actual plot (`forecast.png`), and prints the next step. `backtest` writes
`metrics.json` (MAE, MASE, skill against persistence, CRPS, 90 % coverage per horizon and
channel; `idf_jax.nvp.backtest` on `idf_jax.nvp.metrics`; `--calibrate f` rescales the sd
per horizon on the first f of the rows and scores the rest; the controls used) and
`backtest.png`, and prints the table.

    idf predict  -m models/nvp.ckpt --data site.csv --horizon 12 --setpoint 21degC
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ..._io import atomic_write_bytes, atomic_write_json, jsonable
from ._common import console, load_yaml, project_path, save_figure
from ._controls import (
    check_control_values,
    control_columns,
    control_sources,
    parse_setpoint,
    report_lines,
)

if TYPE_CHECKING:
    import numpy as np

    from ...nvp import NVPPredictor

__all__ = ["backtest", "predict"]

_CKPT = typer.Option(
    None,
    "--checkpoint",
    "-m",
    help="NVP checkpoint file",
    show_default="config nvp.checkpoint, in the --config project folder",
)
_DATA = typer.Option(
    ...,
    "--data",
    help="telemetry CSV: the checkpoint's channels as columns, and its controls (setpoint)",
)
_SETPOINT = typer.Option(
    None,
    "--setpoint",
    help="cooling setpoint where the CSV has none: VALUE in the checkpoint's unit (the "
    "packaged model: degF) or with a unit, e.g. 21degC; with a setpoint column, the "
    "setpoint after the last row",
    show_default="the CSV's setpoint column, else the checkpoint's default (reported)",
)
_CONFIG = typer.Option(
    None,
    "--config",
    "-c",
    help="project config.yaml: its folder holds models/ and results/ (idf init)",
    show_default="none",
)


def _paths(
    checkpoint: Path | None, out: Path | None, config: Path | None, command: str
) -> tuple[Path, Path]:
    """The checkpoint and the results folder: as given, else from the config (`nvp.checkpoint`,
    `<command>.out`, else results/<command>), relative to the project folder."""
    cfg = load_yaml(config)
    nvp = cfg.get("nvp", {}) or {}
    if checkpoint is None and (config is None or "checkpoint" not in nvp):
        raise typer.BadParameter(
            "give --checkpoint (or nvp.checkpoint in --config)", param_hint="--checkpoint"
        )
    ckpt = project_path(checkpoint, config, nvp, "checkpoint", "models/nvp.ckpt")
    section = cfg.get(command, {}) or {}
    return ckpt, project_path(out, config, section, "out", f"results/{command}")


@dataclass(frozen=True)
class _Loaded:
    """A checkpoint and a CSV checked against it: `x` (T, S + K) holds the states and the
    control columns found (`columns`, control -> column; K = 0 without them); `given` the
    `--setpoint` control values."""

    pred: NVPPredictor
    x: np.ndarray
    columns: dict[str, str]
    given: dict[str, float]

    @property
    def model_controls(self) -> dict[str, float] | None:
        """`controls` for the library calls on the CSV rows: the CSV's own, else --setpoint."""
        return None if self.columns or not self.given else dict(self.given)

    def used(self, assumed: list[str]) -> dict[str, dict]:
        """Control -> {value, unit, source}: the value the forecast after the last row uses."""
        pred, ns = self.pred, len(self.pred.channels)
        meta = pred.series
        values = {}
        for j, c in enumerate(pred.controls):
            if c in self.given:
                values[c] = self.given[c]
            elif c in self.columns:
                values[c] = float(self.x[-1, ns + j])
            else:
                values[c] = float(meta.defaults[c]) if meta is not None else float("nan")
        return control_sources(meta, self.columns, self.given, assumed, values)

    def control_series(self, assumed: list[str]) -> dict[str, tuple[np.ndarray, str]]:
        """Control -> (values over the rows, label) for the plots."""
        import numpy as np

        ns, t = len(self.pred.channels), self.x.shape[0]
        out = {}
        for j, (c, s) in enumerate(self.used(assumed).items()):
            if c in self.columns:
                out[c] = (self.x[:, ns + j], f"{c} [{s['unit']}] ({s['source']})")
            else:
                out[c] = (np.full(t, s["value"]), f"{c} [{s['unit']}] ({s['source']})")
        return out


def _header(data: Path) -> list[str]:
    with open(data, newline="") as f:
        return next(csv.reader(f), [])


def _load(checkpoint: Path, data: Path, setpoint: str | None, command: str) -> _Loaded:
    """The predictor and the CSV's states and control columns, every check done before the
    model is compiled: the time column, the control columns' units, values and ranges, and
    (`backtest`) no --setpoint beside a setpoint column."""
    from ...nvp import NVPPredictor
    from ...nvp import checkpoint as ckpt
    from ...nvp.data import read_series_csv

    if not checkpoint.exists():
        raise typer.BadParameter(f"{str(checkpoint)!r} does not exist", param_hint="--checkpoint")
    if not data.exists():
        raise typer.BadParameter(f"{str(data)!r} does not exist", param_hint="--data")
    meta = ckpt.series_of(ckpt.read_header(str(checkpoint))[0])
    given = parse_setpoint(setpoint, meta)
    columns = control_columns(meta, _header(data), data)
    if command == "backtest" and columns and given:
        raise typer.BadParameter(
            f"{data} has the control column(s) {list(columns.values())}: the backtest "
            "conditions every forecast on their recorded values; drop --setpoint (or the "
            "column)",
            param_hint="--setpoint",
        )
    pred = None
    if meta is None:  # an old checkpoint: its channels only from the model config
        pred = NVPPredictor(str(checkpoint))
        states = pred.channels
    else:
        states = meta.states
    interval = None if meta is None else meta.interval_s
    x, _, step = read_series_csv(data, (*states, *columns.values()), interval_s=interval)
    if interval is not None and abs(step - interval) > 0.01 * interval:
        raise ValueError(
            f"{data}: rows are {step:g} s apart, the model was trained at {interval:g} s"
        )
    if meta is not None and columns:
        check_control_values(meta, x[:, len(states) :], columns, data)
    pred = NVPPredictor(str(checkpoint)) if pred is None else pred
    if pred.channels != tuple(states):
        raise ValueError(
            f"{checkpoint}: series metadata lists channels {list(states)}, the model "
            f"forecasts {list(pred.channels)}"
        )
    return _Loaded(pred, x, columns, given)


def _print_controls(loaded: _Loaded, sources: dict[str, dict]) -> None:
    con = console()
    for line in report_lines(sources, loaded.columns):
        warn = line.startswith("warning")
        con.print(
            line,
            style="bold yellow" if warn else None,
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


def _plot(x, res, horizons, path: Path, title: str, controls: dict | None = None) -> None:
    """Actual vs forecast per channel (90 % band at the first horizon), then one panel per
    control input with the values the forecasts were conditioned on."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    chans = res["channels"]
    ctl = dict(controls or {})
    rows = len(chans) + len(ctl)
    fig, axes = plt.subplots(
        rows, 1, figsize=(10, 2.4 * len(chans) + 1.4 * len(ctl)), squeeze=False, sharex=True
    )
    o = res["origins"]
    for j, c in enumerate(chans):
        ax = axes[j, 0]
        ax.plot(np.arange(x.shape[0]), x[:, j], color="black", lw=1, label="actual")
        for h in horizons:
            t = o + h
            ok = t < x.shape[0]
            mu = res["mean"][ok, h - 1, j]
            ax.plot(t[ok], mu, lw=0.9, label=f"forecast h={h}")
            if h == horizons[0]:
                sd = res["sd"][ok, h - 1, j]
                ax.fill_between(t[ok], mu - 1.645 * sd, mu + 1.645 * sd, alpha=0.2, lw=0)
        unit = "" if res.get("units") is None else f" [{res['units'].get(c, '')}]"
        ax.set_ylabel(c + unit)
        ax.legend(loc="upper right", fontsize=7)
    for k, (values, label) in enumerate(ctl.values()):
        ax = axes[len(chans) + k, 0]
        ax.step(np.arange(len(values)), values, where="pre", color="tab:gray", lw=1)
        ax.set_ylabel(label.split(" (")[0])
        ax.set_title(label, fontsize=8, loc="left")
    axes[-1, 0].set_xlabel("step")
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def predict(
    checkpoint: Path | None = _CKPT,
    data: Path = _DATA,
    out: Path | None = typer.Option(
        None,
        help="folder for predictions and plot",
        show_default="config predict.out, else results/predict; in the --config project",
    ),
    config: Path | None = _CONFIG,
    setpoint: str | None = _SETPOINT,
    horizon: int = typer.Option(
        1, min=1, help="steps forecast after the last row (ahead.csv), each fed back"
    ),
):
    """Rolling one-step forecasts of a CSV and the forecast after its last row.

    Example: idf predict --checkpoint models/nvp.ckpt --data data/site.csv --setpoint 21degC
    """
    from ...nvp.backtest import backtest as run_backtest

    checkpoint, out = _paths(checkpoint, out, config, "predict")
    loaded = _load(checkpoint, data, setpoint, "predict")
    pred, x = loaded.pred, loaded.x
    res = run_backtest(pred, x, (1,), controls=loaded.model_controls)
    res["units"] = None if pred.series is None else pred.series.units
    nxt = pred.predict_next(x, controls=loaded.given or None)
    ahead = _ahead(pred, x, nxt, loaded.given, horizon)
    assumed = list(ahead["assumed_controls"])
    sources = loaded.used(assumed)
    out.mkdir(parents=True, exist_ok=True)
    chans = pred.channels
    header = ["row"] + [f"{c}_{k}" for c in chans for k in ("mean", "lo90", "hi90")]
    lines = [",".join(header)]
    for i, t in enumerate(res["origins"]):
        lines.append(_row(int(t) + 1, res["mean"][i, 0], res["sd"][i, 0]))
    atomic_write_bytes(out / "predictions.csv", ("\n".join(lines) + "\n").encode())
    ahead_lines = [",".join(header + list(pred.controls))]
    for h in range(horizon):
        ctl = [f"{v:.6g}" for v in ahead["controls"][h]]
        ahead_lines.append(_row(x.shape[0] - 1 + h + 1, ahead["mean"][h], ahead["sd"][h], ctl))
    atomic_write_bytes(out / "ahead.csv", ("\n".join(ahead_lines) + "\n").encode())
    report = dict(
        checkpoint=str(checkpoint),
        data=str(data),
        rows=int(x.shape[0]),
        next=nxt,
        ahead=dict(
            horizon=horizon,
            channels=list(chans),
            mean=ahead["mean"],
            sd=ahead["sd"],
            controls={c: ahead["controls"][:, j] for j, c in enumerate(pred.controls)},
        ),
        controls=sources,
        assumed_controls=assumed,
    )
    atomic_write_json(out / "forecast.json", jsonable(report))
    _plot(
        x,
        res,
        [1],
        out / "forecast.png",
        f"{checkpoint.name} on {data.name}: one step ahead",
        loaded.control_series(assumed),
    )
    con = console()
    _print_controls(loaded, sources)
    con.print(f"next step after row {x.shape[0] - 1}:")
    for c in chans:
        lo, hi = nxt["interval"][c]
        con.print(f"  {c}: {nxt[c]:.6g}  (90 % interval {lo:.6g} .. {hi:.6g})")
    con.print(
        f"  confidence {nxt['confidence']:.3f}; in training range: {nxt['in_range']}"
        + (f" (outside: {nxt['out_of_range']})" if nxt["out_of_range"] else "")
    )
    if horizon > 1:
        last = ", ".join(f"{c} {ahead['mean'][-1, j]:.6g}" for j, c in enumerate(chans))
        con.print(f"{horizon} steps after row {x.shape[0] - 1}: {last}")
    written = ", ".join(str(out / f) for f in ("predictions.csv", "ahead.csv", "forecast.json"))
    con.print(f"wrote {written} and {out / 'forecast.png'}")


def _ahead(pred: NVPPredictor, x, nxt: dict, given: dict[str, float], horizon: int) -> dict:
    """`pred.forecast` of the steps after the last row (its first step is `nxt`, the
    `predict_next` answer, which serves horizon 1 without compiling the recursion)."""
    import numpy as np

    if horizon > 1:
        return pred.forecast(x, controls=given or None, horizon=horizon)
    ctl = nxt.get("controls", {})
    return dict(
        mean=np.array([[nxt[c] for c in pred.channels]]),
        sd=np.array([[nxt["std"][c] for c in pred.channels]]),
        controls=np.array([[ctl[c] for c in pred.controls]]).reshape(1, len(pred.controls)),
        assumed_controls=list(nxt.get("assumed_controls", [])),
    )


def _row(row: int, mu, sd, extra: list[str] | None = None) -> str:
    """One CSV line: the row, then mean and 90 % interval per channel, then `extra`."""
    cells = [str(row)]
    for m, s in zip(mu.tolist(), sd.tolist()):
        cells += [f"{m:.6g}", f"{m - 1.645 * s:.6g}", f"{m + 1.645 * s:.6g}"]
    return ",".join(cells + list(extra or []))


def backtest(
    checkpoint: Path | None = _CKPT,
    data: Path = _DATA,
    horizons: str = typer.Option("1,4,24", help="comma-separated horizons in steps"),
    out: Path | None = typer.Option(
        None,
        help="folder for metrics and plot",
        show_default="config backtest.out, else results/backtest; in the --config project",
    ),
    config: Path | None = _CONFIG,
    calibrate: float | None = typer.Option(
        None,
        help="fraction of the first origins used only to rescale the sd per horizon "
        "(90 % coverage there); metrics on the rest [default: off, the model's own sd]",
    ),
    setpoint: str | None = typer.Option(
        None,
        "--setpoint",
        help="cooling setpoint over the CSV when it has no setpoint column: VALUE in the "
        "checkpoint's unit (the packaged model: degF) or with a unit, e.g. 21degC",
        show_default="the CSV's setpoint column, else the checkpoint's default (reported)",
    ),
):
    """Multi-horizon rolling backtest: MASE, skill vs persistence, CRPS, 90 % coverage.

    Example: idf backtest --checkpoint models/nvp.ckpt --data data/site.csv --horizons 1,4,24
    """
    from ...nvp.backtest import backtest as run_backtest

    try:
        hs = sorted({int(h) for h in horizons.split(",") if h.strip()})
    except ValueError:
        raise typer.BadParameter(f"not a list of integers: {horizons!r}", param_hint="--horizons")
    if not hs or hs[0] < 1:
        raise typer.BadParameter("horizons must be integers >= 1", param_hint="--horizons")
    checkpoint, out = _paths(checkpoint, out, config, "backtest")
    if calibrate is not None and not 0.0 < calibrate < 1.0:
        raise typer.BadParameter("a fraction in (0, 1)", param_hint="--calibrate")
    loaded = _load(checkpoint, data, setpoint, "backtest")
    pred, x = loaded.pred, loaded.x
    try:
        res = run_backtest(pred, x, hs, calibrate=calibrate, controls=loaded.model_controls)
    except ValueError as e:
        if calibrate is None:
            raise
        raise typer.BadParameter(str(e), param_hint="--calibrate") from None
    res["units"] = None if pred.series is None else pred.series.units
    assumed = list(res["assumed_controls"])
    sources = loaded.used(assumed)
    out.mkdir(parents=True, exist_ok=True)
    factor = res["sd_factor"]
    report = dict(
        checkpoint=str(checkpoint),
        data=str(data),
        rows=int(x.shape[0]),
        horizons=res["horizons"],
        metrics={str(h): m for h, m in res["metrics"].items()},
        scored_from=res["scored_from"],
        sd_factor=None
        if factor is None
        else {str(h): dict(zip(pred.channels, factor[h - 1].tolist())) for h in hs},
        controls=sources,
        assumed_controls=assumed,
    )
    atomic_write_json(out / "metrics.json", report)
    shown = [h for h in (hs[0], hs[-1]) if h in res["metrics"]]
    _plot(
        x,
        res,
        sorted(set(shown)),
        out / "backtest.png",
        f"{checkpoint.name} on {data.name}",
        loaded.control_series(assumed),
    )
    from rich.table import Table

    table = Table(title=f"backtest of {checkpoint.name} on {data.name} ({x.shape[0]} rows)")
    for col in ("h", "channel", "MASE", "MASE persistence", "skill", "CRPS", "cover 90%"):
        table.add_column(col)
    for h, per in res["metrics"].items():
        for c, m in per.items():
            table.add_row(
                str(h),
                c,
                f"{m['mase']:.3f}",
                f"{m['mase_persistence']:.3f}",
                f"{m['skill']:+.3f}",
                f"{m['crps']:.4g}",
                f"{m['coverage90']:.2f}",
            )
    con = console()
    _print_controls(loaded, sources)
    con.print(table)
    if factor is not None:
        con.print(
            f"sd rescaled per horizon on origins before row {res['scored_from']} "
            f"(--calibrate {calibrate}); metrics from there on"
        )
    con.print(f"wrote {out / 'metrics.json'} and {out / 'backtest.png'}")
