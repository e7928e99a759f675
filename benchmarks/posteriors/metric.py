"""The MAMS paper's accuracy metric: squared bias of E[x^2], normalised by Var[x^2].

After draw t (every chain has made t transitions after tuning), a chain's estimate of
E[x_i^2] is its average of x_i^2 over draws 1..t. Its squared bias relative to the truth,
in units of the variance of x_i^2, is

    b2_i(t) = (<x_i^2>_t - E[x_i^2])^2 / Var[x_i^2],

the two summaries are b2_max(t) = max_i b2_i(t) and b2_avg(t) = mean_i b2_i(t), and the
curve reported is their median over chains (`b2_of_samples`; `b2_curves` pools all chains
into one running average instead, the many-chain view)
(Robnik, Cohn-Gordon & Seljak, "Metropolis Adjusted Microcanonical Hamiltonian Monte Carlo",
arXiv 2503.01707, section 5; the same metric as MCHMC, arXiv 2212.08549). The cost is the
number of gradient evaluations per chain, tuning included, until b2 falls below 0.01 and
stays below it for the rest of the run (b2 = 0.01 is the squared error of about 100
effective samples of x^2: an estimate from ESS independent draws has E[b2_i] = 1 / ESS).
"""

from __future__ import annotations

import numpy as np
from jaxtyping import ArrayLike

__all__ = ["THRESHOLD", "b2_curves", "b2_of_samples", "cost_to_threshold"]

THRESHOLD = 0.01


def b2_curves(
    sum_x2: ArrayLike,
    num_chains: int,
    second_moment: ArrayLike,
    var_second_moment: ArrayLike,
) -> tuple[np.ndarray, np.ndarray]:
    """(b2_max, b2_avg), each (steps,), from per-step sums over chains of x^2.

    Args:
        sum_x2: (steps, d): at step t, the sum over chains of x_i^2.
        num_chains: the number of chains summed.
        second_moment, var_second_moment: (d,) E[x_i^2] and Var[x_i^2].
    """
    s = np.asarray(sum_x2, np.float64)
    if s.ndim != 2:
        raise ValueError(f"sum_x2 must be (steps, d), got shape {s.shape}")
    truth = np.asarray(second_moment, np.float64)
    var = np.asarray(var_second_moment, np.float64)
    if truth.shape != (s.shape[1],) or var.shape != truth.shape:
        raise ValueError(f"moments must be ({s.shape[1]},), got {truth.shape} and {var.shape}")
    if num_chains < 1:
        raise ValueError(f"num_chains must be >= 1, got {num_chains}")
    steps = np.arange(1, s.shape[0] + 1, dtype=np.float64)[:, None]
    running = np.cumsum(s, axis=0) / (steps * num_chains)
    b2 = (running - truth) ** 2 / var
    b2 = np.where(np.isfinite(b2), b2, np.inf)
    return b2.max(axis=1), b2.mean(axis=1)


def b2_of_samples(
    samples: ArrayLike,
    second_moment: ArrayLike,
    var_second_moment: ArrayLike,
    *,
    per_chain: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """(b2_max, b2_avg), each (draws,), of samples shaped (chains, draws, d).

    per_chain=True (the papers' convention, what `bench_posteriors.py` reports): every
    chain keeps its own running average of x^2 and b2 is the median over chains of that
    chain's b2. per_chain=False: one running average pooled over all chains (`b2_curves`).
    """
    x = np.asarray(samples, np.float64)
    if x.ndim != 3:
        raise ValueError(f"samples must be (chains, draws, d), got shape {x.shape}")
    if not per_chain:
        return b2_curves(np.sum(x**2, axis=0), x.shape[0], second_moment, var_second_moment)
    truth = np.asarray(second_moment, np.float64)
    var = np.asarray(var_second_moment, np.float64)
    if truth.shape != (x.shape[2],) or var.shape != truth.shape:
        raise ValueError(f"moments must be ({x.shape[2]},), got {truth.shape} and {var.shape}")
    steps = np.arange(1, x.shape[1] + 1, dtype=np.float64)[None, :, None]
    b2 = (np.cumsum(x**2, axis=1) / steps - truth) ** 2 / var
    b2 = np.where(np.isfinite(b2), b2, np.inf)
    return np.median(b2.max(axis=2), axis=0), np.median(b2.mean(axis=2), axis=0)


def cost_to_threshold(
    b2: ArrayLike, grads: ArrayLike, threshold: float = THRESHOLD
) -> float | None:
    """Gradient evaluations at the first step after which b2 stays below `threshold`.

    Args:
        b2: (steps,) b2 after each step.
        grads: (steps,) cumulative gradient evaluations per chain (tuning included) at
            each step.
    Returns:
        grads[t] for the smallest t with b2[s] < threshold for all s >= t; None when b2
        is not below the threshold at the end of the run.
    """
    b = np.asarray(b2, np.float64)
    g = np.asarray(grads, np.float64)
    if b.shape != g.shape or b.ndim != 1:
        raise ValueError(f"b2 and grads must be the same (steps,) shape, got {b.shape}, {g.shape}")
    above = np.nonzero(~(b < threshold))[0]
    if above.size == 0:
        return float(g[0])
    last = int(above[-1])
    if last == b.size - 1:
        return None
    return float(g[last + 1])
