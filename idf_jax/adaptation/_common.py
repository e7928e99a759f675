"""Pieces the warm-up methods share (private): argument checks, dual averaging, a traced ESS."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float

from .._checks import ArgumentError, is_traced
from .._custom_types import PyTree
from .window import _DA, _da_init, _da_update

__all__ = [
    "DualAveraging",
    "check_batch",
    "check_target",
    "da_init",
    "da_update",
    "ess_per_dim",
    "flat_chains",
    "harmonic_mean",
    "maximum_eigenvalue",
    "mean_finite",
]

DualAveraging = _DA
da_init = _da_init
da_update = _da_update


def check_batch(x0_batch: PyTree) -> int:
    """The number of chains of `x0_batch` (a PyTree of arrays with a leading chain axis)."""
    leaves = jax.tree.leaves(x0_batch)
    if not leaves or any(jnp.ndim(l) == 0 for l in leaves):
        raise ArgumentError(
            "x0_batch", "x0_batch must be a PyTree of arrays with a leading chain axis"
        )
    n = int(leaves[0].shape[0])
    if any(l.shape[0] != n for l in leaves):
        raise ArgumentError("x0_batch", "every leaf of x0_batch needs the same leading chain axis")
    for l in leaves:
        if not jnp.issubdtype(jnp.result_type(l), jnp.floating):
            raise ArgumentError("x0_batch", "x0_batch must hold float positions for this method")
    return n


def check_target(target_acceptance: Any, default: float) -> Array:
    """`target_acceptance` in (0, 1) (concrete values checked), as a float32 array."""
    if target_acceptance is None:
        return jnp.float32(default)
    if not is_traced(target_acceptance):
        t = float(target_acceptance)
        if not 0.0 < t < 1.0:
            raise ArgumentError(
                "target_acceptance", f"target_acceptance must be in (0, 1), got {t}"
            )
    return jnp.asarray(target_acceptance, jnp.float32)


def flat_chains(positions: PyTree) -> Array:
    """(chains, d): every chain's position raveled."""
    return jax.vmap(lambda x: ravel_pytree(x)[0])(positions)


def mean_finite(values: Array, where: Array | None = None) -> Array:
    """The mean of the finite entries (0 when none)."""
    ok = jnp.isfinite(values) if where is None else (jnp.isfinite(values) & where)
    return jnp.sum(jnp.where(ok, values, 0.0)) / jnp.maximum(jnp.sum(ok), 1)


def harmonic_mean(acc: Array, ok: Array) -> Array:
    """Harmonic mean of acceptance probabilities over the chains where `ok` (ChEES)."""
    inv = jnp.where(ok, 1.0 / jnp.maximum(acc, 1e-20), 0.0)
    hm = jnp.sum(ok) / jnp.maximum(jnp.sum(inv), 1e-20)
    return jnp.where(jnp.isfinite(hm), hm, 0.0)


def maximum_eigenvalue(matrix: Float[Array, "n d"]) -> Array:
    """Estimate of the largest eigenvalue of E[x x^T] from n rows (Hoffman & Sountsov 2022).

    lambda_max ~ E[(x_i . x_j)^2] / E[|x|^2] over pairs i != j: unbiased for a dominant
    eigenvalue and cheap (n^2 d).
    """
    n = matrix.shape[0]
    s = matrix @ matrix.T
    diag = jnp.diag(s)
    lam = jnp.sum(diag) / n
    lam_sq = (jnp.sum(s**2) - jnp.sum(diag**2)) / (n * (n - 1))
    return lam_sq / lam


def ess_per_dim(samples: Float[Array, "chains draws d"]) -> Array:
    """(d,) effective sample size over all chains (Geyer's initial positive sequence).

    Traced (FFT autocovariances): it runs inside the compiled warm-up.
    """
    c, n = samples.shape[0], samples.shape[1]
    x = samples.astype(jnp.float32)
    chain_mean = jnp.mean(x, axis=1)
    xc = x - chain_mean[:, None]
    m = 1 << int(2 * n - 1).bit_length()
    f = jnp.fft.rfft(xc, n=m, axis=1)
    acov = jnp.fft.irfft(f * jnp.conj(f), n=m, axis=1)[:, :n] / n  # (c, n, d)
    within = jnp.mean(acov[:, 0], axis=0) * n / (n - 1.0)
    between = jnp.var(chain_mean, axis=0, ddof=1) if c > 1 else jnp.zeros_like(within)
    var_plus = within * (n - 1.0) / n + between
    rho = 1.0 - (within[None] - jnp.mean(acov, axis=0)) / jnp.maximum(var_plus, 1e-30)[None]
    rho = rho.at[0].set(1.0)
    half = n // 2
    pairs = rho[: 2 * half].reshape(half, 2, -1).sum(axis=1)
    keep = jnp.cumprod(pairs > 0, axis=0)
    tau = jnp.maximum(-1.0 + 2.0 * jnp.sum(pairs * keep, axis=0), 1.0 / jnp.log10(c * n + 1.0))
    return c * n / tau
