"""Train the action-conditioned NVP checkpoint EIL plans with, shipped inside the package.

    PYTHONPATH=. python experiments/eil_nvp_checkpoint.py

Data: the simulator's row preset (`simulator.make_params()`: 4 racks x 40 servers, 15-min
steps, real TMY3 weather of Greensboro NC shipped with pvlib) driven by randomised,
piecewise-constant actions (`idf_jax.nvp.control.excited_series`): 8 series of three weeks
starting at different times of the year for training, 2 one-week series for validation.
Channels in kW / °C (`control.control_spec`); the control channels are inputs only (target
mask). Writes `idf_jax/nvp/checkpoints/eil_row.ckpt` and
`experiments/results/eil_nvp_checkpoint.md`. Fixed seeds.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from idf_jax.nvp import control
from idf_jax.nvp import data as nvp_data
from idf_jax.nvp import simulator as sim
from idf_jax.nvp.loss import make_physics
from idf_jax.nvp.metadata import SeriesMeta
from idf_jax.nvp.model import NVPConfig, fit_normalizer
from idf_jax.nvp.train import TrainConfig, train_windows

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "results", "eil_nvp_checkpoint.md")
WEEK = 7 * 96
TRAIN_DAYS = (0, 45, 90, 135, 180, 225, 270, 315)  # start day of each 3-week series
VAL_DAYS = (20, 200)  # start day of each 1-week validation series


def series(day, weeks, seed):
    params = sim.make_params(start_hour=24.0 * day)
    x, spec = control.excited_series(params, jax.random.key(seed), weeks * WEEK, seed)
    return x, spec, params


def training_data():
    """The eight 3-week training series (x, spec, params) and the channel layout."""
    tr = [series(d, 3, 100 + i) for i, d in enumerate(TRAIN_DAYS)]
    return tr, tr[0][1]


def series_meta(xs, spec) -> SeriesMeta:
    """Units, interval (the spec's dt), controls and training ranges of the row model."""
    return SeriesMeta.from_data(xs, spec.channels, spec.units, spec.dt, controls=spec.controls)


def main() -> None:
    t0 = time.perf_counter()
    tr, spec = training_data()
    va = [series(d, 1, 900 + i) for i, d in enumerate(VAL_DAYS)]
    params = tr[0][2]
    bal = control.balance_spec(params)
    t_data = time.perf_counter() - t0
    cfg = NVPConfig(channels=spec.channels, window=16, d_model=32, num_heads=2, num_layers=2)
    phys = make_physics(bal, cfg.channels)
    norm = fit_normalizer([x for x, _, _ in tr], phys.balance)
    cut = lambda parts: nvp_data.concat_windows(
        nvp_data.windows(x, cfg.window, min_history=cfg.min_history) for x, _, _ in parts
    )
    tmask = np.array([c in spec.state for c in spec.channels])
    tcfg = TrainConfig(
        epochs=24,
        batch_size=64,
        learning_rate=3e-3,
        patience=4,
        seed=0,
        max_epoch_windows=6144,
        residual_scale=False,  # the shipped checkpoint predates residual-scaled heads
    )
    path = control.EIL_CHECKPOINT
    t1 = time.perf_counter()
    res = train_windows(
        cut(tr),
        cut(va),
        norm,
        cfg,
        bal,
        tcfg,
        checkpoint=path,
        progress=True,
        target_mask=tmask,
        series=series_meta([x for x, _, _ in tr], spec),
        extra_meta=dict(
            control=spec.to_json(),
            script="experiments/eil_nvp_checkpoint.py",
            data="simulator.make_params row, excited actions, 8 x 3 weeks train / 2 x 1 week val",
        ),
    )
    wall = time.perf_counter() - t1
    if os.path.exists(path + ".state"):
        os.unlink(path + ".state")

    # validation: one-step error per state channel, and the direction of each control's effect
    m = control.ControlledNVP(path)
    xv, mv, tv = cut(va)
    step = jax.jit(jax.vmap(lambda y, mk: m.step(y, mk, y[-1, jnp.asarray(m.control_idx)])))
    pred = np.asarray(step(jnp.asarray(xv, jnp.float32), jnp.asarray(mv))[0], np.float64)
    ns = len(spec.state)
    mae = np.mean(np.abs(pred[:, :ns] - tv[:, :ns]), axis=0)
    e_pred = pred[:, 1] + pred[:, 3]
    e_true = tv[:, 1] + tv[:, 3]
    rel = np.abs(e_pred - e_true) / e_true
    lines = [
        "# EIL action-conditioned NVP checkpoint",
        "",
        "Command: `PYTHONPATH=. python experiments/eil_nvp_checkpoint.py` (2-core CPU shared "
        "with other jobs)",
        "",
        f"- channels: state {list(spec.state)}; controls {list(spec.controls)}",
        f"- window {cfg.window}; d_model {cfg.d_model}; {cfg.num_layers} layers; "
        f"{cfg.num_heads} heads; file `idf_jax/nvp/checkpoints/eil_row.ckpt`, "
        f"{os.path.getsize(path) / 1024:.1f} KiB",
        f"- data generation {t_data:.0f} s; training wall time {wall:.0f} s; best epoch "
        f"{res.best_epoch} of {len(res.history)}; best validation loss {res.best_val:.4f}",
        f"- one-step facility power (it_power + cooling_power) on validation: median relative "
        f"error {100 * np.median(rel):.2f} %, within 5 %: {100 * np.mean(rel < 0.05):.1f} %",
        "",
        "| state channel | one-step MAE (validation) |",
        "|---|---|",
    ]
    lines += [f"| {c} | {v:.3f} |" for c, v in zip(spec.state, mae)]
    lines += [
        "",
        "| epoch | train loss | val loss | val L_pred | val L_energy |",
        "|---|---|---|---|---|",
    ]
    for h in res.history:
        lines.append(
            f"| {h['epoch']} | {h['train']['total']:.4f} | {h['val']['total']:.4f} | "
            f"{h['val']['pred']:.4f} | {h['val']['energy']:.4f} |"
        )
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
