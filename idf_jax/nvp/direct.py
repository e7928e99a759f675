"""Direct multi-horizon head over a trained NVP: every horizon h = 1..H in one pass.

The one-step NVP is rolled out recursively for h > 1 (`backtest.rollouts`), so its errors
compound along the horizon. The direct head instead reads, from one forward pass over the
window, the features

    phi = [ vec(z) (the normalised window),  h_T (the transformer's last stream, `last_hidden`),
            sin / cos of the target's time of day (optional) ]

and maps them to the normalised increment of every horizon at once,
``(x[o + h] - x[o]) / std = phi_h W_h + b_h``, one closed-form ridge regression per horizon
(features standardised on training origins, the strength per horizon chosen on validation
origins, as `baselines.RidgeAR`). Its predictive sd per horizon and channel is the RMS
error on the validation origins. The transformer is the trained one-step model, frozen:
the head is a readout, fitted in seconds.
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from .loss import Physics
from .model import Normalizer, NVPModel, embed_features

__all__ = ["DirectHead", "fit_direct_head", "window_features"]


def window_features(
    model: NVPModel,
    norm: Normalizer,
    phys: Physics,
    x: Float[np.ndarray, "T C"],
    origins: Int[np.ndarray, " N"],
    *,
    chunk: int = 4096,
) -> Float[np.ndarray, "N F"]:
    """[vec(z), h_T] of the full windows ending at each origin (origins >= window - 1)."""
    w = model.window
    o = np.asarray(origins, np.int64)
    if o.size and o.min() < w - 1:
        raise ValueError(f"origins must be >= window - 1 = {w - 1}")

    @jax.jit
    @jax.vmap
    def one(y):
        mask = jnp.ones((w,), bool)
        z, feats = embed_features(y, mask, norm, phys.balance, phys.util_idx)
        return jnp.concatenate([z.reshape(-1), model.last_hidden(feats, mask)])

    out = []
    for s in range(0, len(o), chunk):
        part = o[s : s + chunk]
        n = len(part)
        size = 1 << max(n - 1, 0).bit_length()  # one compiled shape per power of two
        idx = part[:, None] + np.arange(-w + 1, 1)[None, :]
        ys = np.asarray(x, np.float32)[idx]
        ys = np.concatenate([ys, np.repeat(ys[:1], size - n, 0)])
        out.append(np.asarray(one(jnp.asarray(ys)), np.float64)[:n])
    return np.concatenate(out) if out else np.zeros((0, 0))


def _tod(t, steps_per_day):
    a = 2.0 * np.pi * (np.asarray(t) % steps_per_day) / steps_per_day
    return np.stack([np.sin(a), np.cos(a)], axis=-1)


class DirectHead(eqx.Module):
    """Per-horizon ridge readouts (use `fit_direct_head`); `predict` gives (N, H, C)."""

    weights: Float[Array, "H F C"]
    bias: Float[Array, "H C"]
    feat_mean: Float[Array, " F"]
    feat_std: Float[Array, " F"]
    sd: Float[Array, "H C"]
    lambdas: tuple[float, ...] = eqx.field(static=True)
    horizons: tuple[int, ...] = eqx.field(static=True)
    steps_per_day: int = eqx.field(static=True)  # 0: no time-of-day features

    def design(self, phi: np.ndarray, origins: np.ndarray, h: int) -> np.ndarray:
        parts = [phi]
        if self.steps_per_day:
            parts.append(_tod(np.asarray(origins) + h, self.steps_per_day))
        a = np.concatenate(parts, axis=1)
        return (a - np.asarray(self.feat_mean)) / np.asarray(self.feat_std)

    def predict(
        self,
        phi: Float[np.ndarray, "N F"],
        x: Float[np.ndarray, "T C"],
        origins: Int[np.ndarray, " N"],
        std: Float[np.ndarray, " C"],
    ) -> tuple[Float[np.ndarray, "N H C"], Float[np.ndarray, "N H C"]]:
        """(mean, sd) at every horizon from the features `phi` of each origin's window."""
        o = np.asarray(origins, np.int64)
        mu = np.empty((len(o), len(self.horizons), x.shape[1]))
        for k, h in enumerate(self.horizons):
            inc = self.design(phi, o, h) @ np.asarray(self.weights[k]) + np.asarray(self.bias[k])
            mu[:, k] = x[o] + np.asarray(std) * inc
        return mu, np.broadcast_to(np.asarray(self.sd)[None], mu.shape).copy()


def fit_direct_head(
    phi_train: Float[np.ndarray, "N F"],
    origins_train: Int[np.ndarray, " N"],
    phi_val: Float[np.ndarray, "M F"],
    origins_val: Int[np.ndarray, " M"],
    x: Float[np.ndarray, "T C"],
    std: Float[np.ndarray, " C"],
    horizons: Sequence[int],
    *,
    steps_per_day: int = 0,
    lambdas: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0),
) -> DirectHead:
    """Closed-form fit (module doc); every origin needs o + max(horizons) < T."""
    hs = tuple(int(h) for h in horizons)
    if not hs or min(hs) < 1:
        raise ValueError(f"horizons must be >= 1, got {list(horizons)}")
    ot, ov = np.asarray(origins_train, np.int64), np.asarray(origins_val, np.int64)
    if len(ot) < 2 or len(ov) < 1:
        raise ValueError("fit_direct_head needs >= 2 training and >= 1 validation origins")
    if max(ot.max(), ov.max()) + max(hs) >= x.shape[0]:
        raise ValueError("every origin needs a target at the largest horizon")
    std = np.asarray(std, np.float64)
    base = np.concatenate([phi_train, _tod(ot, steps_per_day)], 1) if steps_per_day else phi_train
    mean = base.mean(0)
    sdev = np.where(base.std(0) > 1e-12, base.std(0), 1.0)
    probe = DirectHead(
        jnp.zeros((1, 1, 1)), jnp.zeros((1, 1)), jnp.asarray(mean), jnp.asarray(sdev),
        jnp.zeros((1, 1)), (), hs, int(steps_per_day),
    )  # fmt: skip
    ws, bs, sds, lams = [], [], [], []
    for h in hs:
        a, av = probe.design(phi_train, ot, h), probe.design(phi_val, ov, h)
        d, dv = (x[ot + h] - x[ot]) / std, (x[ov + h] - x[ov]) / std
        am, dm = a.mean(0), d.mean(0)
        gram, rhs = (a - am).T @ (a - am), (a - am).T @ (d - dm)
        eye = np.eye(gram.shape[0])
        fits = []
        for lam in lambdas:
            w = np.linalg.solve(gram + float(lam) * len(a) * eye, rhs)
            fits.append((float(np.mean(((av - am) @ w + dm - dv) ** 2)), float(lam), w))
        if not fits:
            raise ValueError("lambdas must hold at least one ridge strength")
        _, lam, w = min(fits, key=lambda f: f[0])
        b = dm - am @ w
        resid = ((av @ w + b) - dv) * std  # physical units
        ws.append(w)
        bs.append(b)
        sds.append(np.sqrt(np.mean(resid**2, axis=0)))
        lams.append(lam)
    f32 = jnp.float32
    return DirectHead(
        jnp.asarray(np.stack(ws), f32),
        jnp.asarray(np.stack(bs), f32),
        jnp.asarray(mean, f32),
        jnp.asarray(sdev, f32),
        jnp.asarray(np.maximum(np.stack(sds), 1e-12), f32),
        tuple(lams),
        hs,
        int(steps_per_day),
    )
