"""The NVP model: a pre-norm causal transformer over an energy embedding of each step.

Per step t of a window (physical telemetry y_t, C channels) the embedding input is

    [ z_t,  dz_t,  E~_t,  S_t ]          (2C + 2 numbers)

with z = (y - mean) / std the normalised channels, dz_t = (z_t - z_{t-1}) / std(dz) the
finite-difference gradient, E~ the normalised stored energy E = sum_k c_k y_k of the balance
spec (0 when none), and S the Shannon entropy (nats) of the utilisation distribution
(binary entropy -u ln u - (1-u) ln(1-u) for one utilisation channel, the entropy of the
normalised load shares for several). A linear embedding plus a sinusoidal positional encoding
feeds `num_layers` pre-norm blocks (x + MHA(LN x) under a causal and padding mask; x + MLP(LN x)).
From the last position two heads give, per channel, the mean increment and the log-variance of
the next normalised value; a linear autoregressive skip over the window adds to the mean:

    mu = z_T + W_skip vec(z) + s head_mu(h_T),
    log v = 2 log s + 11 tanh((head_lv(h_T) + 5) / 11) - 5

with s the per-channel residual scale of the linear path (`Normalizer.res_std`, the std of
its training residual; 1 when absent). The heads thus work in units of what the linear path
leaves over: a channel the linear path already predicts almost exactly (a deterministic
function of the window, e.g. the CRAH heat removal from the last rack temperatures) is not
drowned in the network's O(1) output noise, and every channel's residual weighs the same in
training. When `NVPConfig.lin_head` > 0 the mean also gets ``s MLP(lin)``, with
``lin = z_T + W_skip vec(z)`` the linear forecast: a nonlinear correction that sees the linear
next-state estimate of every channel, so a channel that is a nonlinear function of the others'
next values (cooling electricity = heat removed / COP(outside air), with the economiser
switching at a threshold) is one small MLP away instead of a product to be assembled inside
the attention stack. It is fitted after the linear path and before the transformer
(`train.fit_lin_head`).

Histories shorter than the window are left-padded and masked, so one compiled shape serves all
lengths (pad-and-mask); the linear path sees the padding as the oldest real step repeated.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from . import conservation


@dataclasses.dataclass(frozen=True)
class NVPConfig:
    """Hyper-parameters of the architecture (stored in the checkpoint JSON)."""

    channels: tuple[str, ...]
    window: int = 48
    d_model: int = 32
    num_heads: int = 2
    num_layers: int = 2
    mlp_ratio: int = 2
    min_history: int = 2
    lin_head: int = 0  # width of the correction MLP over the linear forecast (0: none)

    def __post_init__(self):
        if len(self.channels) < 1 or len(set(self.channels)) != len(self.channels):
            raise ValueError(f"channels must be distinct names, got {self.channels}")
        if self.window < 2 or self.min_history < 1 or self.min_history > self.window:
            raise ValueError(
                f"need 1 <= min_history <= window and window >= 2, got "
                f"min_history={self.min_history}, window={self.window}"
            )
        if self.lin_head < 0:
            raise ValueError(f"lin_head must be >= 0, got {self.lin_head}")
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model={self.d_model} not divisible by num_heads={self.num_heads}")

    @property
    def num_channels(self) -> int:
        return len(self.channels)

    @property
    def num_features(self) -> int:
        return 2 * len(self.channels) + 2

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_json(cls, d: dict) -> NVPConfig:
        d = dict(d)
        d["channels"] = tuple(d["channels"])
        return cls(**d)


class Normalizer(NamedTuple):
    """Normalisation statistics of the training data (physical units), stored in checkpoints."""

    mean: np.ndarray  # (C,)
    std: np.ndarray  # (C,)
    diff_std: np.ndarray  # (C,) std of the normalised one-step difference
    e_mean: float  # stored energy E statistics (0, 1 without a balance)
    e_std: float
    flow_scale: float  # typical gross energy flow per step (for the L_energy scale)
    var_scale: np.ndarray | None = None  # (C,) interval calibration on validation (None: 1)
    res_std: np.ndarray | None = None  # (C,) linear-path residual std, normalised (None: 1)

    def to_json(self) -> dict:
        return {
            k: (None if v is None else np.asarray(v).tolist()) for k, v in self._asdict().items()
        }

    @classmethod
    def from_json(cls, d: dict) -> Normalizer:
        return cls(
            np.asarray(d["mean"], np.float64),
            np.asarray(d["std"], np.float64),
            np.asarray(d["diff_std"], np.float64),
            float(d["e_mean"]),
            float(d["e_std"]),
            float(d["flow_scale"]),
            None if d.get("var_scale") is None else np.asarray(d["var_scale"], np.float64),
            None if d.get("res_std") is None else np.asarray(d["res_std"], np.float64),
        )


def fit_normalizer(series: list[np.ndarray], bal: conservation.Balance) -> Normalizer:
    """Statistics over a list of (T, C) training series."""
    x = np.concatenate(series, axis=0)
    mean = x.mean(0)
    std = np.where(x.std(0) > 1e-12, x.std(0), 1.0)
    dz = np.concatenate([np.diff((s - mean) / std, axis=0) for s in series], axis=0)
    diff_std = np.where(dz.std(0) > 1e-12, dz.std(0), 1.0)
    if bal.defined:
        e = x @ bal.storage
        e_mean, e_std = float(e.mean()), float(max(e.std(), 1e-12))
        flows = np.concatenate([conservation.flow_scale(bal, s[1:], s[:-1]) for s in series])
        flow = float(max(np.mean(flows), 1e-12))
    else:
        e_mean, e_std, flow = 0.0, 1.0, 1.0
    return Normalizer(mean, std, diff_std, e_mean, e_std, flow)


def utilisation_entropy(u: Float[Array, "... K"]) -> Float[Array, "..."]:
    """Entropy (nats) of the utilisation distribution: binary for K=1, load shares for K>1."""
    eps = 1e-6
    if u.shape[-1] == 1:
        p = jnp.clip(u[..., 0], eps, 1 - eps)
        return -(p * jnp.log(p) + (1 - p) * jnp.log1p(-p))
    w = jnp.clip(u, eps, None)
    p = w / jnp.sum(w, axis=-1, keepdims=True)
    return -jnp.sum(p * jnp.log(p), axis=-1)


def embed_features(
    y: Float[Array, "L C"],
    mask: Bool[Array, " L"],
    norm: Normalizer,
    bal: conservation.Balance,
    util_idx: tuple[int, ...],
):
    """(z, features) of one physical window: z (L, C), features (L, 2C + 2); padding -> 0."""
    dtype = y.dtype
    m = mask[:, None].astype(dtype)
    z = (y - jnp.asarray(norm.mean, dtype)) / jnp.asarray(norm.std, dtype) * m
    prev = jnp.concatenate([z[:1], z[:-1]], axis=0)
    prev_valid = jnp.concatenate([mask[:1], mask[:-1]])[:, None].astype(dtype)
    dz = (z - prev) * prev_valid * m / jnp.asarray(norm.diff_std, dtype)
    e = ((y @ jnp.asarray(bal.storage, dtype)) - norm.e_mean) / norm.e_std
    if util_idx:
        s = utilisation_entropy(y[:, jnp.asarray(util_idx)])
    else:
        s = jnp.zeros(y.shape[0], dtype)
    feats = jnp.concatenate([z, dz, (e * mask)[:, None], (s * mask)[:, None]], axis=1)
    return z, feats


def sinusoidal_encoding(length: int, dim: int) -> np.ndarray:
    """PE[t, 2i] = sin(t / 10000^(2i/d)), PE[t, 2i+1] = cos(...) (Vaswani et al. 2017)."""
    pos = np.arange(length)[:, None]
    rate = np.exp(-math.log(10000.0) * (np.arange(0, dim, 2) / dim))
    pe = np.zeros((length, dim), np.float32)
    pe[:, 0::2] = np.sin(pos * rate)
    pe[:, 1::2] = np.cos(pos * rate)[:, : dim // 2]
    return pe


def _attention_mask(query_pos, mask):
    """(S, K) causal mask of queries at `query_pos` over the keys 0..K-1: a query sees the
    real keys (`mask`, (K,)) up to its own position, and always itself."""
    j = jnp.arange(mask.shape[0])
    return (j[None, :] <= query_pos[:, None]) & (mask[None, :] | (j[None, :] == query_pos[:, None]))


def _heads(attn: eqx.nn.MultiheadAttention, proj: eqx.nn.Linear, h):
    """(S, d) -> (S, heads, d_head): one projection of an attention layer, split by head."""
    heads = attn.num_heads
    return jax.vmap(proj)(h).reshape(h.shape[0], heads, -1)


class Block(eqx.Module):
    ln1: eqx.nn.LayerNorm
    attn: eqx.nn.MultiheadAttention
    ln2: eqx.nn.LayerNorm
    mlp1: eqx.nn.Linear
    mlp2: eqx.nn.Linear

    def __init__(self, d: int, heads: int, ratio: int, *, key: PRNGKeyArray):
        k1, k2, k3 = jax.random.split(key, 3)
        self.ln1 = eqx.nn.LayerNorm(d)
        self.attn = eqx.nn.MultiheadAttention(
            heads, d, use_query_bias=True, use_output_bias=True, key=k1
        )
        self.ln2 = eqx.nn.LayerNorm(d)
        self.mlp1 = eqx.nn.Linear(d, ratio * d, key=k2)
        self.mlp2 = eqx.nn.Linear(ratio * d, d, key=k3)

    def __call__(self, x: Float[Array, "L d"], attn_mask: Bool[Array, "L L"]):
        h = jax.vmap(self.ln1)(x)
        x = x + self.attn(h, h, h, mask=attn_mask, inference=True)
        return self._mlp(x)

    def _mlp(self, x):
        h = jax.vmap(self.ln2)(x)
        return x + jax.vmap(self.mlp2)(jax.nn.gelu(jax.vmap(self.mlp1)(h)))

    def keys_values(self, x: Float[Array, "P d"]):
        """The attention keys and values (P, heads, d_head) of the stream `x` entering."""
        h = jax.vmap(self.ln1)(x)
        return _heads(self.attn, self.attn.key_proj, h), _heads(self.attn, self.attn.value_proj, h)

    def extend(self, x: Float[Array, "S d"], kv, attn_mask: Bool[Array, "S P+S"]):
        """The block on the last S positions of a window whose first P positions' keys and
        values `kv` are cached (`keys_values`): the same arithmetic as `__call__` (equinox's
        scaled dot-product attention, softmax in float32) restricted to the S queries."""
        a = self.attn
        h = jax.vmap(self.ln1)(x)
        k_new, v_new = _heads(a, a.key_proj, h), _heads(a, a.value_proj, h)
        k = jnp.concatenate([kv[0], k_new], axis=0)
        v = jnp.concatenate([kv[1], v_new], axis=0)
        q = _heads(a, a.query_proj, h) / math.sqrt(a.qk_size)
        logits = jnp.einsum("shd,Shd->hsS", q, k)
        logits = jnp.where(attn_mask[None], logits, jnp.finfo(logits.dtype).min)
        w = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(logits.dtype)
        out = jnp.einsum("hsS,Shd->shd", w, v).reshape(x.shape[0], a.num_heads * a.vo_size)
        return self._mlp(x + jax.vmap(a.output_proj)(out))


class NVPModel(eqx.Module):
    """Causal transformer forecaster; `__call__(feats, z, mask) -> (mu, log_var)` normalised."""

    embed: eqx.nn.Linear
    blocks: list[Block]
    ln_f: eqx.nn.LayerNorm
    head_mu: eqx.nn.Linear
    head_lv: eqx.nn.Linear
    skip: eqx.nn.Linear
    window: int = eqx.field(static=True)
    lin_mlp: eqx.nn.MLP | None = None

    def __init__(self, cfg: NVPConfig, *, key: PRNGKeyArray):
        keys = jax.random.split(key, cfg.num_layers + 4)
        c, d = cfg.num_channels, cfg.d_model
        self.embed = eqx.nn.Linear(cfg.num_features, d, key=keys[0])
        self.blocks = [Block(d, cfg.num_heads, cfg.mlp_ratio, key=k) for k in keys[4:]]
        self.ln_f = eqx.nn.LayerNorm(d)
        zero = lambda lin: eqx.tree_at(
            lambda m: (m.weight, m.bias),
            lin,
            (jnp.zeros_like(lin.weight), jnp.zeros_like(lin.bias)),
        )
        self.head_mu = zero(eqx.nn.Linear(d, c, key=keys[1]))
        self.head_lv = eqx.nn.Linear(d, c, key=keys[2])
        self.skip = zero(eqx.nn.Linear(cfg.window * c, c, key=keys[3]))
        self.window = cfg.window
        if cfg.lin_head:  # own key stream: the other weights do not depend on lin_head
            mlp = eqx.nn.MLP(
                c, c, cfg.lin_head, 2, activation=jax.nn.gelu, key=jax.random.fold_in(key, 0x11A)
            )
            last = mlp.layers[-1]
            self.lin_mlp = eqx.tree_at(
                lambda m: (m.layers[-1].weight, m.layers[-1].bias),
                mlp,
                (jnp.zeros_like(last.weight), jnp.zeros(last.weight.shape[:1], last.weight.dtype)),
            )

    @property
    def d_model(self) -> int:
        """Width of the residual stream (static)."""
        return int(self.embed.weight.shape[0])

    def __call__(
        self,
        feats: Float[Array, "L F"],
        z: Float[Array, "L C"],
        mask: Bool[Array, " L"],
        res_std: Float[Array, " C"] | np.ndarray | None = None,
    ) -> tuple[Float[Array, " C"], Float[Array, " C"]]:
        length = feats.shape[0]
        if length != self.window:
            raise ValueError(f"window length {length} != model window {self.window}")
        pos = sinusoidal_encoding(length, self.d_model)  # constant under jit
        x = jax.vmap(self.embed)(feats) + jnp.asarray(pos, feats.dtype)
        attn_mask = _attention_mask(jnp.arange(length), mask)
        for blk in self.blocks:
            x = blk(x, attn_mask)
        return self._readout(x[-1], z, mask, res_std)

    def last_hidden(self, feats: Float[Array, "L F"], mask: Bool[Array, " L"]):
        """The normalised stream of the last position (d_model,): what the heads read
        (`idf_jax.nvp.direct` fits a multi-horizon readout on it)."""
        length = feats.shape[0]
        pos = sinusoidal_encoding(length, self.d_model)
        x = jax.vmap(self.embed)(feats) + jnp.asarray(pos, feats.dtype)
        attn_mask = _attention_mask(jnp.arange(length), mask)
        for blk in self.blocks:
            x = blk(x, attn_mask)
        return self.ln_f(x[-1])

    def prefix_cache(self, feats: Float[Array, "L F"], mask: Bool[Array, " L"], length: int):
        """Per-block keys and values of the first `length` positions of a window.

        The model is causal, so those positions do not depend on any later row: a planner
        that scores many windows sharing their first `length` rows computes them once and
        runs only the rest through `extend` (exact, up to float rounding)."""
        pos = jnp.asarray(sinusoidal_encoding(self.window, self.d_model), feats.dtype)
        x = jax.vmap(self.embed)(feats[:length]) + pos[:length]
        attn_mask = _attention_mask(jnp.arange(length), mask[:length])
        cache = []
        for n, blk in enumerate(self.blocks):
            cache.append(blk.keys_values(x))
            if length and n + 1 < len(self.blocks):  # the last block's output is not needed
                x = blk(x, attn_mask)
        return tuple(cache)

    def extend(
        self,
        cache,
        feats: Float[Array, "L F"],
        z: Float[Array, "L C"],
        mask: Bool[Array, " L"],
        res_std: Float[Array, " C"] | np.ndarray | None = None,
    ):
        """`__call__` of a full window whose first P positions are in `cache`
        (`prefix_cache(feats, mask, P)`); only the last L - P positions are computed."""
        length = feats.shape[0]
        if length != self.window:
            raise ValueError(f"window length {length} != model window {self.window}")
        p = cache[0][0].shape[0]
        pos = jnp.asarray(sinusoidal_encoding(length, self.d_model), feats.dtype)
        x = jax.vmap(self.embed)(feats[p:]) + pos[p:]
        attn_mask = _attention_mask(jnp.arange(p, length), mask)
        for blk, kv in zip(self.blocks, cache):
            x = blk.extend(x, kv, attn_mask)
        return self._readout(x[-1], z, mask, res_std)

    def _readout(self, x_last, z, mask, res_std):
        """Heads on the last position's stream plus the linear path (module docstring)."""
        h = self.ln_f(x_last)
        lv = 11.0 * jnp.tanh((self.head_lv(h) + 5.0) / 11.0) - 5.0
        # the linear AR forecast; a short history is edge-padded for it (its oldest real step
        # repeated, not the channel mean), the padding an AR model is fitted for
        z_lin = jnp.where(mask[:, None], z, z[jnp.argmax(mask)])
        lin = z[-1] + self.skip(z_lin.reshape(-1))
        corr = self.head_mu(h)
        if self.lin_mlp is not None:  # nonlinear correction of the linear forecast
            corr = corr + self.lin_mlp(lin)
        if res_std is None:
            mu = lin + corr
        else:  # heads in units of the linear path's residual (see the module docstring)
            s = jnp.asarray(res_std, z.dtype)
            mu = lin + s * corr
            lv = lv + 2.0 * jnp.log(s)
        return mu, lv


