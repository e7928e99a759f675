"""The `train` job kind: fit an NVP forecaster in a worker, as `idf train` does.

`check_train(payload, state_dir)` is the cheap check in the submitting process (the request
model, the `nvp` keys, the data path inside the state directory); `run_train` runs in a
worker: it reads the CSV telemetry (`data`, relative to the state directory) or writes the
given `rows` to a CSV first, so both go through `runtime.training.plan_training` and the
same checks (time order, sampling interval, units), trains with `runtime.training.
run_training`, and moves the finished checkpoint to `<state dir>/models/<name>.ckpt` with
one atomic rename: a training that fails, is cancelled or runs over its budget leaves the
previous checkpoint of that name as it was. Progress events count training steps; a
cancelled job stops at its next step.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..jobs import JobError

__all__ = ["MODELS_DIR", "check_train", "run_train"]

MODELS_DIR = "models"
_PARTIAL = ".partial"  # trainings in progress: models/.partial/<tmp>/
_STALE_PARTIAL_S = 24 * 3600.0  # a partial folder this old belongs to a killed worker


def check_train(payload: dict[str, Any], state_dir: Path | None) -> Any:
    """The validated `TrainRequest` of `payload`; `JobError` (422) naming the problem."""
    from ...training import RUN_KEYS
    from ..schemas import TrainRequest
    from .tasks import validated

    req = validated(TrainRequest, payload)
    if (req.data is None) == (req.rows is None):
        raise JobError(
            "data", "give exactly one of `data` (a CSV in the state directory) or `rows`"
        )
    for key in ("checkpoint", "resume"):
        if key in req.nvp:
            raise JobError(f"nvp.{key}", "set by the service: name the checkpoint with `name`")
    try:
        from ....nvp import NVPConfig, TrainConfig
    except ImportError as e:
        raise JobError("kind", f"NVP training is not part of this build: {e}", 503) from e
    import dataclasses

    known = (
        {f.name for f in dataclasses.fields(NVPConfig)}
        | {f.name for f in dataclasses.fields(TrainConfig)}
        | RUN_KEYS
    ) - {"checkpoint", "resume"}
    unknown = sorted(set(req.nvp) - known)
    if unknown:
        raise JobError("nvp", f"unknown nvp config keys {unknown}; known: {sorted(known)}")
    channels = req.nvp.get("channels")
    if not (
        isinstance(channels, list)
        and channels
        and all(isinstance(c, str) and c for c in channels)
        and len(set(channels)) == len(channels)
    ):
        raise JobError("nvp.channels", "must list distinct telemetry columns, e.g. [cpu, power]")
    if req.rows is not None:
        _check_rows(req.rows, channels)
    elif state_dir is not None:
        data_path(state_dir, req.data)
    return req


def data_path(state_dir: Path, data: str) -> Path:
    """`data` resolved inside the state directory; `JobError` when it leaves it or is missing."""
    root = Path(state_dir).resolve()
    path = (root / data).resolve()
    if not path.is_relative_to(root):
        raise JobError("data", f"{data!r} is outside the state directory")
    if not path.exists():
        raise JobError("data", f"{data!r} does not exist in the state directory")
    return path


def _check_rows(rows: list[dict[str, Any]], channels: list[str]) -> None:
    keys = set(rows[0])
    for i, row in enumerate(rows):
        if set(row) != keys:
            raise JobError(f"rows.{i}", f"has keys {sorted(row)}; row 0 has {sorted(keys)}")
        for k, v in row.items():
            if isinstance(v, str) and k != "timestamp":
                raise JobError(f"rows.{i}.{k}", "must be a number (only `timestamp` may be text)")
    missing = sorted(set(channels) - keys)
    if missing:
        raise JobError("rows", f"the rows lack the channels {missing}")


def _write_rows(rows: list[dict[str, Any]], path: Path) -> None:
    cols = list(rows[0])
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)


def _sweep_partials(folder: Path) -> None:
    now = time.time()
    for p in folder.glob("*") if folder.exists() else ():
        try:
            if now - p.stat().st_mtime > _STALE_PARTIAL_S:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            continue


def run_train(
    payload: dict[str, Any],
    state_dir: Path,
    emit: Callable[[dict[str, Any]], None],
    should_stop: Callable[[], bool],
) -> dict[str, Any]:
    """Run one train job (module doc); the JSON result."""
    from ...training import plan_training, run_training
    from .tasks import Cancelled

    req = check_train(payload, state_dir)
    models = Path(state_dir) / MODELS_DIR
    partial = models / _PARTIAL
    partial.mkdir(parents=True, exist_ok=True)
    _sweep_partials(partial)
    work = Path(tempfile.mkdtemp(prefix=f"{req.name}-", dir=partial))
    t0 = time.perf_counter()
    try:
        if req.rows is not None:
            data = work / "rows.csv"
            _write_rows(req.rows, data)
        else:
            data = data_path(state_dir, req.data)
        nvp_cfg = dict(req.nvp)
        try:
            plan = plan_training(nvp_cfg, data)
        except (ValueError, TypeError) as e:
            raise JobError("data" if req.rows is None else "rows", str(e)) from e
        last = [0.0]

        def on_step(done: int, total: int) -> None:
            if should_stop():
                raise Cancelled()
            now = time.monotonic()
            if now - last[0] > 0.1 or done >= total:
                last[0] = now
                emit({"type": "progress", "steps_done": int(done), "num_steps": int(total)})

        tmp_ckpt = work / "nvp.ckpt"
        with _reporting_progress(on_step):
            try:
                res = run_training(
                    plan,
                    checkpoint=str(tmp_ckpt),
                    progress=True,
                    extra_meta={"job": {"name": req.name, "rows": req.rows is not None}},
                )
            except (ValueError, FloatingPointError) as e:
                raise JobError("nvp", str(e)) from e
        if not tmp_ckpt.exists():
            raise JobError("nvp", "training ended without a checkpoint (no finite validation loss)")
        final = models / f"{req.name}.ckpt"
        os.replace(tmp_ckpt, final)  # one rename: the old checkpoint or the new one
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "name": req.name,
        "checkpoint": str(final),
        "channels": list(plan.model_cfg.channels),
        "series": len(plan.files) if req.rows is None else 1,
        "best_epoch": int(res.best_epoch),
        "best_val": float(res.best_val),
        "epochs_run": len(res.history),
        "history": [
            {"epoch": h["epoch"], "train": h["train"]["total"], "val": h["val"]["total"]}
            for h in res.history
        ],
        "interval_s": float(plan.series.interval_s),
        "elapsed_s": time.perf_counter() - t0,
    }


class _reporting_progress:
    """Within the block, `idf_jax.nvp.train`'s progress display reports each training step
    to `on_step(done, total)` instead of drawing on a terminal (a worker runs one job at a
    time, so the swap concerns this job only)."""

    def __init__(self, on_step: Callable[[int, int], None]):
        self.on_step = on_step

    def __enter__(self) -> None:
        from ....nvp import train as nvp_train

        on_step = self.on_step

        class StepReporter:
            def __init__(self, total: int, done: int = 0, **_: Any):
                self.total, self.done = int(total), int(done)

            def update(self, done: int | None = None, status: str | None = None) -> None:
                if done is not None:
                    self.done = int(done)
                    on_step(self.done, self.total)

            def close(self) -> None:
                pass

            def __enter__(self) -> StepReporter:
                return self

            def __exit__(self, *exc: Any) -> None:
                pass

        if not hasattr(nvp_train, "Progress"):
            raise RuntimeError("idf_jax.nvp.train no longer uses Progress: update train_task")
        self._module, self._saved = nvp_train, nvp_train.Progress
        setattr(nvp_train, "Progress", StepReporter)

    def __exit__(self, *exc: Any) -> None:
        setattr(self._module, "Progress", self._saved)
