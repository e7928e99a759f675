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
import numpy as np
import optax

from . import checkpoint as ckpt
from . import data as nvp_data
from .loss import LossWeights, loss_terms, make_physics
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


def train(train_series: list[np.ndarray], val_series: list[np.ndarray],
          model_cfg: NVPConfig, spec: dict | None = None, cfg: TrainConfig = TrainConfig(),
          *, checkpoint: str | None = None, resume: bool = False, progress: bool = True,
          extra_meta: dict | None = None, stop_after: int | None = None) -> TrainResult:
    """Fit NVP on all one-step windows of the (T, C) training series; returns the best model
    (by validation loss on the windows of `val_series`) and the per-epoch history."""
    channels = model_cfg.channels
    train_series = [nvp_data.array_to_telemetry(s, channels) for s in train_series]
    val_series = [nvp_data.array_to_telemetry(s, channels) for s in val_series]
    w, mh = model_cfg.window, model_cfg.min_history
    tr = nvp_data.concat_windows(nvp_data.windows(s, w, min_history=mh) for s in train_series)
    va = nvp_data.concat_windows(nvp_data.windows(s, w, min_history=mh) for s in val_series)
    norm = fit_normalizer(train_series, make_physics(spec, channels).balance)
    return train_windows(tr, va, norm, model_cfg, spec, cfg, checkpoint=checkpoint,
                         resume=resume, progress=progress, extra_meta=extra_meta,
                         stop_after=stop_after)


def train_windows(train_w, val_w, norm: Normalizer, model_cfg: NVPConfig, spec: dict | None,
                  cfg: TrainConfig = TrainConfig(), *, checkpoint: str | None = None,
                  resume: bool = False, progress: bool = True,
                  extra_meta: dict | None = None, stop_after: int | None = None) -> TrainResult:
    """Fit NVP on pre-cut windows ``(inputs (N, L, C), masks (N, L), targets (N, C))``
    with normalisation `norm` (fitted on training data only).

    `resume=True` continues from `<checkpoint>.state` (same data and TrainConfig give the same
    result as an uninterrupted run); `stop_after=k` ends this call after k epochs, as if the
    process were stopped (the state file allows resuming)."""
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
        0.0, cfg.learning_rate, max(1, int(cfg.warmup_frac * total)), max(total, 2),
        end_value=cfg.learning_rate * 0.02)
    opt = optax.chain(optax.clip_by_global_norm(cfg.clip_norm),
                      optax.adamw(sched, weight_decay=cfg.weight_decay))

    root = jax.random.key(cfg.seed)
    model = NVPModel(model_cfg, key=jax.random.fold_in(root, 0))
    opt_state = opt.init(eqx.filter(model, eqx.is_inexact_array))
    start_epoch, best_val, best_epoch, bad, history = 0, np.inf, -1, 0, []
    best_model = model
    state_path = None if checkpoint is None else checkpoint + ".state"
    if resume and state_path and os.path.exists(state_path):
        model, opt_state, best_model, meta = _load_state(state_path, model, opt_state)
        start_epoch, best_val, best_epoch, bad, history = (
            meta["epoch"], meta["best_val"], meta["best_epoch"], meta["bad"], meta["history"])

    @eqx.filter_jit
    def train_step(model, opt_state, y, mask, target):
        def f(m):
            terms = loss_terms(m, phys, norm, y, mask, target, weights)
            return terms["total"], terms
        (_, terms), grads = eqx.filter_value_and_grad(f, has_aux=True)(model)
        updates, opt_state = opt.update(grads, opt_state, eqx.filter(model, eqx.is_inexact_array))
        return eqx.apply_updates(model, updates), opt_state, terms

    @eqx.filter_jit
    def eval_step(model, y, mask, target):
        return loss_terms(model, phys, norm, y, mask, target, weights)

    def evaluate(model):  # the whole validation set in one call (one compiled shape)
        return {k: float(v) for k, v in eval_step(model, xv, mv, tv).items()}

    short_min = model_cfg.min_history
    pos = np.arange(w)
    t0 = time.perf_counter()
    bar = _Progress(cfg.epochs, steps_per_epoch, enabled=progress)
    with bar:
        bar.advance_to(start_epoch)
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
                bar.step(epoch, bi)
            train_terms = {k: float(v) / len(order) for k, v in sums.items()}
            if not np.isfinite(train_terms["total"]):
                raise FloatingPointError(f"training loss became non-finite at epoch {epoch}")
            val = evaluate(model)
            rec = dict(epoch=epoch, train=train_terms, val=val,
                       elapsed_s=time.perf_counter() - t0)
            history.append(rec)
            if val["total"] < best_val - 1e-6:
                best_val, best_epoch, bad, best_model = val["total"], epoch, 0, model
                if checkpoint:
                    meta = dict(best_epoch=epoch, best_val=best_val, train_config=_cfg_json(cfg),
                                **(extra_meta or {}))
                    ckpt.save(checkpoint, best_model, model_cfg, norm, spec, meta)
            else:
                bad += 1
            bar.epoch_done(epoch, train_terms["total"], val["total"])
            if state_path:
                _save_state(state_path, model, opt_state, best_model, dict(
                    epoch=epoch + 1, best_val=best_val, best_epoch=best_epoch, bad=bad,
                    history=history))
            if bad >= cfg.patience:
                break
            if stop_after is not None and epoch + 1 - start_epoch >= stop_after:
                break
    return TrainResult(best_model, model_cfg, norm, history, best_epoch, float(best_val),
                       checkpoint)


def _cfg_json(cfg: TrainConfig) -> dict:
    d = dataclasses.asdict(cfg)
    d["weights"] = list(cfg.weights)
    return d


def _save_state(path, model, opt_state, best_model, meta):
    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, (model, opt_state, best_model))
    head = json.dumps(meta).encode()
    ckpt.atomic_write(path, len(head).to_bytes(8, "little") + head + buf.getvalue())


def _load_state(path, model, opt_state):
    with open(path, "rb") as f:
        raw = f.read()
    try:
        n = int.from_bytes(raw[:8], "little")
        meta = json.loads(raw[8:8 + n])
        model, opt_state, best = eqx.tree_deserialise_leaves(
            io.BytesIO(raw[8 + n:]), (model, opt_state, model))
    except Exception as e:
        raise ValueError(f"cannot resume from {path}: corrupt or mismatched state ({e})") from None
    return model, opt_state, best, meta


class _Progress:
    """A rich progress bar over all training steps (silent when disabled)."""

    def __init__(self, epochs, steps, enabled):
        self.enabled, self.epochs, self.steps = enabled, epochs, steps
        self._p = None

    def __enter__(self):
        if self.enabled:
            from rich.progress import (
                BarColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            self._p = Progress(TextColumn("NVP train"), BarColumn(),
                               TextColumn("{task.fields[msg]}"),
                               TimeElapsedColumn(), TimeRemainingColumn(), transient=False)
            self._p.__enter__()
            self._task = self._p.add_task("train", total=self.epochs * self.steps, msg="")
        return self

    def __exit__(self, *exc):
        if self._p is not None:
            self._p.__exit__(*exc)

    def advance_to(self, epoch):
        if self._p is not None:
            self._p.update(self._task, completed=epoch * self.steps)

    def step(self, epoch, bi):
        if self._p is not None:
            self._p.update(self._task, completed=epoch * self.steps + bi + 1)

    def epoch_done(self, epoch, tr, va):
        if self._p is not None:
            self._p.update(self._task, msg=f"epoch {epoch} train {tr:.3f} val {va:.3f}")
