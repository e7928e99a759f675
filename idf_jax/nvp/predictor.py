"""`NVPPredictor`: fast one-step inference from a self-contained checkpoint.

    nvp = NVPPredictor()                                  # the packaged default checkpoint
    p = nvp.predict_next(telemetry_history=[{'cpu': 0.75, 'power': 850, 'temp': 72}, ...])
    p['power'], p['interval']['power'], p['confidence'], p['energy_valid']

* The forecast is the conservation-projected Gaussian N(mu*, v*) (`model.forecast`).
* ``interval[ch]`` is the central 90% interval mu* -/+ 1.645 sqrt(v*).
* ``confidence`` = mean over channels of P(|y - mu*| < delta) under the forecast, with delta the
  channel's typical one-step change (std of one-step differences in the training data): the
  probability that the forecast error is smaller than a typical step.
* ``energy_valid``: the prediction satisfies dE = (P_in - P_out) dt to 1% of the gross energy
  flow (float64 check); None when the checkpoint's channels define no balance.
* Inputs are checked against the checkpoint's series metadata (`idf_jax.nvp.metadata`): a
  value outside its unit's physical range (negative power, utilisation above 1) is a
  ValueError; a value outside the training range by more than 10 % of its span is an
  extrapolation: the result then has ``in_range=False``, ``out_of_range=[channels]``,
  ``energy_valid=False`` and ``confidence=0.0`` (the forecast is not supported by the
  training data). Checkpoints without metadata skip both checks (``in_range`` is None).
* Histories shorter than the model window are left-padded and masked, longer ones use their last
  `window` steps, so one compiled program serves every length (no recompilation).
"""

from __future__ import annotations

import collections
import math
import os
from collections.abc import Iterable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import checkpoint as ckpt
from . import conservation
from .data import array_to_telemetry, records_to_array
from .loss import make_physics
from .metadata import check_physical, out_of_training_range
from .model import forecast

DEFAULT_CHECKPOINT = os.path.join(os.path.dirname(__file__), "checkpoints", "rack_default.ckpt")
Z90 = 1.6448536269514722
ENERGY_TOL = 0.01


