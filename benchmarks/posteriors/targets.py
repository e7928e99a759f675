"""Posteriors with known answers: energy, dimension, E[x], E[x^2], Var[x^2], an initialiser.

Every target is in the unconstrained parametrisation a sampler sees (x in R^d). Its energy
E(x) = -log p(x) + const is plain JAX, in the float type of `x` (float32, or float64 under
`jax.enable_x64`): the data are held as float64 NumPy arrays and cast to `x.dtype` inside.

Moments are exact where the law is known in closed form (Gaussians, the banana, the
funnel) and, for the three Bayesian models, a long-run reference stored in
`references/<name>.npz` together with its Monte-Carlo standard error (made by
`make_references.py`, whose command line is in that file's docstring).

    from benchmarks.posteriors import get_target, TARGET_NAMES
    t = get_target("funnel")
    t.energy(x), t.dim, t.mean, t.second_moment, t.var_second_moment, t.init(key, 128)

Sources:
- ill-conditioned Gaussians: covariance Q diag(lam) Q^T, lam log-spaced over [k^-1/2, k^1/2]
  (condition number k), Q a Haar rotation from a fixed seed (the "ICG" of Robnik et al.,
  MCHMC arXiv 2212.08549, and of the MAMS paper arXiv 2503.01707, rotated here);
- banana: Inference Gym's `Banana` (x0 ~ N(0, 10^2), x1 | x0 ~ N(0.03 (x0^2 - 100), 1));
- Neal's funnel: Neal (2003), "Slice sampling", Ann. Statist. 31(3): v ~ N(0, 3^2),
  x_i | v ~ N(0, e^v), i = 1..9 (d = 10);
- logistic regression: scikit-learn's breast-cancer data (Wolberg et al., UCI), 30
  standardised features plus an intercept, beta ~ N(0, I) (as Inference Gym's German-credit
  logistic regression);
- eight schools, non-centred: Rubin (1981), Gelman et al. BDA3 ch. 5; posteriordb's
  `eight_schools-eight_schools_noncentered` (mu ~ N(0, 5^2), tau ~ half-Cauchy(0, 5),
  theta_j = mu + tau eta_j, eta_j ~ N(0, 1)), sampled as (mu, log tau, eta_1..8);
- item response (2PL): Birnbaum (1968) in Lord & Novick; Inference Gym's
  `SyntheticItemResponseTheory` is its 1PL cousin. 50 persons x 10 items, responses
  simulated once with a fixed seed (`IRT_SEED`): y_pj ~ Bernoulli(sigmoid(a_j (theta_p -
  b_j))), theta_p ~ N(0, 1), b_j ~ N(0, 1), log a_j ~ N(0, 0.5^2), sampled as
  (theta_1..50, b_1..10, log a_1..10) (d = 70).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import pathlib
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

__all__ = ["REFERENCE_DIR", "TARGET_NAMES", "Target", "get_target", "load_reference"]

REFERENCE_DIR = pathlib.Path(__file__).parent / "references"


@dataclasses.dataclass(frozen=True)
class Target:
    """One benchmark posterior.

    energy: x (d,) -> scalar, -log density up to a constant, in x's float type.
    mean, second_moment, var_second_moment: (d,) float64 E[x_i], E[x_i^2], Var[x_i^2].
    second_moment_se: (d,) Monte-Carlo standard error of `second_moment` (0 when exact).
    init: (key, num_chains, dtype) -> (num_chains, d) starting points.
    exact: the moments are exact (closed form), not a long-run reference.
    sample: (key, n) -> (n, d) exact draws, where the law can be sampled directly.
    """

    name: str
    dim: int
    energy: Callable[[Array], Array]
    mean: np.ndarray
    second_moment: np.ndarray
    var_second_moment: np.ndarray
    second_moment_se: np.ndarray
    init: Callable[..., Array]
    exact: bool
    source: str
    sample: Callable[[PRNGKeyArray, int], Array] | None = None

    def logdensity(self, x: Float[Array, " d"]) -> Float[Array, ""]:
        """-energy(x): the form BlackJAX takes."""
        return -self.energy(x)


def _standard_normal_init(dim: int) -> Callable[..., Array]:
    def init(key: PRNGKeyArray, num_chains: int, dtype=None) -> Array:
        return jax.random.normal(key, (num_chains, dim), dtype or jnp.result_type(float))

    return init


# --------------------------------------------------------------------------- Gaussians


def _gaussian(condition_number: float, dim: int = 100, seed: int = 0) -> Target:
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    q = q * np.sign(np.diag(r))  # Haar-distributed rotation
    half = 0.5 * math.log10(condition_number)
    lam = np.logspace(-half, half, dim)
    cov = (q * lam) @ q.T
    prec = (q / lam) @ q.T
    prec = 0.5 * (prec + prec.T)
    chol = np.linalg.cholesky(0.5 * (cov + cov.T))
    var = np.diag(cov).copy()

    def energy(x: Float[Array, " d"]) -> Float[Array, ""]:
        p = jnp.asarray(prec, x.dtype)
        return 0.5 * jnp.dot(x, p @ x)

    def sample(key: PRNGKeyArray, n: int) -> Array:
        dt = jnp.result_type(float)
        z = jax.random.normal(key, (n, dim), dt)
        return z @ jnp.asarray(chol, dt).T

    name = f"gaussian_k{int(condition_number):d}"
    return Target(
        name=name,
        dim=dim,
        energy=energy,
        mean=np.zeros(dim),
        second_moment=var,
        var_second_moment=2.0 * var**2,
        second_moment_se=np.zeros(dim),
        init=_standard_normal_init(dim),
        exact=True,
        source=f"{dim}-d Gaussian, condition number {condition_number:g}, rotated (seed {seed})",
        sample=sample,
    )


# --------------------------------------------------------------------------- banana

_BANANA_C = 0.03


def _banana() -> Target:
    c = _BANANA_C

    def energy(x: Float[Array, " d"]) -> Float[Array, ""]:
        x0, x1 = x[0], x[1]
        return x0**2 / 200.0 + 0.5 * (x1 - c * (x0**2 - 100.0)) ** 2

    def sample(key: PRNGKeyArray, n: int) -> Array:
        dt = jnp.result_type(float)
        z = jax.random.normal(key, (n, 2), dt)
        x0 = 10.0 * z[:, 0]
        return jnp.stack([x0, c * (x0**2 - 100.0) + z[:, 1]], axis=1)

    # x0 = 10 z: E x0^2 = 100, Var x0^2 = 2e4. x1 = u + e, u = 100 c (z^2 - 1):
    # E u^2 = 2 (100 c)^2, E u^4 = 60 (100 c)^4 (E (z^2 - 1)^4 = 105 - 60 + 18 - 4 + 1).
    eu2 = 2.0 * (100 * c) ** 2
    eu4 = 60.0 * (100 * c) ** 4
    ex1_2 = eu2 + 1.0
    ex1_4 = eu4 + 6.0 * eu2 + 3.0
    return Target(
        name="banana",
        dim=2,
        energy=energy,
        mean=np.zeros(2),
        second_moment=np.array([100.0, ex1_2]),
        var_second_moment=np.array([2e4, ex1_4 - ex1_2**2]),
        second_moment_se=np.zeros(2),
        init=_standard_normal_init(2),
        exact=True,
        source="Inference Gym Banana (curvature 0.03)",
        sample=sample,
    )


# --------------------------------------------------------------------------- funnel


def _funnel(dim: int = 10) -> Target:
    k = dim - 1

    def energy(z: Float[Array, " d"]) -> Float[Array, ""]:
        v, x = z[0], z[1:]
        return v**2 / 18.0 + 0.5 * jnp.sum(x**2) * jnp.exp(-v) + 0.5 * k * v

    def sample(key: PRNGKeyArray, n: int) -> Array:
        dt = jnp.result_type(float)
        kv, kx = jax.random.split(key)
        v = 3.0 * jax.random.normal(kv, (n, 1), dt)
        return jnp.concatenate([v, jnp.exp(v / 2) * jax.random.normal(kx, (n, k), dt)], axis=1)

    # v ~ N(0, 9): E v^2 = 9, Var v^2 = 2 * 81. x_i: E x^2 = E e^v = e^{9/2},
    # E x^4 = 3 E e^{2v} = 3 e^{18}.
    second = np.array([9.0] + [math.exp(4.5)] * k)
    var2 = np.array([162.0] + [3.0 * math.exp(18.0) - math.exp(9.0)] * k)
    return Target(
        name="funnel",
        dim=dim,
        energy=energy,
        mean=np.zeros(dim),
        second_moment=second,
        var_second_moment=var2,
        second_moment_se=np.zeros(dim),
        init=_standard_normal_init(dim),
        exact=True,
        source="Neal's funnel, d = 10",
        sample=sample,
    )


# --------------------------------------------------------------------------- logistic


@functools.cache
def breast_cancer_design() -> tuple[np.ndarray, np.ndarray]:
    """(X, y): standardised features with a leading intercept column (569, 31), labels 0/1."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    x = np.asarray(data.data, np.float64)  # type: ignore[attr-defined]
    x = (x - x.mean(0)) / x.std(0)
    x = np.concatenate([np.ones((x.shape[0], 1)), x], axis=1)
    return x, np.asarray(data.target, np.float64)  # type: ignore[attr-defined]


