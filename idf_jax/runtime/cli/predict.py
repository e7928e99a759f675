"""`idf predict` and `idf backtest`: an NVP checkpoint on a telemetry CSV, with plots.

    idf predict  --checkpoint models/nvp.ckpt --data data/site.csv --out results/predict
    idf backtest --checkpoint models/nvp.ckpt --data data/site.csv --horizons 1,4,24
    idf backtest --config project/config.yaml --data project/data/site.csv

With `--config` (a project made by `idf init`) the checkpoint defaults to the config's
`nvp.checkpoint` and the results go to `results/predict` / `results/backtest`, both inside
the project folder.

The CSV holds the checkpoint's channels as columns (and optionally a `timestamp` column,
seconds or ISO 8601, checked for order and spacing against the checkpoint's interval).
`predict` writes the rolling one-step forecasts (`predictions.csv`: mean and 90 % interval
per channel), a forecast-vs-actual plot (`forecast.png`) and prints the next step.
`backtest` writes `metrics.json` (MAE, MASE, skill against persistence, CRPS, 90 % coverage
per horizon and channel; `idf_jax.nvp.backtest` on `idf_jax.nvp.metrics`; `--calibrate f`
rescales the sd per horizon on the first f of the rows and scores the rest) and
`backtest.png`, and prints the table.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ..._io import atomic_write_bytes, atomic_write_json
from ._common import console, load_yaml, project_path, save_figure

__all__ = ["backtest", "predict"]

_CKPT = typer.Option(
    None,
    "--checkpoint",
    "-m",
    help="NVP checkpoint file",
    show_default="config nvp.checkpoint, in the --config project folder",
)
_DATA = typer.Option(..., "--data", help="telemetry CSV (the checkpoint's channels as columns)")
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


def _load(checkpoint: Path, data: Path):
    from ...nvp import NVPPredictor
    from ...nvp.data import read_series_csv

    if not checkpoint.exists():
        raise typer.BadParameter(f"{str(checkpoint)!r} does not exist", param_hint="--checkpoint")
    if not data.exists():
        raise typer.BadParameter(f"{str(data)!r} does not exist", param_hint="--data")
    pred = NVPPredictor(str(checkpoint))
    interval = None if pred.series is None else pred.series.interval_s
    x, _, step = read_series_csv(data, pred.channels, interval_s=interval)
    if interval is not None and abs(step - interval) > 0.01 * interval:
        raise ValueError(
            f"{data}: rows are {step:g} s apart, the model was trained at {interval:g} s"
        )
    return pred, x


def _plot(x, res, horizons, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    chans = res["channels"]
    fig, axes = plt.subplots(len(chans), 1, figsize=(10, 2.4 * len(chans)), squeeze=False)
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
):
    """Rolling one-step forecasts of a CSV and the next step after its last row.

    Example: idf predict --checkpoint models/nvp.ckpt --data data/site.csv
    """
    from ...nvp.backtest import backtest as run_backtest

    checkpoint, out = _paths(checkpoint, out, config, "predict")
    pred, x = _load(checkpoint, data)
    res = run_backtest(pred, x, (1,))
    res["units"] = None if pred.series is None else pred.series.units
    out.mkdir(parents=True, exist_ok=True)
    chans = pred.channels
    header = ["row"] + [f"{c}_{k}" for c in chans for k in ("mean", "lo90", "hi90")]
    lines = [",".join(header)]
    for i, t in enumerate(res["origins"]):
        mu, sd = res["mean"][i, 0], res["sd"][i, 0]
        cells = [str(int(t) + 1)]
        for j in range(len(chans)):
            cells += [
                f"{mu[j]:.6g}",
                f"{mu[j] - 1.645 * sd[j]:.6g}",
                f"{mu[j] + 1.645 * sd[j]:.6g}",
            ]
        lines.append(",".join(cells))
    atomic_write_bytes(out / "predictions.csv", ("\n".join(lines) + "\n").encode())
    _plot(x, res, [1], out / "forecast.png", f"{checkpoint.name} on {data.name}: one step ahead")
    nxt = pred.predict_next(x)
    con = console()
    con.print(f"next step after row {x.shape[0] - 1}:")
    for c in chans:
        lo, hi = nxt["interval"][c]
        con.print(f"  {c}: {nxt[c]:.6g}  (90 % interval {lo:.6g} .. {hi:.6g})")
    con.print(
        f"  confidence {nxt['confidence']:.3f}; in training range: {nxt['in_range']}"
        + (f" (outside: {nxt['out_of_range']})" if nxt["out_of_range"] else "")
    )
    con.print(f"wrote {out / 'predictions.csv'} and {out / 'forecast.png'}")


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
    pred, x = _load(checkpoint, data)
    if calibrate is not None and not 0.0 < calibrate < 1.0:
        raise typer.BadParameter("a fraction in (0, 1)", param_hint="--calibrate")
    try:
        res = run_backtest(pred, x, hs, calibrate=calibrate)
    except ValueError as e:
        if calibrate is None:
            raise
        raise typer.BadParameter(str(e), param_hint="--calibrate") from None
    res["units"] = None if pred.series is None else pred.series.units
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
    )
    atomic_write_json(out / "metrics.json", report)
    shown = [h for h in (hs[0], hs[-1]) if h in res["metrics"]]
    _plot(x, res, sorted(set(shown)), out / "backtest.png", f"{checkpoint.name} on {data.name}")
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
    con.print(table)
    if factor is not None:
        con.print(
            f"sd rescaled per horizon on origins before row {res['scored_from']} "
            f"(--calibrate {calibrate}); metrics from there on"
        )
    con.print(f"wrote {out / 'metrics.json'} and {out / 'backtest.png'}")