class NVPPredictor:
    """Load a checkpoint once, compile once, predict many times.

    Args:
      model_path: path of an NVP checkpoint (default: the packaged `rack_default.ckpt`, trained
        by `experiments/nvp_default_checkpoint.py` on the simulator's one-server preset with
        channels cpu (0-1), power (W), temp (deg F)).
      cache_size: entries of the LRU cache of repeated windows (0 disables it).
    """

    def __init__(self, model_path: str | None = None, *, cache_size: int = 1024):
        path = DEFAULT_CHECKPOINT if model_path is None else os.fspath(model_path)
        model, cfg, norm, spec, header = ckpt.load(path)
        self.path, self.config, self.normalizer, self.balance_spec = path, cfg, norm, spec
        self.metadata = header.get("extra", {})
        self.series = ckpt.series_of(header)
        self.channels: tuple[str, ...] = cfg.channels
        self.window, self.min_history = cfg.window, cfg.min_history
        phys = make_physics(spec, cfg.channels)
        self._balance = phys.balance
        self._delta = norm.diff_std * norm.std
        self._model = model

        def one(y, mask):
            fc = forecast(model, phys.balance, norm, phys.util_idx, y, mask)
            return jnp.stack([fc.mean, fc.var, fc.mean_raw, fc.var_raw])

        self.forecast_fn = one  # pure: (window, C) float32 + (window,) bool -> (4, C)
        spec_y = jax.ShapeDtypeStruct((cfg.window, cfg.num_channels), jnp.float32)
        spec_m = jax.ShapeDtypeStruct((cfg.window,), jnp.bool_)
        self._one = jax.jit(one).lower(spec_y, spec_m).compile()
        self._batched: dict[int, object] = {}
        self._vone = jax.jit(jax.vmap(one))
        self._cache: collections.OrderedDict = collections.OrderedDict()
        self._cache_size = int(cache_size)
        self.cache_hits = 0
        self.cache_misses = 0

    # ------------------------------------------------------------------ input handling
    def _to_array(self, history) -> np.ndarray:
        if isinstance(history, np.ndarray):
            x = array_to_telemetry(history, self.channels)
        else:
            x, _ = records_to_array(history, self.channels)
        if x.shape[0] < self.min_history:
            raise ValueError(
                f"telemetry history has {x.shape[0]} steps; this model needs at "
                f"least {self.min_history}"
            )
        x = x[-self.window :]
        check_physical(self.series, x, self.channels)
        return x

    def _pad(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = x.shape[0]
        y = np.empty((self.window, x.shape[1]), np.float32)
        y[self.window - n :] = x
        y[: self.window - n] = x[0]
        mask = np.zeros(self.window, bool)
        mask[self.window - n :] = True
        return y, mask

    # ------------------------------------------------------------------ outputs
    def _result(self, out: np.ndarray, x: np.ndarray) -> dict:
        return self._results(out[None], [x])[0]

    def _results(self, out: np.ndarray, xs: Sequence[np.ndarray]) -> list[dict]:
        """Result dicts of n forecasts, `out` (n, 4, C), `last` (n, C): every number computed
        for the whole batch at once in float64 numpy; only the dicts are built per item."""
        last = np.stack([x[-1] for x in xs])
        oor = [out_of_training_range(self.series, x, self.channels) for x in xs]
        mean, var = out[:, 0].astype(np.float64), out[:, 1].astype(np.float64)
        sd = np.sqrt(np.maximum(var, 0.0))
        half = Z90 * sd
        lo, hi = (mean - half).tolist(), (mean + half).tolist()
        with np.errstate(divide="ignore", invalid="ignore"):
            z = self._delta / (sd * math.sqrt(2.0))
        conf = np.array([math.erf(v) for v in z.ravel().tolist()]).reshape(z.shape)
        conf = np.where(sd > 0, conf, 1.0).mean(axis=-1).tolist()
        if self._balance.defined:
            last = np.asarray(last, np.float64)
            rel = conservation.relative_residual(self._balance, mean, last)
            raw = conservation.relative_residual(
                self._balance, out[:, 2].astype(np.float64), last
            ).tolist()
            valid = (rel <= ENERGY_TOL).tolist()
            rel = rel.tolist()
        else:
            rel = raw = valid = [None] * len(out)
        chans = self.channels
        results = []
        for m, s, l, h, c, v, r, rr, bad in zip(
            mean.tolist(), sd.tolist(), lo, hi, conf, valid, rel, raw, oor
        ):
            res: dict = dict(zip(chans, m))
            res["std"] = dict(zip(chans, s))
            res["interval"] = dict(zip(chans, zip(l, h)))
            res["confidence"] = 0.0 if bad else c
            res["energy_valid"] = False if bad else v
            res["in_range"] = None if self.series is None else not bad
            res["out_of_range"] = list(bad)
            res["energy_residual"] = r
            res["energy_residual_raw"] = rr
            results.append(res)
        return results

    # ------------------------------------------------------------------ public API
    def predict_next(self, telemetry_history: Sequence[Mapping] | np.ndarray) -> dict:
        """Next state per channel plus `std`, `interval` (90%), `confidence`, `energy_valid`.

        `telemetry_history`: list of dicts with exactly the model's channels (oldest first), or
        a (T, C) array in channel order. Raises ValueError on missing / extra channels,
        non-numeric or non-finite values, or fewer than `min_history` steps.
        """
        x = self._to_array(telemetry_history)
        key = None
        if self._cache_size:
            key = x.tobytes()
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                self.cache_hits += 1
                return _copy(hit)
            self.cache_misses += 1
        y, mask = self._pad(x)
        out = np.asarray(self._one(y, mask))
        res = self._result(out, x)
        if key is not None:
            self._cache[key] = res
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return _copy(res)
        return res

    def predict_batch(self, histories: Sequence) -> list[dict]:
        """Predictions for many series in one vmapped call (batch padded to a power of two)."""
        histories = list(histories)
        if not histories:
            return []
        xs = [self._to_array(h) for h in histories]
        n = len(xs)
        size = 1 << (n - 1).bit_length()
        ys = np.empty((size, self.window, len(self.channels)), np.float32)
        ms = np.zeros((size, self.window), bool)
        for i, x in enumerate(xs):
            k = x.shape[0]  # left-pad with the first sample, masked (as `_pad`)
            ys[i, self.window - k :] = x
            ys[i, : self.window - k] = x[0]
            ms[i, self.window - k :] = True
        ys[n:], ms[n:] = ys[0], ms[0]
        out = np.asarray(self._vone(ys, ms))
        return self._results(out[:n], xs)

    def predict_array(self, history: np.ndarray) -> dict[str, np.ndarray]:
        """Array form for programs (EIL): mean, var, mean_raw, var_raw (C,) in channel order."""
        x = self._to_array(np.asarray(history, np.float64))
        y, mask = self._pad(x)
        out = np.asarray(self._one(y, mask), np.float64)
        return dict(mean=out[0], var=out[1], mean_raw=out[2], var_raw=out[3])

    def stream(self, samples: Iterable[Mapping]):
        """Yield, for each arriving sample, the forecast of the next one (None until the history
        holds `min_history` samples). The window is kept incrementally (a bounded deque)."""
        buf: collections.deque = collections.deque(maxlen=self.window)
        for i, rec in enumerate(samples):
            row, _ = records_to_array([rec], self.channels)
            buf.append(row[0])
            if len(buf) < self.min_history:
                yield None
                continue
            try:
                yield self.predict_next(np.stack(buf))
            except ValueError as e:
                raise ValueError(f"stream sample {i}: {e}") from None

    def clear_cache(self) -> None:
        self._cache.clear()
        self.cache_hits = self.cache_misses = 0


def _copy(res: dict) -> dict:
    out = dict(res)
    out["std"] = dict(res["std"])
    out["interval"] = dict(res["interval"])
    out["out_of_range"] = list(res["out_of_range"])
    return out
