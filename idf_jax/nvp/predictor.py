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
* Control inputs (`idf_jax.nvp.control_inputs`): a checkpoint whose series metadata marks
  channels as controls (the packaged one: ``setpoint``, the supply-air setpoint in °F)
  forecasts conditioned on their values over the forecast interval::

      p = nvp.predict_next(history, controls={'setpoint': 69.8})       # 21 °C
      f = nvp.forecast(history, controls={'setpoint': [69.8] * 12 + [75.2] * 12}, horizon=24)

  `channels` are the forecast (state) channels, `controls` the inputs. History records may
  carry the controls too (each record: the control applied over the interval it closes);
  a control not passed is held at its last history value, else taken from the checkpoint's
  documented default (`SeriesMeta.defaults`, 18 °C for the packaged model) and listed in
  the result's ``assumed_controls``. The controls are part of the traced input array, so a
  new setpoint never recompiles. A checkpoint without a setpoint input (trained at a fixed
  setpoint, `SeriesMeta.conditions`) refuses ``controls={'setpoint': v}`` for any other v.
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
from . import conservation, control_inputs
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
        channels cpu (0-1), power (W), temp (deg F) and the control input setpoint (deg F)).
      cache_size: entries of the LRU cache of repeated windows (0 disables it).
    """

    def __init__(self, model_path: str | None = None, *, cache_size: int = 1024):
        path = DEFAULT_CHECKPOINT if model_path is None else os.fspath(model_path)
        model, cfg, norm, spec, header = ckpt.load(path)
        self.path, self.config, self.normalizer, self.balance_spec = path, cfg, norm, spec
        self.metadata = header.get("extra", {})
        self.series = ckpt.series_of(header)
        self.model_channels: tuple[str, ...] = cfg.channels
        self.controls: tuple[str, ...] = () if self.series is None else self.series.controls
        ns = cfg.num_channels - len(self.controls)
        if tuple(cfg.channels[ns:]) != self.controls:
            raise ValueError(
                f"NVP checkpoint {path}: control inputs {list(self.controls)} must be the last "
                f"channels of the model, got {list(cfg.channels)}"
            )
        self.channels: tuple[str, ...] = tuple(cfg.channels[:ns])  # forecast (state) channels
        self._ns = ns
        self.window, self.min_history = cfg.window, cfg.min_history
        phys = make_physics(spec, cfg.channels)
        self._balance = phys.balance
        self._delta = (norm.diff_std * norm.std)[:ns]
        self._model = model
        ci = np.arange(ns, cfg.num_channels)

        def one(y, mask):
            fc = forecast(model, phys.balance, norm, phys.util_idx, y, mask)
            mean, var = fc.mean, fc.var
            if ci.size:  # the control of the forecast step is the one given, not predicted
                mean = mean.at[ci].set(y[-1, ci])
                var = var.at[ci].set(0.0)
            return jnp.stack([mean, var, fc.mean_raw, fc.var_raw])

        # pure: (window, C) float32 + (window,) bool -> (4, C), C = states + controls (lead
        # layout, `control_inputs`): row 0 / 1 the next state's mean / variance
        self.forecast_fn = one
        self.control_index = ci
        spec_y = jax.ShapeDtypeStruct((cfg.window, cfg.num_channels), jnp.float32)
        spec_m = jax.ShapeDtypeStruct((cfg.window,), jnp.bool_)
        self._one = jax.jit(one).lower(spec_y, spec_m).compile()
        self._vone = jax.jit(jax.vmap(one))
        self._roll = jax.jit(_rollout_fn(one, ci))
        self._cache: collections.OrderedDict = collections.OrderedDict()
        self._cache_size = int(cache_size)
        self.cache_hits = 0
        self.cache_misses = 0

    # ------------------------------------------------------------------ input handling
    def _split(self, history) -> tuple[np.ndarray, np.ndarray | None]:
        """(states (T, S), history controls (T, K) or None), checked, last `window` rows."""
        full = self.channels + self.controls
        if isinstance(history, np.ndarray):
            arr = np.asarray(history)
            chans = (
                full
                if (self.controls and arr.ndim == 2 and arr.shape[1] == len(full))
                else (self.channels)
            )
            x = array_to_telemetry(arr, chans)
        else:
            recs = history
            first = None
            if isinstance(recs, Sequence) and not isinstance(recs, (str, bytes)) and recs:
                first = recs[0]
            has = (
                bool(self.controls)
                and isinstance(first, Mapping)
                and all(c in first for c in self.controls)
            )
            x, _ = records_to_array(history, full if has else self.channels)
        if x.shape[0] < self.min_history:
            raise ValueError(
                f"telemetry history has {x.shape[0]} steps; this model needs at "
                f"least {self.min_history}"
            )
        x = x[-self.window :]
        check_physical(self.series, x, self.channels + self.controls[: x.shape[1] - self._ns])
        if x.shape[1] > self._ns:
            return x[:, : self._ns], x[:, self._ns :]
        return x, None

    def _to_array(self, history, controls=None) -> tuple[np.ndarray, list[str]]:
        """Lead-layout model input (T, C) and the controls assumed from the defaults."""
        x, hc = self._split(history)
        if not self.controls:
            control_inputs.resolve(self.series, controls, None)  # refuses what it cannot serve
            return x, []
        nxt, assumed = control_inputs.resolve(self.series, controls, hc)
        window = control_inputs.lead_layout(x, hc, nxt[0])
        check_physical(self.series, window[:, self._ns :], self.controls)
        return window, assumed

    def _pad(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = x.shape[0]
        y = np.empty((self.window, x.shape[1]), np.float32)
        y[self.window - n :] = x
        y[: self.window - n] = x[0]
        mask = np.zeros(self.window, bool)
        mask[self.window - n :] = True
        return y, mask

    # ------------------------------------------------------------------ outputs
    def _result(self, out: np.ndarray, x: np.ndarray, assumed: list[str]) -> dict:
        return self._results(out[None], [x], [assumed])[0]

    def _results(
        self, out: np.ndarray, xs: Sequence[np.ndarray], assumed: Sequence[list[str]]
    ) -> list[dict]:
        """Result dicts of n forecasts, `out` (n, 4, C), `last` (n, C): every number computed
        for the whole batch at once in float64 numpy; only the dicts are built per item."""
        ns = self._ns
        last = np.stack([x[-1] for x in xs])
        oor = [out_of_training_range(self.series, x, self.model_channels) for x in xs]
        mean, var = out[:, 0].astype(np.float64), out[:, 1].astype(np.float64)
        sd = np.sqrt(np.maximum(var, 0.0))[:, :ns]
        half = Z90 * sd
        ms = mean[:, :ns]
        lo, hi = (ms - half).tolist(), (ms + half).tolist()
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
        ctrl = last[:, ns:].tolist()
        results = []
        for m, s, l, h, c, v, r, rr, bad, u, a in zip(
            ms.tolist(), sd.tolist(), lo, hi, conf, valid, rel, raw, oor, ctrl, assumed
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
            if self.controls:
                res["controls"] = dict(zip(self.controls, u))
                res["assumed_controls"] = list(a)
            results.append(res)
        return results

    # ------------------------------------------------------------------ public API
    def predict_next(
        self,
        telemetry_history: Sequence[Mapping] | np.ndarray,
        controls: Mapping[str, float] | None = None,
    ) -> dict:
        """Next state per channel plus `std`, `interval` (90%), `confidence`, `energy_valid`.

        `telemetry_history`: list of dicts with exactly the model's channels (oldest first),
        optionally with its controls too, or a (T, C) / (T, C + K) array in channel order.
        `controls`: control -> value over the forecast interval (module doc; the result then
        also has ``controls`` and ``assumed_controls``). Raises ValueError on missing / extra
        channels, non-numeric or non-finite values, fewer than `min_history` steps, an
        unknown control, or a setpoint a fixed-setpoint checkpoint cannot serve.
        """
        x, assumed = self._to_array(telemetry_history, controls)
        key = None
        if self._cache_size:
            key = x.tobytes() + ",".join(assumed).encode()  # the same window, other flags
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                self.cache_hits += 1
                return _copy(hit)
            self.cache_misses += 1
        y, mask = self._pad(x)
        out = np.asarray(self._one(y, mask))
        res = self._result(out, x, assumed)
        if key is not None:
            self._cache[key] = res
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return _copy(res)
        return res

    def predict_batch(
        self, histories: Sequence, controls: Sequence[Mapping[str, float] | None] | None = None
    ) -> list[dict]:
        """Predictions for many series in one vmapped call (batch padded to a power of two);
        `controls`: one mapping (or None) per history."""
        histories = list(histories)
        if not histories:
            return []
        ctl = [None] * len(histories) if controls is None else list(controls)
        if len(ctl) != len(histories):
            raise ValueError(f"{len(ctl)} control mappings for {len(histories)} histories")
        parts = [self._to_array(h, c) for h, c in zip(histories, ctl)]
        xs = [p[0] for p in parts]
        n = len(xs)
        size = 1 << (n - 1).bit_length()
        c = len(self.model_channels)
        ys = np.empty((size, self.window, c), np.float32)
        ms = np.zeros((size, self.window), bool)
        for i, x in enumerate(xs):
            k = x.shape[0]  # left-pad with the first sample, masked (as `_pad`)
            ys[i, self.window - k :] = x
            ys[i, : self.window - k] = x[0]
            ms[i, self.window - k :] = True
        ys[n:], ms[n:] = ys[0], ms[0]
        out = np.asarray(self._vone(ys, ms))
        return self._results(out[:n], xs, [p[1] for p in parts])

    def predict_array(
        self, history: np.ndarray, controls: Mapping[str, float] | None = None
    ) -> dict[str, np.ndarray]:
        """Array form for programs (EIL): mean, var, mean_raw, var_raw (S,) of the forecast
        channels in channel order."""
        x, _ = self._to_array(np.asarray(history, np.float64), controls)
        y, mask = self._pad(x)
        out = np.asarray(self._one(y, mask), np.float64)[:, : self._ns]
        return dict(mean=out[0], var=out[1], mean_raw=out[2], var_raw=out[3])

    def forecast(
        self,
        history: Sequence[Mapping] | np.ndarray,
        controls: Mapping[str, object] | None = None,
        horizon: int = 1,
    ) -> dict:
        """Recursive forecast of the next `horizon` steps (each step's mean fed back), with
        the controls over the horizon: each a number (held) or `horizon` values, one per
        step (step h: the control applied over the interval ending at t + h). Returns
        ``mean`` / ``sd`` (horizon, S) arrays in channel order, ``channels``, ``controls``
        (horizon, K) and ``assumed_controls``. One compilation per horizon length; the
        control values are traced (no recompilation when they change)."""
        h = int(horizon)
        if h < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        x, hc = self._split(history)
        nxt, assumed = control_inputs.resolve(self.series, controls, hc, h)
        if self.controls:
            x = control_inputs.lead_layout(x, hc, nxt[0])
            check_physical(self.series, nxt, self.controls)
        y, mask = self._pad(x)
        feed = np.concatenate([nxt[1:], nxt[-1:]], axis=0).astype(np.float32)
        mu, sd = self._roll(jnp.asarray(y), jnp.asarray(mask), jnp.asarray(feed))
        ns = self._ns
        return dict(
            mean=np.asarray(mu, np.float64)[:, :ns],
            sd=np.asarray(sd, np.float64)[:, :ns],
            channels=list(self.channels),
            controls=nxt,
            assumed_controls=assumed,
        )

    def stream(self, samples: Iterable[Mapping], controls: Mapping[str, float] | None = None):
        """Yield, for each arriving sample, the forecast of the next one (None until the history
        holds `min_history` samples). The window is kept incrementally (a bounded deque)."""
        buf: collections.deque = collections.deque(maxlen=self.window)
        for i, rec in enumerate(samples):
            has = (
                bool(self.controls)
                and isinstance(rec, Mapping)
                and all(c in rec for c in self.controls)
            )
            try:
                records_to_array([rec], self.channels + self.controls if has else self.channels)
            except ValueError as e:
                raise ValueError(f"stream sample {i}: {e}") from None
            buf.append(rec)
            if len(buf) < self.min_history:
                yield None
                continue
            try:
                yield self.predict_next(list(buf), controls)
            except ValueError as e:
                raise ValueError(f"stream sample {i}: {e}") from None

    def clear_cache(self) -> None:
        self._cache.clear()
        self.cache_hits = self.cache_misses = 0


def _rollout_fn(one, control_index: np.ndarray):
    """(y (L, C), mask (L,), feed (H, K)) -> means, sds (H, C): `one` applied recursively,
    each step's mean appended with the next step's control (`feed[h]`) written in."""
    ci = jnp.asarray(control_index)

    def roll(y, mask, feed):
        def step(carry, ctrl):
            y, m = carry
            out = one(y, m)
            mean, var = out[0], out[1]
            row = mean.at[ci].set(ctrl) if control_index.size else mean
            y = jnp.concatenate([y[1:], row[None]], axis=0)
            m = jnp.concatenate([m[1:], jnp.ones((1,), bool)])
            return (y, m), (mean, jnp.sqrt(jnp.maximum(var, 0.0)))

        _, (mu, sd) = jax.lax.scan(step, (y, mask), feed)
        return mu, sd

    return roll


def _copy(res: dict) -> dict:
    out = dict(res)
    out["std"] = dict(res["std"])
    out["interval"] = dict(res["interval"])
    out["out_of_range"] = list(res["out_of_range"])
    if "controls" in res:
        out["controls"] = dict(res["controls"])
        out["assumed_controls"] = list(res["assumed_controls"])
    return out
