"""Training: optax AdamW with linear warm-up, cosine decay and global-norm clipping.

`train(...)` fits an `NVPModel` on one-step windows of the training series, evaluates the loss
on the validation series after every epoch, stops early after `patience` epochs without
improvement, keeps the best model in a self-contained checkpoint (`checkpoint.save`), writes a
resumable training state (`<checkpoint>.state`) after every epoch, and gives identical results
for identical seeds (batch order and history-length augmentation are keyed by seed and step).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import time
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._io import atomic_write_bytes
from .._progress import Progress
from . import checkpoint as ckpt
from . import data as nvp_data
from .loss import LossWeights, loss_terms, make_physics
from .metadata import SeriesMeta
from .model import Normalizer, NVPConfig, NVPModel, fit_normalizer


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    warmup_frac: float = 0.05
    clip_norm: float = 1.0
    patience: int = 6
    seed: int = 0
    short_history_frac: float = 0.25  # share of training windows shortened at random (masking)
    weights: tuple[float, float, float] = (1.0, 0.1, 1e-3)  # l1 energy, l2 entropy, l3 diffusion
    max_epoch_windows: int | None = None  # subsample this many windows per epoch (None: all)
    ridge_init: bool = True  # linear AR path = closed-form ridge fit, then frozen (see below)
    calibrate: bool = True  # scale predictive variances to 90% coverage on validation
    residual_scale: bool = True  # heads and L_pred in units of the linear path's residual std
    lin_head_steps: int = 2000  # Adam steps fitting the correction MLP (NVPConfig.lin_head > 0)

    def __post_init__(self):
        for name in ("epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if not self.learning_rate > 0 or self.weight_decay < 0 or not self.clip_norm > 0:
            raise ValueError("learning_rate and clip_norm must be > 0, weight_decay >= 0")


class TrainResult(NamedTuple):
    model: NVPModel
    config: NVPConfig
    normalizer: Normalizer
    history: list[dict]
    best_epoch: int
    best_val: float
    checkpoint: str | None


def _batches(n: int, batch: int, key, limit: int | None):
    perm = np.asarray(jax.random.permutation(key, n))
    if limit is not None:
        perm = perm[:limit]
    nb = len(perm) // batch
    if nb == 0:
        raise ValueError(f"fewer training windows ({n}) than one batch ({batch})")
    return perm[: nb * batch].reshape(nb, batch)


def train(
    train_series: list[np.ndarray],
    val_series: list[np.ndarray],
    model_cfg: NVPConfig,
    spec: dict | None = None,
    cfg: TrainConfig = TrainConfig(),
    *,
    checkpoint: str | None = None,
    resume: bool = False,
    progress: bool = True,
    extra_meta: dict | None = None,
    stop_after: int | None = None,
    series: SeriesMeta | None = None,
) -> TrainResult:
    """Fit NVP on all one-step windows of the (T, C) training series; returns the best model
    (by validation loss on the windows of `val_series`) and the per-epoch history.

    `series`: the units, sampling interval and controls of the data; the checkpoint stores
    them with the training ranges measured here, so the model is refused for data in other
    units or at another interval (`idf_jax.nvp.metadata`). Control channels (the last
    channels, in the lead layout of `idf_jax.nvp.control_inputs`) are inputs only: they
    are not scored by ``L_pred``."""
    channels = model_cfg.channels
    train_series = [nvp_data.array_to_telemetry(s, channels) for s in train_series]
    if series is not None:
        series = SeriesMeta.from_data(
            train_series,
            channels,
            series.units,
            series.interval_s,
            controls=series.controls,
            conditions=series.conditions,
            defaults=series.defaults,
        )
    val_series = [nvp_data.array_to_telemetry(s, channels) for s in val_series]
    w, mh = model_cfg.window, model_cfg.min_history
    tr = nvp_data.concat_windows(nvp_data.windows(s, w, min_history=mh) for s in train_series)
    va = nvp_data.concat_windows(nvp_data.windows(s, w, min_history=mh) for s in val_series)
    norm = fit_normalizer(train_series, make_physics(spec, channels).balance)
    target_mask = None
    if series is not None and series.controls:
        ns = len(channels) - len(series.controls)
        if tuple(channels[ns:]) != tuple(series.controls):
            raise ValueError(
                f"control channels {list(series.controls)} must be the last channels of "
                f"{list(channels)}"
            )
        target_mask = np.arange(len(channels)) < ns
    return train_windows(
        tr,
        va,
        norm,
        model_cfg,
        spec,
        cfg,
        checkpoint=checkpoint,
        resume=resume,
        progress=progress,
        extra_meta=extra_meta,
        stop_after=stop_after,
        series=series,
        target_mask=target_mask,
    )


def train_windows(
    train_w,
    val_w,
    norm: Normalizer,
    model_cfg: NVPConfig,
    spec: dict | None,
    cfg: TrainConfig = TrainConfig(),
    *,
    checkpoint: str | None = None,
    resume: bool = False,
    progress: bool = True,
    extra_meta: dict | None = None,
    stop_after: int | None = None,
    target_mask: np.ndarray | None = None,
    series: SeriesMeta | None = None,
) -> TrainResult:
    """Fit NVP on pre-cut windows ``(inputs (N, L, C), masks (N, L), targets (N, C))``
    with normalisation `norm` (fitted on training data only).

    `resume=True` continues from `<checkpoint>.state` (same data and TrainConfig give the same
    result as an uninterrupted run); `stop_after=k` ends this call after k epochs, as if the
    process were stopped (the state file allows resuming). `target_mask` (C,) bool: channels
    scored by ``L_pred`` (None: all; see `loss.loss_terms`)."""
    channels = model_cfg.channels
    phys = make_physics(spec, channels)
    w = model_cfg.window
    (xs, ms, ts), (xv, mv, tv) = train_w, val_w
    for name, arr in (("training", xs), ("validation", xv)):
        if arr.ndim != 3 or arr.shape[1:] != (w, len(channels)):
            raise ValueError(f"{name} windows must be (N, {w}, {len(channels)}), got {arr.shape}")
    xs, ts, xv, tv = (a.astype(np.float32) for a in (xs, ts, xv, tv))
    weights = LossWeights(*cfg.weights)

    n_epoch = len(xs) if cfg.max_epoch_windows is None else min(len(xs), cfg.max_epoch_windows)
    steps_per_epoch = n_epoch // cfg.batch_size
    total = steps_per_epoch * cfg.epochs
    sched = optax.warmup_cosine_decay_schedule(
        0.0,
        cfg.learning_rate,
        max(1, int(cfg.warmup_frac * total)),
        max(total, 2),
        end_value=cfg.learning_rate * 0.02,
    )
    adamw = optax.chain(
        optax.clip_by_global_norm(cfg.clip_norm), optax.adamw(sched, weight_decay=cfg.weight_decay)
    )

    root = jax.random.key(cfg.seed)
    model = NVPModel(model_cfg, key=jax.random.fold_in(root, 0))
    if cfg.ridge_init:
        model = ridge_init(model, norm, (xs, ms, ts), (xv, mv, tv))
        if cfg.residual_scale:
            norm = norm._replace(res_std=linear_residual_std(model, norm, (xs, ms, ts)))
        labels = jax.tree.map(lambda _: "train", eqx.filter(model, eqx.is_inexact_array))
        labels = eqx.tree_at(lambda m: (m.skip.weight, m.skip.bias), labels, ("freeze", "freeze"))
        if model.lin_mlp is not None:  # stage 2: the correction MLP, then frozen as well
            model = fit_lin_head(
                model, norm, (xs, ms, ts), (xv, mv, tv), steps=cfg.lin_head_steps, seed=cfg.seed
            )
            labels = eqx.tree_at(
                lambda m: m.lin_mlp, labels, jax.tree.map(lambda _: "freeze", labels.lin_mlp)
            )
        opt = optax.multi_transform(
            {"train": adamw, "freeze": optax.set_to_zero()}, lambda _: labels
        )  # labels is a (callable) Module
    else:
        opt = adamw
    opt_state = opt.init(eqx.filter(model, eqx.is_inexact_array))
    start_epoch, best_val, best_epoch, bad, history = 0, np.inf, -1, 0, []
    best_model = model
    state_path = None if checkpoint is None else checkpoint + ".state"
    if resume and state_path and os.path.exists(state_path):
        model, opt_state, best_model, meta = _load_state(state_path, model, opt_state)
        start_epoch, best_val, best_epoch, bad, history = (
            meta["epoch"],
            meta["best_val"],
            meta["best_epoch"],
            meta["bad"],
            meta["history"],
        )

    @eqx.filter_jit
    def train_step(model, opt_state, y, mask, target):
        def f(m):
            terms = loss_terms(m, phys, norm, y, mask, target, weights, target_mask)
            return terms["total"], terms

        (_, terms), grads = eqx.filter_value_and_grad(f, has_aux=True)(model)
        updates, opt_state = opt.update(grads, opt_state, eqx.filter(model, eqx.is_inexact_array))
        return eqx.apply_updates(model, updates), opt_state, terms

    @eqx.filter_jit
    def eval_step(model, y, mask, target):
        return loss_terms(model, phys, norm, y, mask, target, weights, target_mask)

    def evaluate(model):  # the whole validation set in one call (one compiled shape)
        return {k: float(v) for k, v in eval_step(model, xv, mv, tv).items()}

    short_min = model_cfg.min_history
    pos = np.arange(w)
    t0 = time.perf_counter()
    bar = Progress(
        cfg.epochs * steps_per_epoch,
        start_epoch * steps_per_epoch,
        label="NVP train",
        status="",
        enabled=progress,
    )
    with bar:
        for epoch in range(start_epoch, cfg.epochs):
            ekey = jax.random.fold_in(root, 1000 + epoch)
            order = _batches(len(xs), cfg.batch_size, ekey, cfg.max_epoch_windows)
            rng = np.random.default_rng([cfg.seed, epoch])
            sums = {}
            for bi, idx in enumerate(order):
                mask = ms[idx]
                shorten = rng.random(len(idx)) < cfg.short_history_frac
                lengths = rng.integers(short_min, w + 1, size=len(idx))
                keep = pos[None, :] >= (w - lengths)[:, None]
                mask = np.where(shorten[:, None], mask & keep, mask)
                model, opt_state, terms = train_step(model, opt_state, xs[idx], mask, ts[idx])
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + v
                bar.update(epoch * steps_per_epoch + bi + 1)
            train_terms = {k: float(v) / len(order) for k, v in sums.items()}
            if not np.isfinite(train_terms["total"]):
                raise FloatingPointError(f"training loss became non-finite at epoch {epoch}")
            val = evaluate(model)
            rec = dict(epoch=epoch, train=train_terms, val=val, elapsed_s=time.perf_counter() - t0)
            history.append(rec)
            if val["total"] < best_val - 1e-6:
                best_val, best_epoch, bad, best_model = val["total"], epoch, 0, model
                if checkpoint:
                    meta = dict(
                        best_epoch=epoch,
                        best_val=best_val,
                        train_config=_cfg_json(cfg),
                        **(extra_meta or {}),
                    )
                    ckpt.save(checkpoint, best_model, model_cfg, norm, spec, meta, series)
            else:
                bad += 1
            bar.update(
                status=f"epoch {epoch} train {train_terms['total']:.3f} val {val['total']:.3f}"
            )
            if state_path:
                _save_state(
                    state_path,
                    model,
                    opt_state,
                    best_model,
                    dict(
                        epoch=epoch + 1,
                        best_val=best_val,
                        best_epoch=best_epoch,
                        bad=bad,
                        history=history,
                    ),
                )
            if bad >= cfg.patience:
                break
            if stop_after is not None and epoch + 1 - start_epoch >= stop_after:
                break
    if cfg.calibrate:
        norm = calibrate(best_model, phys, norm, (xv, mv, tv))
        if checkpoint:
            meta = dict(
                best_epoch=best_epoch,
                best_val=float(best_val),
                train_config=_cfg_json(cfg),
                **(extra_meta or {}),
            )
            ckpt.save(checkpoint, best_model, model_cfg, norm, spec, meta, series)
    return TrainResult(
        best_model, model_cfg, norm, history, best_epoch, float(best_val), checkpoint
    )


def ridge_init(model: NVPModel, norm: Normalizer, train_w, val_w) -> NVPModel:
    """Set the linear autoregressive path to the closed-form ridge regression of the next
    normalised increment on the (full) normalised window, strength chosen on validation:

        W = argmin |Z W + b - (z_next - z_last)|^2 + lam N |W|^2

    The transformer and both heads are then trained on top of it (the path stays frozen), so
    the network learns what a linear autoregression cannot (nonlinearity, variance, physics),
    in units of the path's residual std (`linear_residual_std`, `TrainConfig.residual_scale`).
    """

    def design(w):
        x, m, t = w
        full = m.all(axis=1)
        x, t = x[full].astype(np.float64), t[full].astype(np.float64)
        z = (x - norm.mean) / norm.std
        d = (t - norm.mean) / norm.std - z[:, -1]
        return z.reshape(len(z), -1), d

    a, d = design(train_w)
    av, dv = design(val_w)
    if len(a) < 2 or len(av) < 1:
        return model
    am, dm = a.mean(0), d.mean(0)
    ac, dc = a - am, d - dm
    gram, rhs = ac.T @ ac, ac.T @ dc
    best = None
    for lam in (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0):
        w = np.linalg.solve(gram + lam * len(a) * np.eye(gram.shape[0]), rhs)
        err = np.mean(((av - am) @ w + dm - dv) ** 2)
        if best is None or err < best[0]:
            best = (err, w)
    w = best[1]
    b = dm - am @ w
    dtype = model.skip.weight.dtype
    return eqx.tree_at(
        lambda m: (m.skip.weight, m.skip.bias),
        model,
        (jnp.asarray(w.T, dtype), jnp.asarray(b, dtype)),
    )


def linear_residual_std(
    model: NVPModel, norm: Normalizer, train_w, rel_floor: float = 1e-3
) -> np.ndarray:
    """Per-channel std (normalised units) of what the linear AR path leaves unexplained on the
    full training windows, floored at `rel_floor` times the channel's one-step change
    (`norm.diff_std`) so that an (almost) exactly linear channel keeps a finite unit.

    Stored as `Normalizer.res_std`: the transformer's heads and L_pred then work in these units
    (`model.NVPModel`), i.e. the network models the standardised residual of the linear path.
    """
    x, m, t = train_w
    full = m.all(axis=1)
    x, t = x[full].astype(np.float64), t[full].astype(np.float64)
    floor = rel_floor * np.asarray(norm.diff_std, np.float64)
    if len(x) < 2:
        return np.maximum(np.ones_like(floor), floor)
    z = (x - norm.mean) / norm.std
    d = (t - norm.mean) / norm.std - z[:, -1]
    w = np.asarray(model.skip.weight, np.float64)
    b = np.asarray(model.skip.bias, np.float64)
    r = d - (z.reshape(len(z), -1) @ w.T + b)
    return np.maximum(np.sqrt(np.mean(r**2, axis=0)), floor)


def fit_lin_head(
    model: NVPModel,
    norm: Normalizer,
    train_w,
    val_w,
    *,
    steps: int = 2000,
    batch: int = 256,
    lr: float = 3e-3,
    seed: int = 0,
) -> NVPModel:
    """Fit the correction MLP over the linear forecast (`NVPModel.lin_mlp`) to what the frozen
    linear path leaves over, in units of `norm.res_std`: Adam with cosine decay on the Huber
    loss (delta 1; robust to the rare unforecastable jumps, e.g. the economiser switching on)
    over the full training windows. Kept only if it lowers the validation Huber loss of the
    linear path alone; otherwise the MLP stays zero (the model is the linear path)."""
    s = np.ones(len(norm.std)) if norm.res_std is None else np.asarray(norm.res_std)

    def design(w):
        x, m, t = w
        full = m.all(axis=1)
        x, t = x[full].astype(np.float64), t[full].astype(np.float64)
        z = (x - norm.mean) / norm.std
        w_, b_ = np.asarray(model.skip.weight, np.float64), np.asarray(model.skip.bias)
        lin = z[:, -1] + z.reshape(len(z), -1) @ w_.T + b_
        r = ((t - norm.mean) / norm.std - lin) / s
        return jnp.asarray(lin, jnp.float32), jnp.asarray(r, jnp.float32)

    a, r = design(train_w)
    av, rv = design(val_w)
    if len(a) < batch or len(av) < 1 or steps < 1:
        return model
    opt = optax.adam(optax.cosine_decay_schedule(lr, steps, 0.02))

    params, static = eqx.partition(model.lin_mlp, eqx.is_inexact_array)

    def huber(p, x, y):
        return jnp.mean(optax.huber_loss(jax.vmap(eqx.combine(p, static))(x) - y, delta=1.0))

    @jax.jit
    def run(p, key):
        def body(carry, k):
            p, st = carry
            i = jax.random.randint(k, (batch,), 0, a.shape[0])
            u, st = opt.update(jax.grad(huber)(p, a[i], r[i]), st, p)
            return (optax.apply_updates(p, u), st), None

        (p, _), _ = jax.lax.scan(body, (p, opt.init(p)), jax.random.split(key, steps))
        return p

    fitted = run(params, jax.random.fold_in(jax.random.key(seed), 0x11A))
    if not float(huber(fitted, av, rv)) < float(huber(params, av, rv)):
        return model
    return eqx.tree_at(lambda m: m.lin_mlp, model, eqx.combine(fitted, static))


def calibrate(model: NVPModel, phys, norm: Normalizer, val_w, level: float = 0.9) -> Normalizer:
    """Per-channel variance scale s^2 so that the central `level` Gaussian interval of the
    projected forecast covers exactly `level` of the validation targets:
    s = quantile_level(|y - mu*| / sd*) / z_level."""
    from scipy.stats import norm as gauss

    from .model import forecast

    xv, mv, tv = val_w
    base = norm._replace(var_scale=None)
    fn = jax.jit(jax.vmap(lambda y, m: forecast(model, phys.balance, base, phys.util_idx, y, m)))
    fc = fn(jnp.asarray(xv, jnp.float32), jnp.asarray(mv))
    mean, var = np.asarray(fc.mean, np.float64), np.asarray(fc.var, np.float64)
    r = np.abs(np.asarray(tv, np.float64) - mean) / np.sqrt(np.maximum(var, 1e-30))
    s = np.quantile(r, level, axis=0) / gauss.ppf(0.5 + level / 2)
    s = np.where(np.isfinite(s) & (s > 0), s, 1.0)
    return norm._replace(var_scale=s**2)


def _cfg_json(cfg: TrainConfig) -> dict:
    d = dataclasses.asdict(cfg)
    d["weights"] = list(cfg.weights)
    return d


def _save_state(path, model, opt_state, best_model, meta):
    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, (model, opt_state, best_model))
    head = json.dumps(meta).encode()
    atomic_write_bytes(path, len(head).to_bytes(8, "little") + head + buf.getvalue(), mode=0o644)


def _load_state(path, model, opt_state):
    with open(path, "rb") as f:
        raw = f.read()
    try:
        n = int.from_bytes(raw[:8], "little")
        meta = json.loads(raw[8 : 8 + n])
        model, opt_state, best = eqx.tree_deserialise_leaves(
            io.BytesIO(raw[8 + n :]), (model, opt_state, model)
        )
    except Exception as e:
        raise ValueError(f"cannot resume from {path}: corrupt or mismatched state ({e})") from None
    return model, opt_state, best, meta
