"""Physics validation of a run: energy-law fidelity and entropy coherence.

What each metric claims, stated honestly:

- Energy-law fidelity (ELF) applies to Hamiltonian dynamics only (HMC trajectories,
  NVE integration): the exact flow conserves H(x, p) = E(x) + p^T M^-1 p / 2, so the
  integrator's |dH| per trajectory measures how well the discrete dynamics obeys the
  energy law. Langevin dynamics (ula, mala, underdamped) exchanges energy with a heat
  bath: energy is NOT conserved and no ELF is, or may be, claimed for it; asking for it
  raises a ValueError.
- Entropy coherence applies to dynamics coupled to a heat bath at temperature T whose
  transition kernel leaves exp(-E/T) invariant (mala, hmc, exact Langevin): by the data
  processing inequality KL(p_t || pi) cannot increase, i.e. the ensemble's
  non-equilibrium free energy F = <E> - T S is non-increasing (total entropy production
  >= 0). For isolated dynamics ("isolated" mode) the claim is that S does not decrease.
  Caveats: unadjusted samplers (ula, underdamped BAOAB) leave a step-size-biased law
  invariant, so near equilibrium F may sit O(step) above F_eq; underdamped dynamics is
  monotone in phase space, not in the position marginal the trace records.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from ..run import ENERGY_ERROR_BIN_EDGES
from ..samplers._base import check_positive, check_positive_int
from .metrics import _entropy_fn, _flatten_positions

__all__ = ["energy_law_fidelity", "CoherenceResult", "entropy_coherence"]


def _tol_bin(tol: float) -> int:
    """Index m of the histogram edge equal to `tol`: |dH| < tol <=> bin <= m."""
    if not np.isfinite(tol) or tol <= 0:
        raise ValueError(f"tol must be finite and > 0, got {tol!r}")
    match = np.flatnonzero(np.isclose(ENERGY_ERROR_BIN_EDGES, tol, rtol=1e-6, atol=0.0))
    if match.size == 0:
        lg = np.log10(tol)
        lo = 10 ** (np.floor(lg * 10) / 10)
        hi = 10 ** (np.ceil(lg * 10) / 10)
        raise ValueError(
            f"tol={tol!r} is not an edge of the |dH| histogram (edges are 10^(k/10) for "
            f"k = -100..40, e.g. 1e-3, 0.01, 0.1, 1); nearest edges: {lo:.4g}, {hi:.4g}"
        )
    return int(match[0])  # bin 0 is |dH| < 1e-10, bin k is [edges[k-1], edges[k])


def energy_law_fidelity(trace, tol: float = 0.01, per_chain: bool = False) -> Float[Array, "..."]:
    """Fraction of Hamiltonian trajectories with |dH| < tol (energy units).

    Read from `trace.stats['energy_error_hist']`, which `idf.sample` accumulates inside
    the scan over EVERY trajectory of the kept steps (not only the thinned draws) without
    storing per-step arrays. The count is exact for `tol` at a histogram edge
    10^(k/10) (1e-3, 0.01, 0.1, 1, ...). A diverged trajectory counts as a failure.

    Args:
        trace: a `Trace` from a Hamiltonian sampler (info with `energy_error`, e.g. hmc).
        tol: the |dH| tolerance, a histogram edge.
        per_chain: return the fraction per chain (chains,) instead of pooled.

    Raises:
        ValueError: the trace has no energy-error histogram (Langevin samplers exchange
            energy with a heat bath, so energy-law fidelity does not apply to them), or
            `tol` is not a histogram edge.
    """
    stats = getattr(trace, "stats", None)
    if not isinstance(stats, dict) or "energy_error_hist" not in stats:
        raise ValueError(
            "energy_law_fidelity needs trace.stats['energy_error_hist'], recorded only for "
            "Hamiltonian samplers (info.energy_error, e.g. idf.hmc). Langevin dynamics "
            "(ula, mala, underdamped_langevin) exchanges energy with a heat bath and does "
            "not conserve energy: ELF does not apply to it."
        )
    m = _tol_bin(float(tol))
    hist = jnp.asarray(stats["energy_error_hist"])
    good = jnp.sum(hist[..., : m + 1], axis=-1)
    total = jnp.sum(hist, axis=-1)
    if int(jnp.sum(total)) == 0:
        raise ValueError("the trace recorded no trajectories (num_steps - burn_in == 0?)")
    if per_chain:
        return good / jnp.maximum(total, 1)
    return jnp.sum(good) / jnp.sum(total)


class CoherenceResult(NamedTuple):
    """Details of `entropy_coherence`.

    fraction: coherent intervals / intervals.
    change: (draws - 1,) dF (heat bath) or dS (isolated) per recorded interval.
    stderr: (draws - 1,) bootstrap standard error of `change` (resampling chains).
    violated: (draws - 1,) the interval breaks the law by more than z * stderr.
    free_energy: (draws,) F = <E> - T S (heat bath) or S (isolated) per draw.
    """

    fraction: Float[Array, ""]
    change: Float[Array, " intervals"]
    stderr: Float[Array, " intervals"]
    violated: Bool[Array, " intervals"]
    free_energy: Float[Array, " draws"]


def entropy_coherence(
    trace,
    temperature: float = 1.0,
    *,
    mode: Literal["heat_bath", "isolated"] = "heat_bath",
    estimator: Literal["gaussian", "knn", "histogram"] | Callable = "gaussian",
    z: float = 3.0,
    num_bootstrap: int = 100,
    key: PRNGKeyArray | None = None,
    details: bool = False,
):
    """Fraction of recorded intervals in which the ensemble obeys the second law.

    The chains of the trace are the ensemble. At every recorded draw t:
    heat bath (default): F(t) = <E>(t) - T S(t); the law is dF <= 0 (total entropy
    production -dF/T >= 0). isolated: the law is dS >= 0. S is estimated from the chains'
    positions by `estimator` (default: Gaussian, exact for Gaussian ensembles and an
    upper bound otherwise). An interval violates the law when the change has the wrong
    sign by more than `z` bootstrap standard errors (chains resampled with replacement,
    the same resample at both ends of the interval, so the SE is of the paired change).

    Args:
        trace: a `Trace` (positions (chains, draws, ...), energies (chains, draws)).
        temperature: the bath temperature T the sampler targeted.
        mode: "heat_bath" or "isolated".
        estimator: entropy estimator name or a function samples (n, d) -> S.
        z: noise threshold in standard errors.
        num_bootstrap: bootstrap resamples.
        key: PRNG key for the bootstrap (default: key(0), deterministic).
        details: return a `CoherenceResult` instead of the fraction.
    """
    check_positive("temperature", temperature)
    check_positive("z", z)
    num_bootstrap = check_positive_int("num_bootstrap", num_bootstrap)
    if mode not in ("heat_bath", "isolated"):
        raise ValueError(f"mode must be 'heat_bath' or 'isolated', got {mode!r}")
    est = _entropy_fn(estimator)
    x = _flatten_positions(trace.positions)
    e = jnp.asarray(trace.energies)
    if e.ndim != 2:
        raise ValueError(f"trace.energies must be (chains, draws), got shape {e.shape}")
    n, draws = e.shape
    if draws < 2:
        raise ValueError("entropy coherence needs at least 2 recorded draws")
    if n < 2:
        raise ValueError("entropy coherence needs an ensemble: at least 2 chains")
    if not bool(jnp.all(jnp.isfinite(e))):
        raise ValueError("trace.energies contain non-finite values (diverged chains?)")
    key = jax.random.key(0) if key is None else key

    def curve(idx):
        xs, es = x[idx], e[idx]
        s = jax.vmap(est, in_axes=1)(xs)
        if mode == "isolated":
            return s
        return jnp.mean(es, axis=0) - temperature * s

    @jax.jit
    def run(key):
        full = curve(jnp.arange(n))
        idx = jax.random.randint(key, (num_bootstrap, n), 0, n)
        boot = jax.lax.map(curve, idx)
        return full, boot

    full, boot = run(key)
    change = jnp.diff(full)
    stderr = jnp.std(jnp.diff(boot, axis=1), axis=0, ddof=1)
    wrong = change if mode == "heat_bath" else -change
    violated = wrong > z * stderr
    fraction = 1.0 - jnp.mean(violated.astype(full.dtype))
    if details:
        return CoherenceResult(fraction, change, stderr, violated, full)
    return fraction
