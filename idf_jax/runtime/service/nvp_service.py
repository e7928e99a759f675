"""The NVP predictor behind POST /v1/nvp/predict, fed by a micro-batcher."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from ..._io import jsonable
from .batching import MicroBatcher
from .config import ServiceConfig
from .metrics import Metrics

if TYPE_CHECKING:
    from ...nvp import NVPPredictor

__all__ = ["NVPService", "nvp_importable"]

_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def nvp_importable() -> bool:
    """Whether `idf_jax.nvp` (and so the packaged default checkpoint) is installed."""
    try:
        from ...nvp import NVPPredictor  # noqa: F401
    except ImportError:
        return False
    return True


class NVPService:
    """One `NVPPredictor` and the micro-batcher that gathers concurrent requests into one
    vmapped call; predictions leave it as JSON bytes (encoded in the batch thread).

    Args:
        path: an NVP checkpoint, or "default" (the one packaged with `idf_jax.nvp`).
        config: the service's configuration (limits, batch size and wait).
        metrics: counts the predictions and the batch sizes.
    """

    def __init__(self, path: str, config: ServiceConfig, metrics: Metrics):
        from ...nvp import NVPPredictor
        from ...nvp.data import _records_fast

        self._records_fast = _records_fast
        self.predictor: NVPPredictor = NVPPredictor(model_path=None if path == "default" else path)
        self.limits = config.limits
        p = self.predictor
        # the fast path only takes what the validated route would accept unchanged
        self.fast_min = max(p.min_history, 1)
        self.fast_ok = all(isinstance(c, str) and 1 <= len(c) <= 200 for c in p.channels)

        def on_batch(n: int) -> None:
            metrics.batch_size.observe(n)
            metrics.predictions.inc(n)

        # predict_batch pads to a power of two itself (one compiled shape per size)
        self.batcher = MicroBatcher(
            self._predict_batch,
            max_size=config.batch_max_size,
            max_wait_s=config.batch_max_wait_ms / 1000.0,
            pad_pow2=False,
            on_batch=on_batch,
        )

    async def submit(self, x: np.ndarray) -> bytes:
        """One validated (T, C) array -> its prediction as JSON bytes."""
        return await self.batcher.submit(x)

    def warm_up(self) -> None:
        """Compile every batch shape the batcher can send (powers of two up to max_size), so
        no request waits for a compilation."""
        p = self.predictor
        h = np.ones((max(p.min_history, 1), len(p.channels)))
        size = 1
        while True:
            p.predict_batch([h] * size)
            if size >= self.batcher.max_size:
                break
            size *= 2
        p.clear_cache()

    def _predict_batch(self, histories: list[np.ndarray]) -> list[bytes]:
        """Predictions as JSON bytes, one per series (encoded here, in the batch thread).

        A batch is cut into power-of-two chunks (a remainder under 8 is one chunk, padded
        by `predict_batch`), so 33 series cost a call of 32 and one of 1 rather than one
        call padded to 64: the model's cost grows with the padded size."""
        out: list[dict] = []
        i, n = 0, len(histories)
        while i < n:
            left = n - i
            size = left if left < 8 else 1 << (left.bit_length() - 1)
            out.extend(self.predictor.predict_batch(histories[i : i + size]))
            i += size
        return [orjson.dumps(o, default=jsonable, option=_JSON_OPTIONS) for o in out]

    def parse_fast(self, body: bytes) -> np.ndarray | None:
        """The (T, C) array of a canonical request body `{"history": [{ch: number, ...}, ...]}`
        with exactly the model's channels, finite plain numbers, and a length within
        [min_history, limits.max_history]; None for anything else (or any doubt), which the
        validated route then answers (with the same result, or the error naming the field)."""
        if not self.fast_ok:
            return None
        try:
            req: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if type(req) is not dict or len(req) != 1:
            return None
        history = req.get("history")
        if type(history) is not list or not (
            self.fast_min <= len(history) <= self.limits.max_history
        ):
            return None
        x = self._records_fast(history, self.predictor.channels)
        return None if x is None else x[-self.predictor.window :]

    def to_array(self, history: Sequence[Mapping[str, Any]], where: str) -> np.ndarray:
        """(T, C) float64 array in the model's channel order; ValueError naming the problem."""
        chans = self.predictor.channels
        want = set(chans)
        for i, rec in enumerate(history):
            if rec.keys() != want:
                missing, extra = sorted(want - rec.keys()), sorted(rec.keys() - want)
                raise ValueError(
                    f"{where} record {i}: channels do not match the model's {list(chans)}"
                    + (f"; missing {missing}" if missing else "")
                    + (f"; extra {extra}" if extra else "")
                )
        x = np.array([[rec[c] for c in chans] for rec in history], dtype=np.float64)
        if x.shape[0] < self.predictor.min_history:
            raise ValueError(
                f"{where} has {x.shape[0]} steps; this model needs at least "
                f"{self.predictor.min_history}"
            )
        return x

    async def predict(
        self, histories: Sequence[Sequence[Mapping[str, Any]]], where: str
    ) -> list[bytes]:
        """Predictions (JSON bytes) of validated histories; `where` names the field in errors."""
        arrays = [
            self.to_array(h, where if len(histories) == 1 else f"{where}.{i}")
            for i, h in enumerate(histories)
        ]
        return await self.batcher.submit_many(arrays)

    async def close(self) -> None:
        """Finish the pending batches and stop the batcher."""
        await self.batcher.close()
