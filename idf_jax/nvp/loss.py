"""The physics-informed NVP loss  L = L_pred + l1 L_energy + l2 L_entropy + l3 L_diffusion.

Stated honestly (all terms are per-sample means over a batch, in normalised units):

* ``L_pred``: Gaussian negative log-likelihood of the target under the *projected* forecast
  N(mu*, v*) plus the squared error of mu* (the blueprint's MSE; it is the NLL's fixed-variance
  case and keeps the mean fitted while the variance head learns). Units: normalised channels,
  divided further by the linear path's residual std `Normalizer.res_std` when it is set, so
  every channel's unexplained part weighs the same (the NLL changes only by a constant).
* ``L_energy``: the squared energy-balance residual of the *raw* network output before the
  conservation layer, ``((E(y') - E(y) - (P_in - P_out) dt) / F)^2`` with F the mean gross
  energy flow per step. The blueprint's |E(t+1) - E(t)|^2 is its closed-system case
  (P_in = P_out = 0). The projected output satisfies the balance exactly, so this term teaches
  the network itself the physics (small projections), it does not constrain the output.
* ``L_entropy``: the second law for the passive heat flows the spec lists (e.g. a cooling coil
  taking heat Q from air at T_h to chilled water at T_c): its entropy production
  ``sigma = Q (1/T_c - 1/T_h)`` cannot be negative; penalised as ``(relu(-sigma)/sigma_0)^2``,
  ``sigma_0 = std(Q)/T_c``. The utilisation entropy of a driven datacenter may fall (the
  scheduler consolidates load), so it is *not* penalised: zero where physics forbids nothing.
* ``L_diffusion``: the Helmholtz residual ``|L psi + lambda psi|^2`` of the predicted sensor
  field along the spatial layout (psi = normalised rack temperature anomaly, L the path-graph
  Laplacian of the row, free ends). A smoothness prior for sensors that exchange heat with their
  neighbours; zero when the spec has no layout (fewer than two sensors).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from . import conservation
from .model import Normalizer, NVPModel, forecast


class LossWeights(NamedTuple):
    energy: float = 1.0
    entropy: float = 0.1
    diffusion: float = 1e-3


class Physics(NamedTuple):
    """Static physics of a channel set (built once from a balance spec)."""

    balance: conservation.Balance
    util_idx: tuple[int, ...]
    layout_idx: tuple[int, ...]
    helmholtz_lambda: float
    heat_flows: tuple[tuple[int, tuple[int, ...], float, float], ...]  # flow, hot, T_c, offset


def make_physics(spec: dict | None, channels: tuple[str, ...]) -> Physics:
    bal = conservation.make_balance(spec, channels)
    spec = spec or {}
    idx = {c: i for i, c in enumerate(channels)}
    flows = tuple(
        (
            idx[h["flow"]],
            tuple(idx[c] for c in h["hot"]),
            float(h["cold_value"]),
            float(h.get("offset_k", 0.0)),
        )
        for h in spec.get("heat_flows", [])
    )
    return Physics(
        bal,
        tuple(idx[c] for c in spec.get("util_channels", [])),
        tuple(idx[c] for c in spec.get("layout", [])),
        float(spec.get("helmholtz_lambda", 0.0)),
        flows,
    )


def path_laplacian(n: int) -> np.ndarray:
    """Graph Laplacian (negative semi-definite convention, (L psi)_i = sum_j (psi_j - psi_i))."""
    lap = np.zeros((n, n))
    for i in range(n - 1):
        lap[i, i + 1] = lap[i + 1, i] = 1.0
    return lap - np.diag(lap.sum(1))


def loss_terms(
    model: NVPModel,
    phys: Physics,
    norm: Normalizer,
    y: Float[Array, "B L C"],
    mask: Bool[Array, "B L"],
    target: Float[Array, "B C"],
    weights: LossWeights = LossWeights(),
    target_mask: np.ndarray | None = None,
) -> dict[str, jax.Array]:
    """All loss terms and the weighted total (scalars).

    `target_mask` (C,) bool, optional: channels whose prediction error counts in ``L_pred``
    (None: all). Action-conditioned models (`idf_jax.nvp.control`) pass False for their
    control channels, which are inputs only (the next row's control is chosen, not predicted).
    """
    fc = jax.vmap(lambda yy, mm: forecast(model, phys.balance, norm, phys.util_idx, yy, mm))(
        y, mask
    )
    dtype = y.dtype
    std = jnp.asarray(norm.std, dtype)
    unit = std  # L_pred unit: the linear path's residual std when set, else the channel std
    if norm.res_std is not None:
        unit = std * jnp.asarray(norm.res_std, dtype)
    v_z = jnp.maximum(fc.var / unit**2, 1e-6)
    err2 = ((target - fc.mean) / unit) ** 2
    if target_mask is None:
        l_pred = jnp.mean(0.5 * (jnp.log(v_z) + err2 / v_z)) + jnp.mean(err2)
    else:
        tm = jnp.asarray(np.asarray(target_mask, bool), dtype)
        per = (0.5 * (jnp.log(v_z) + err2 / v_z) + err2) * tm
        l_pred = jnp.sum(per) / (per.shape[0] * jnp.maximum(jnp.sum(tm), 1.0))

    zero = jnp.zeros((), dtype)
    if phys.balance.defined:
        r = conservation.residual(phys.balance, fc.mean_raw, y[:, -1])
        l_energy = jnp.mean((r / norm.flow_scale) ** 2)
    else:
        l_energy = zero

    l_entropy = zero
    for flow, hot, t_c, off in phys.heat_flows:
        q = fc.mean[:, flow]
        t_h = jnp.mean(fc.mean[:, jnp.asarray(hot)], axis=-1) + off
        tc = t_c + off
        sigma = q * (1.0 / tc - 1.0 / t_h)
        s0 = norm.std[flow] / tc
        l_entropy = l_entropy + jnp.mean((jax.nn.relu(-sigma) / s0) ** 2)

    if len(phys.layout_idx) >= 2:
        lay = jnp.asarray(phys.layout_idx)
        psi = fc.mean[:, lay]
        psi = (psi - psi.mean(-1, keepdims=True)) / jnp.mean(std[lay])
        lap = jnp.asarray(path_laplacian(len(phys.layout_idx)), dtype)
        res = psi @ lap.T + phys.helmholtz_lambda * psi
        l_diff = jnp.mean(res**2)
    else:
        l_diff = zero

    total = (
        l_pred
        + weights.energy * l_energy
        + weights.entropy * l_entropy
        + weights.diffusion * l_diff
    )
    return dict(total=total, pred=l_pred, energy=l_energy, entropy=l_entropy, diffusion=l_diff)


def loss_fn(
    model, phys, norm, y, mask, target, weights=LossWeights(), target_mask=None
) -> jax.Array:
    """Scalar total loss (differentiable in `model`)."""
    return loss_terms(model, phys, norm, y, mask, target, weights, target_mask)["total"]