def logistic_energy(x_design: np.ndarray, y: np.ndarray) -> Callable[[Array], Array]:
    """E(beta) = sum_n [softplus(eta_n) - y_n eta_n] + |beta|^2 / 2, eta = X beta."""

    def energy(beta: Float[Array, " d"]) -> Float[Array, ""]:
        eta = jnp.asarray(x_design, beta.dtype) @ beta
        nll = jnp.sum(jax.nn.softplus(eta) - jnp.asarray(y, beta.dtype) * eta)
        return nll + 0.5 * jnp.sum(beta**2)

    return energy


# --------------------------------------------------------------------------- eight schools

EIGHT_SCHOOLS_Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
EIGHT_SCHOOLS_SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def eight_schools_energy(z: Float[Array, " d"]) -> Float[Array, ""]:
    """-log p(mu, log tau, eta | y) for the non-centred eight schools (Jacobian of log tau)."""
    mu, log_tau, eta = z[0], z[1], z[2:]
    tau = jnp.exp(log_tau)
    y = jnp.asarray(EIGHT_SCHOOLS_Y, z.dtype)
    sigma = jnp.asarray(EIGHT_SCHOOLS_SIGMA, z.dtype)
    theta = mu + tau * eta
    prior = mu**2 / 50.0 + jnp.log1p(tau**2 / 25.0) - log_tau + 0.5 * jnp.sum(eta**2)
    return prior + 0.5 * jnp.sum(((y - theta) / sigma) ** 2)