class Forecast(NamedTuple):
    """One-step forecast in physical units: raw network output and its balance projection."""

    mean_raw: jax.Array
    var_raw: jax.Array
    mean: jax.Array
    var: jax.Array


def forecast(
    model: NVPModel,
    bal: conservation.Balance,
    norm: Normalizer,
    util_idx: tuple[int, ...],
    y: Float[Array, "L C"],
    mask: Bool[Array, " L"],
    cache=None,
) -> Forecast:
    """Next state of one physical window `y` (left-padded, `mask` marks real steps).

    The conservation layer conditions the Gaussian N(mean_raw, var_raw) on the energy balance
    between the last observed step y[-1] and the prediction (`conservation.project`).
    `cache`: the keys and values of the window's first rows (`NVPModel.prefix_cache`), which
    then are not recomputed.
    """
    z, feats = embed_features(y, mask, norm, bal, util_idx)
    if cache is None:
        mu, lv = model(feats, z, mask, norm.res_std)
    else:
        mu, lv = model.extend(cache, feats, z, mask, norm.res_std)
    std = jnp.asarray(norm.std, y.dtype)
    mean_raw = jnp.asarray(norm.mean, y.dtype) + std * mu
    var_raw = jnp.exp(lv) * std**2
    mean, var = conservation.project(bal, mean_raw, var_raw, y[-1])
    if norm.var_scale is not None:  # calibration of the predictive spread (see train.calibrate)
        var = var * jnp.asarray(norm.var_scale, y.dtype)
    return Forecast(mean_raw, var_raw, mean, var)
