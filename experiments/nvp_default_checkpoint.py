"""Train the small default NVP checkpoint shipped inside the package.

    PYTHONPATH=. python experiments/nvp_default_checkpoint.py

Data: the simulator's one-server preset (`simulator.rack_params`, 5-minute steps, channels
cpu 0-1, power W, temp deg F: the blueprint's `{'cpu', 'power', 'temp'}` telemetry), 60 days
for training and the following 10 days for validation, driven by the real TMY3 weather of
Greensboro NC shipped with pvlib. Writes `idf_jax/nvp/checkpoints/rack_default.ckpt` and
`experiments/results/nvp_default_checkpoint.md`. Fixed seeds: re-running gives the same file.
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np

from idf_jax.nvp import simulator
from idf_jax.nvp.metadata import SeriesMeta
from idf_jax.nvp.model import NVPConfig
from idf_jax.nvp.predictor import DEFAULT_CHECKPOINT, NVPPredictor
from idf_jax.nvp.train import TrainConfig, train

HERE = os.path.dirname(os.path.abspath(__file__))
DAY = 288  # 5-minute steps


def training_data() -> tuple[np.ndarray, tuple[str, ...], SeriesMeta]:
    """The 70 days of telemetry (60 train + 10 val), channel names, and the series metadata
    (units, 5-minute interval, ranges of the 60 training days; the supply setpoint is held at
    18 °C throughout, so the model cannot respond to another setpoint)."""
    params = simulator.rack_params()
    obs = simulator.simulate(params, jax.random.key(2024), 70 * DAY)
    x, names = simulator.rack_telemetry(obs)
    meta = SeriesMeta.from_data(
        [x[: 60 * DAY]],
        names,
        simulator.RACK_UNITS,
        float(params.dt),
        conditions={"setpoint_degC": 18.0},
    )
    return x, names, meta


def main() -> None:
    params = simulator.rack_params()
    x, names, meta = training_data()
    spec = simulator.rack_balance_spec(params)
    tr, va = x[: 60 * DAY], x[60 * DAY :]
    cfg = NVPConfig(channels=names, window=32, d_model=32, num_heads=2, num_layers=2, lin_head=64)
    tcfg = TrainConfig(
        epochs=10, batch_size=64, learning_rate=3e-3, patience=4, seed=0, max_epoch_windows=8192
    )
    t0 = time.perf_counter()
    res = train(
        [tr],
        [va],
        cfg,
        spec,
        tcfg,
        checkpoint=DEFAULT_CHECKPOINT,
        progress=True,
        series=meta,
        extra_meta=dict(
            data="simulator.rack_params 5-min, 60 d train / 10 d val",
            script="experiments/nvp_default_checkpoint.py",
        ),
    )
    wall = time.perf_counter() - t0
    for suffix in (".state",):
        if os.path.exists(DEFAULT_CHECKPOINT + suffix):
            os.unlink(DEFAULT_CHECKPOINT + suffix)
    nvp = NVPPredictor()
    tel = [
        {"cpu": 0.75, "power": 850, "temp": 72},
        {"cpu": 0.78, "power": 865, "temp": 73},
        {"cpu": 0.81, "power": 880, "temp": 74},
    ]
    pred = nvp.predict_next(telemetry_history=tel)
    size = os.path.getsize(DEFAULT_CHECKPOINT)
    lines = [
        "# NVP default checkpoint",
        "",
        "Command: `PYTHONPATH=. python experiments/nvp_default_checkpoint.py` "
        "(2-core CPU shared with other jobs)",
        "",
        f"- channels: {list(names)}; window {cfg.window}; d_model {cfg.d_model}; "
        f"{cfg.num_layers} layers; {cfg.num_heads} heads; correction MLP over the linear "
        f"forecast width {cfg.lin_head}; residual scale (normalised) "
        f"{[round(float(v), 4) for v in res.normalizer.res_std]}",
        f"- file: `idf_jax/nvp/checkpoints/rack_default.ckpt`, {size / 1024:.1f} KiB",
        f"- best epoch {res.best_epoch} of {len(res.history)}; best validation loss "
        f"{res.best_val:.4f}; training wall time {wall:.0f} s",
        "",
        "| epoch | train loss | val loss | val L_pred | val L_energy |",
        "| --- | --- | --- | --- | --- |",
    ]
    for h in res.history:
        lines.append(
            f"| {h['epoch']} | {h['train']['total']:.4f} | {h['val']['total']:.4f} | "
            f"{h['val']['pred']:.4f} | {h['val']['energy']:.2e} |"
        )
    lines += [
        "",
        "Blueprint example (`predict_next` on the three-sample history):",
        "",
        "```",
        repr({k: pred[k] for k in ("cpu", "power", "temp", "confidence", "energy_valid")}),
        "```",
        "",
    ]
    with open(os.path.join(HERE, "results", "nvp_default_checkpoint.md"), "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))
    print("rmse check", np.sqrt(np.mean((va[1:] - va[:-1]) ** 2, 0)))


if __name__ == "__main__":
    main()