# --------------------------------------------------------------------------- item response

IRT_SEED = 20261202
IRT_PERSONS, IRT_ITEMS = 50, 10
IRT_LOG_A_SD = 0.5


@functools.cache
def irt_responses() -> np.ndarray:
    """(persons, items) 0/1 responses simulated once from the 2PL prior with `IRT_SEED`."""
    rng = np.random.default_rng(IRT_SEED)
    theta = rng.normal(size=IRT_PERSONS)
    b = rng.normal(size=IRT_ITEMS)
    a = np.exp(IRT_LOG_A_SD * rng.normal(size=IRT_ITEMS))
    logits = a[None, :] * (theta[:, None] - b[None, :])
    return (rng.uniform(size=logits.shape) < 1.0 / (1.0 + np.exp(-logits))).astype(np.float64)


def irt_energy(z: Float[Array, " d"]) -> Float[Array, ""]:
    """-log p(theta, b, log a | y) of the 2PL model (priors in the module doc)."""
    theta = z[:IRT_PERSONS]
    b = z[IRT_PERSONS : IRT_PERSONS + IRT_ITEMS]
    log_a = z[IRT_PERSONS + IRT_ITEMS :]
    y = jnp.asarray(irt_responses(), z.dtype)
    eta = jnp.exp(log_a)[None, :] * (theta[:, None] - b[None, :])
    nll = jnp.sum(jax.nn.softplus(eta) - y * eta)
    prior = 0.5 * (jnp.sum(theta**2) + jnp.sum(b**2) + jnp.sum((log_a / IRT_LOG_A_SD) ** 2))
    return nll + prior


# --------------------------------------------------------------------------- references


def load_reference(name: str) -> dict[str, np.ndarray]:
    """The stored long-run moments of `name`: mean, second_moment, var_second_moment, *_se."""
    path = REFERENCE_DIR / f"{name}.npz"
    if not path.exists():
        raise FileNotFoundError(
            f"no stored reference for {name!r} at {path}; build it with "
            "`PYTHONPATH=$PWD python benchmarks/posteriors/make_references.py`"
        )
    with np.load(path) as f:
        return {k: np.asarray(f[k]) for k in f.files}


def _from_reference(name: str, dim: int, energy, source: str) -> Target:
    ref = load_reference(name)
    for key in ("mean", "second_moment", "var_second_moment", "second_moment_se"):
        if ref[key].shape != (dim,):
            raise ValueError(f"reference {name}: {key} has shape {ref[key].shape}, want ({dim},)")
    return Target(
        name=name,
        dim=dim,
        energy=energy,
        mean=ref["mean"],
        second_moment=ref["second_moment"],
        var_second_moment=ref["var_second_moment"],
        second_moment_se=ref["second_moment_se"],
        init=_standard_normal_init(dim),
        exact=False,
        source=source,
    )


def _logistic() -> Target:
    x, y = breast_cancer_design()
    return _from_reference(
        "logistic_breast_cancer",
        x.shape[1],
        logistic_energy(x, y),
        "Bayesian logistic regression, breast cancer (569 x 30 + intercept), beta ~ N(0, I)",
    )


def _eight_schools() -> Target:
    return _from_reference(
        "eight_schools_noncentered",
        10,
        eight_schools_energy,
        "eight schools, non-centred (posteriordb), (mu, log tau, eta_1..8)",
    )


def _irt() -> Target:
    return _from_reference(
        "irt_2pl",
        IRT_PERSONS + 2 * IRT_ITEMS,
        irt_energy,
        "item response 2PL, 50 persons x 10 items simulated (seed IRT_SEED), (theta, b, log a)",
    )


_BUILDERS: dict[str, Callable[[], Target]] = {
    "gaussian_k100": lambda: _gaussian(1e2),
    "gaussian_k10000": lambda: _gaussian(1e4),
    "banana": _banana,
    "funnel": _funnel,
    "logistic_breast_cancer": _logistic,
    "eight_schools_noncentered": _eight_schools,
    "irt_2pl": _irt,
}

TARGET_NAMES: tuple[str, ...] = tuple(_BUILDERS)


def get_target(name: str) -> Target:
    """The target called `name` (one of `TARGET_NAMES`)."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown target {name!r}; choose one of {', '.join(TARGET_NAMES)}")
    return _BUILDERS[name]()
