"""Thermodynamic metrics: Boltzmann weights, free energies, entropy estimators, work theorems.

Conventions: energies E in energy units, temperature T in the same units (k_B = 1), so
p(x) = exp(-E(x)/T) / Z and F = -T ln Z. Entropies are differential entropies in nats,
S = -∫ p ln p dx. Samples are shaped (n, d) (n draws of a d-dimensional state).

Everything is a pure JAX function (jit / vmap / grad safe) unless noted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import digamma, gammaln, logsumexp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .._checks import is_traced
from ..samplers._base import Sampler, check_positive, check_positive_int

__all__ = [
    "boltzmann_weights",
    "log_mean_exp",
    "free_energy",
    "zwanzig",
    "jarzynski",
    "bar",
    "AISResult",
    "annealed_importance_sampling",
    "gaussian_entropy",
    "histogram_entropy",
    "knn_entropy",
    "EntropyProduction",
    "ensemble_free_energy",
    "entropy_production",
]

PyTree = Any


# --------------------------------------------------------------------------- checks


def _concrete(x) -> bool:
    return not any(is_traced(l) for l in jax.tree.leaves(x))


def _check_no_nan(name: str, x) -> None:
    """ValueError on NaN in a concrete array (+inf energies are allowed: zero weight)."""
    if _concrete(x) and np.any(np.isnan(np.asarray(x, dtype=np.float64))):
        raise ValueError(f"{name} contains NaN")


def _check_samples(name: str, samples, min_n: int = 2) -> jax.Array:
    s = jnp.asarray(samples)
    if s.ndim == 1:
        s = s[:, None]
    if s.ndim != 2:
        raise ValueError(f"{name} must be shaped (n, d) or (n,), got shape {s.shape}")
    if s.shape[0] < min_n:
        raise ValueError(f"{name} needs at least {min_n} samples, got {s.shape[0]}")
    if _concrete(s) and not np.all(np.isfinite(np.asarray(s, dtype=np.float64))):
        raise ValueError(f"{name} contains non-finite values")
    if not jnp.issubdtype(s.dtype, jnp.floating):
        s = s.astype(jnp.result_type(float))
    return s


# --------------------------------------------------------------------------- weights, F


def log_mean_exp(a: ArrayLike, axis: int | None = None) -> Float[Array, "..."]:
    """ln( mean(exp(a)) ) computed stably as logsumexp(a) - ln n."""
    a = jnp.asarray(a)
    n = a.size if axis is None else a.shape[axis]
    return logsumexp(a, axis=axis) - jnp.log(n)


def boltzmann_weights(
    energies: ArrayLike, temperature: float = 1.0, axis: int | None = None
) -> Float[Array, "..."]:
    """Normalised Boltzmann weights w_i = exp(-E_i/T) / sum_j exp(-E_j/T).

    Computed as a softmax of -E/T (shifted by the minimum energy), so energies of any
    magnitude neither overflow nor underflow; E = +inf gets weight 0.

    Args:
        energies: any shape; normalised over all elements (axis=None) or along `axis`.
        temperature: T > 0 in energy units.
    """
    check_positive("temperature", temperature)
    _check_no_nan("energies", energies)
    e = jnp.asarray(energies)
    logits = -e / temperature
    if axis is None:
        return jax.nn.softmax(logits.ravel()).reshape(e.shape)
    return jax.nn.softmax(logits, axis=axis)


def free_energy(
    energies: ArrayLike, temperature: float = 1.0, axis: int | None = None
) -> Float[Array, "..."]:
    """Exponential-average free energy F = -T ln < exp(-E/T) >.

    With E_i the energies of states drawn uniformly from a region of volume V, the
    free energy of that region is F = -T ln Z = -T ln V + free_energy(E, T); with
    E_i = U_1(x_i) - U_0(x_i) for x_i ~ p_0 it is the Zwanzig free-energy difference
    F_1 - F_0 (see `zwanzig`). Computed with log-mean-exp: no overflow.
    """
    check_positive("temperature", temperature)
    _check_no_nan("energies", energies)
    e = jnp.asarray(energies)
    return -temperature * log_mean_exp(-e / temperature, axis=axis)


def zwanzig(delta_u: ArrayLike, temperature: float = 1.0) -> Float[Array, ""]:
    """Free-energy perturbation (Zwanzig 1954): dF = F_1 - F_0 = -T ln < exp(-dU/T) >_0.

    Args:
        delta_u: U_1(x_i) - U_0(x_i) for x_i ~ p_0 ∝ exp(-U_0/T), shape (n,).
    """
    return free_energy(delta_u, temperature)


def jarzynski(work: ArrayLike, temperature: float = 1.0) -> Float[Array, ""]:
    """Jarzynski equality: dF = -T ln < exp(-W/T) > over non-equilibrium realisations.

    Args:
        work: W_i, the work done on the system along each switching trajectory that
            starts from equilibrium at lambda = 0 (shape (n,)), energy units.
    Returns:
        F(lambda = 1) - F(lambda = 0). By Jensen, dF <= <W> (second law).
    """
    return free_energy(work, temperature)


def bar(
    work_forward: ArrayLike,
    work_reverse: ArrayLike,
    temperature: float = 1.0,
    num_iterations: int = 100,
) -> Float[Array, ""]:
    """Bennett acceptance ratio estimate of dF = F_1 - F_0 (Bennett 1976).

    Solves sum_i f(beta (W_F,i - dF) + M) = sum_j f(beta (W_R,j + dF) - M) with
    f(x) = 1 / (1 + e^x), M = ln(n_F / n_R), by bisection on dF (monotone), which makes
    it robust to poor overlap; `num_iterations` halvings of the bracket.

    Args:
        work_forward: W_F = U_1(x) - U_0(x), x ~ p_0 (or forward switching work), (n_F,).
        work_reverse: W_R = U_0(x) - U_1(x), x ~ p_1 (or reverse work), (n_R,).
    """
    check_positive("temperature", temperature)
    num_iterations = check_positive_int("num_iterations", num_iterations)
    _check_no_nan("work_forward", work_forward)
    _check_no_nan("work_reverse", work_reverse)
    wf = jnp.asarray(work_forward).ravel()
    wr = jnp.asarray(work_reverse).ravel()
    beta = 1.0 / temperature
    m = jnp.log(wf.size / wr.size)

    def g(df):  # increasing in df
        lf = jnp.sum(jax.nn.sigmoid(-(beta * (wf - df) + m)))
        lr = jnp.sum(jax.nn.sigmoid(-(beta * (wr + df) - m)))
        return lf - lr

    lo = jnp.minimum(jnp.min(wf), -jnp.max(wr)) - 10.0 * temperature
    hi = jnp.maximum(jnp.max(wf), -jnp.min(wr)) + 10.0 * temperature

    def body(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        up = g(mid) > 0
        return jnp.where(up, lo, mid), jnp.where(up, mid, hi)

    lo, hi = jax.lax.fori_loop(0, num_iterations, body, (lo, hi))
    return 0.5 * (lo + hi)


# --------------------------------------------------------------------------- AIS


class AISResult(NamedTuple):
    """Annealed importance sampling result.

    delta_f: F_1 - F_0 = -T ln(Z_1 / Z_0) estimate (energy units).
    log_z_ratio: ln(Z_1 / Z_0) = log-mean-exp(log_weights).
    log_weights: (n,) per-chain ln w = -W / T.
    work: (n,) per-chain work W = sum_k (beta_k - beta_{k-1}) (E_1 - E_0)(x_{k-1}).
    ess: effective sample size of the normalised weights, (sum w)^2 / sum w^2.
    positions: final states, approximately ~ p_1 after reweighting.
    """

    delta_f: Float[Array, ""]
    log_z_ratio: Float[Array, ""]
    log_weights: Float[Array, " n"]
    work: Float[Array, " n"]
    ess: Float[Array, ""]
    positions: PyTree


def annealed_importance_sampling(
    energy_fn_0: Callable[[PyTree], Array],
    energy_fn_1: Callable[[PyTree], Array],
    key: PRNGKeyArray,
    x0_batch: PyTree,
    lambdas: ArrayLike,
    sampler_factory: Callable[[Callable[[PyTree], Array]], Sampler],
    *,
    temperature: float = 1.0,
    num_mcmc_steps: int = 1,
) -> AISResult:
    """Annealed importance sampling (Neal 2001) between two energies.

    Intermediate energies E_l(x) = (1 - l) E_0(x) + l E_1(x) for the path
    0 = lambda_0 < ... < lambda_K = 1. Each chain starts from x ~ p_0 ∝ exp(-E_0/T)
    (the caller's `x0_batch`, exact samples), and at step k accumulates work
    W += (lambda_k - lambda_{k-1}) (E_1(x) - E_0(x)), then makes `num_mcmc_steps`
    transitions of `sampler_factory(E_lambda_k)`, which must leave exp(-E_l/T)
    invariant (e.g. `lambda e: idf.mala(e, 0.1, T)`). Jarzynski's equality gives
    Z_1 / Z_0 = < exp(-W/T) >, i.e. F_1 - F_0 = jarzynski(W, T).

    Args:
        energy_fn_0, energy_fn_1: E(x) -> scalar for one state.
        key: PRNG key.
        x0_batch: (n, ...) PyTree of exact samples of p_0.
        lambdas: (K+1,) increasing path from 0 to 1.
        sampler_factory: energy_fn -> Sampler; called inside `lax.scan` with a traced
            lambda, so it must not branch on the energy's values in Python.
        temperature: T > 0.
        num_mcmc_steps: transitions per intermediate distribution.
    """
    check_positive("temperature", temperature)
    num_mcmc_steps = check_positive_int("num_mcmc_steps", num_mcmc_steps)
    lam = np.asarray(lambdas, dtype=np.float64)
    if lam.ndim != 1 or lam.size < 2:
        raise ValueError(f"lambdas must be 1-D with at least 2 values, got shape {lam.shape}")
    if not (np.isclose(lam[0], 0.0) and np.isclose(lam[-1], 1.0)) or np.any(np.diff(lam) <= 0):
        raise ValueError("lambdas must increase strictly from 0 to 1")
    leaves = jax.tree.leaves(x0_batch)
    if not leaves or any(jnp.ndim(l) == 0 for l in leaves):
        raise ValueError("x0_batch needs a leading chain axis on every leaf")
    n = jnp.shape(leaves[0])[0]
    dtype = jnp.result_type(*leaves)
    lam_j = jnp.asarray(lam, dtype)

    def delta(x):
        return energy_fn_1(x) - energy_fn_0(x)

    def mixed(l):
        return lambda x: (1.0 - l) * energy_fn_0(x) + l * energy_fn_1(x)

    def chain(key, x0):
        def body(carry, inp):
            x, w = carry
            l_prev, l, k = inp
            w = w + (l - l_prev) * delta(x)
            sampler = sampler_factory(mixed(l))
            state = sampler.init(x)

            def mcmc(s, kk):
                return sampler.step(kk, s)[0], None

            state, _ = jax.lax.scan(mcmc, state, jax.random.split(k, num_mcmc_steps))
            return (state.position, w), None

        keys = jax.random.split(key, lam.size - 1)
        (x, w), _ = jax.lax.scan(body, (x0, jnp.zeros((), dtype)), (lam_j[:-1], lam_j[1:], keys))
        return x, w

    xs, work = jax.vmap(chain)(jax.random.split(key, n), x0_batch)
    log_w = -work / temperature
    log_z = log_mean_exp(log_w)
    wn = jax.nn.softmax(log_w)
    ess = 1.0 / jnp.sum(wn**2)
    return AISResult(-temperature * log_z, log_z, log_w, work, ess, xs)


# --------------------------------------------------------------------------- entropy


def gaussian_entropy(
    samples: Float[ArrayLike, "n d"], bias_correct: bool = True
) -> Float[Array, ""]:
    """Entropy of the Gaussian fitted to the samples: S = (1/2) ln det(2 pi e Sigma).

    Exact for Gaussian data and an upper bound on the entropy of any distribution with
    covariance Sigma (maximum-entropy property). With `bias_correct`, the plug-in
    ln det of the sample covariance (n-1 normalisation) is corrected by its exact
    expectation under Gaussian data, E[ln det S] = ln det Sigma + d ln(2/(n-1))
    + sum_{i=1..d} psi((n-i)/2)  (Ahmed & Gokhale 1989), so the estimate is unbiased
    for Gaussian data. Needs n > d.
    """
    x = _check_samples("samples", samples)
    n, d = x.shape
    if n <= d:
        raise ValueError(f"gaussian_entropy needs more samples than dimensions, got n={n}, d={d}")
    xc = x - jnp.mean(x, axis=0, keepdims=True)
    cov = xc.T @ xc / (n - 1)
    sign, logdet = jnp.linalg.slogdet(cov)
    logdet = jnp.where(sign > 0, logdet, -jnp.inf)
    if bias_correct:
        i = jnp.arange(1, d + 1, dtype=x.dtype)
        logdet = logdet - d * jnp.log(2.0 / (n - 1)) - jnp.sum(digamma((n - i) / 2.0))
    return 0.5 * (d * jnp.log(2.0 * jnp.pi * jnp.e) + logdet)


def histogram_entropy(
    samples: Float[ArrayLike, "n d"],
    bins: int = 32,
    range: tuple[float, float] | None = None,  # noqa: A002 - numpy's name
    miller_madow: bool = True,
) -> Float[Array, ""]:
    """Differential entropy from a histogram: S = -sum_i p_i ln(p_i / V_i).

    For d > 1 the samples are binned on a regular d-dimensional grid of `bins`^d cells
    (keep d small). `range` (lo, hi) applies to every dimension; default: the data's
    min/max per dimension. The Miller-Madow term (m - 1) / (2n), m = occupied cells,
    corrects the plug-in estimator's downward bias.
    """
    x = _check_samples("samples", samples)
    bins = check_positive_int("bins", bins)
    n, d = x.shape
    if bins**d > 2**24:
        raise ValueError(f"histogram with {bins}^{d} cells is too large; use knn_entropy")
    if range is None:
        lo, hi = jnp.min(x, axis=0), jnp.max(x, axis=0)
    else:
        lo = jnp.full((d,), range[0], x.dtype)
        hi = jnp.full((d,), range[1], x.dtype)
    width = jnp.where(hi > lo, (hi - lo) / bins, 1.0)
    idx = jnp.clip(jnp.floor((x - lo[None]) / width[None]).astype(jnp.int32), 0, bins - 1)
    flat = jnp.ravel_multi_index(tuple(idx.T), (bins,) * d, mode="clip")
    counts = jnp.zeros((bins**d,), x.dtype).at[flat].add(1.0)
    p = counts / n
    log_vol = jnp.sum(jnp.log(width))
    plogp = jnp.where(counts > 0, p * jnp.log(jnp.where(counts > 0, p, 1.0)), 0.0)
    s = -jnp.sum(plogp) + log_vol
    if miller_madow:
        s = s + (jnp.sum(counts > 0) - 1) / (2.0 * n)
    return s


def knn_entropy(
    samples: Float[ArrayLike, "n d"], k: int = 3, block_size: int = 1024
) -> Float[Array, ""]:
    """Kozachenko-Leonenko k-nearest-neighbour entropy estimator (Euclidean).

    S = psi(n) - psi(k) + ln V_d + (d / n) sum_i ln eps_i,  V_d = pi^{d/2} / Gamma(d/2 + 1),
    with eps_i the distance from x_i to its k-th nearest neighbour (Kraskov, Stögbauer &
    Grassberger 2004, eq. 20). Asymptotically unbiased for continuous densities; in high
    dimension it is biased low at finite n. Distances are computed in blocks of
    `block_size` rows: memory O(block_size * n).
    """
    x = _check_samples("samples", samples, min_n=2)
    k = check_positive_int("k", k)
    block_size = check_positive_int("block_size", block_size)
    n, d = x.shape
    if k >= n:
        raise ValueError(f"k ({k}) must be smaller than the number of samples ({n})")
    block_size = min(block_size, n)
    sq = jnp.sum(x * x, axis=1)
    num_blocks = -(-n // block_size)
    pad = num_blocks * block_size - n
    xp = jnp.concatenate([x, jnp.zeros((pad, d), x.dtype)])
    rows = jnp.arange(num_blocks * block_size).reshape(num_blocks, block_size)

    def block(r):
        xb = xp[r]
        d2 = jnp.sum(xb * xb, axis=1)[:, None] + sq[None, :] - 2.0 * xb @ x.T
        d2 = jnp.maximum(d2, 0.0)
        d2 = jnp.where(r[:, None] == jnp.arange(n)[None, :], jnp.inf, d2)  # exclude self
        kth = -jax.lax.top_k(-d2, k)[0][:, -1]
        return kth

    kth_d2 = jax.lax.map(block, rows).reshape(-1)[:n]
    tiny = jnp.finfo(x.dtype).tiny
    log_eps = 0.5 * jnp.log(jnp.maximum(kth_d2, tiny))
    log_vd = 0.5 * d * jnp.log(jnp.pi) - gammaln(0.5 * d + 1.0)
    return digamma(float(n)) - digamma(float(k)) + log_vd + d * jnp.mean(log_eps)


_ESTIMATORS = {
    "gaussian": gaussian_entropy,
    "knn": knn_entropy,
    "histogram": histogram_entropy,
}


def _entropy_fn(estimator) -> Callable:
    if callable(estimator):
        return estimator
    if estimator not in _ESTIMATORS:
        raise ValueError(
            f"unknown entropy estimator {estimator!r}; choose one of {sorted(_ESTIMATORS)} "
            "or pass a function samples -> entropy"
        )
    return _ESTIMATORS[estimator]


# --------------------------------------------------------------------------- ensembles


class EntropyProduction(NamedTuple):
    """Ensemble thermodynamics along a trace, one value per recorded draw.

    mean_energy: (draws,) <E> over chains.
    entropy: (draws,) ensemble entropy S of the positions across chains (nats).
    free_energy: (draws,) non-equilibrium free energy F = <E> - T S.
    production: (draws - 1,) total entropy produced in each interval,
        Sigma = dS - d<E>/T = -dF / T (system entropy change plus the heat given to the
        bath over T); >= 0 by the second law for dynamics that leave exp(-E/T) invariant.
    """

    mean_energy: Float[Array, " draws"]
    entropy: Float[Array, " draws"]
    free_energy: Float[Array, " draws"]
    production: Float[Array, " draws_m1"]


def _flatten_positions(positions: PyTree) -> jax.Array:
    """PyTree with leaves (chains, draws, ...) -> (chains, draws, D) float array."""
    leaves = jax.tree.leaves(positions)
    if not leaves:
        raise ValueError("trace.positions is empty")
    c, dr = jnp.shape(leaves[0])[:2]
    flat = [jnp.reshape(l, (c, dr, -1)).astype(jnp.result_type(float)) for l in leaves]
    return jnp.concatenate(flat, axis=-1)


def ensemble_free_energy(
    samples: Float[ArrayLike, "n d"],
    energies: Float[ArrayLike, " n"],
    temperature: float = 1.0,
    estimator: Literal["gaussian", "knn", "histogram"] | Callable = "gaussian",
) -> Float[Array, ""]:
    """F[p] = <E>_p - T S[p] of the ensemble the samples are drawn from.

    F[p] - F_eq = T KL(p || exp(-E/T)/Z) >= 0, so F[p] is minimised by the Boltzmann
    distribution, and any Markov kernel that leaves it invariant cannot increase F.
    """
    check_positive("temperature", temperature)
    s = _entropy_fn(estimator)(samples)
    return jnp.mean(jnp.asarray(energies)) - temperature * s


def entropy_production(
    trace,
    temperature: float = 1.0,
    estimator: Literal["gaussian", "knn", "histogram"] | Callable = "gaussian",
) -> EntropyProduction:
    """Ensemble entropy production along a `Trace` (chains are the ensemble).

    At each recorded draw the chains' positions give the ensemble entropy S(t) (by
    `estimator`) and their energies <E>(t); the interval's total entropy production is
    Sigma = [S(t+1) - S(t)] - [<E>(t+1) - <E>(t)] / T = -[F(t+1) - F(t)] / T.

    The entropy is of the flattened position (all leaves), so chains must outnumber the
    state dimension for the Gaussian estimator.
    """
    check_positive("temperature", temperature)
    est = _entropy_fn(estimator)
    x = _flatten_positions(trace.positions)  # (chains, draws, D)
    e = jnp.asarray(trace.energies)
    if e.ndim != 2:
        raise ValueError(
            f"trace.energies must be (chains, draws), got shape {e.shape} (record='all' "
            "replica traces: select one temperature first)"
        )
    if e.shape[1] < 2:
        raise ValueError("entropy production needs at least 2 recorded draws")
    s = jax.vmap(est, in_axes=1)(x)
    mean_e = jnp.mean(e, axis=0)
    f = mean_e - temperature * s
    return EntropyProduction(mean_e, s, f, -jnp.diff(f) / temperature)
