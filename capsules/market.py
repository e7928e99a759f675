"""Market capsule: mean-variance portfolios as a Boltzmann distribution, and price dynamics
as differentiable simulation (GBM, Ornstein-Uhlenbeck) with calibration by gradient descent.

Portfolio. For weights w (fractions of capital, sum w = 1, w >= 0 when long-only) the
mean-variance energy is

    E(w) = (gamma / 2) w^T Sigma w - mu^T w        (units of return per period)

(Markowitz 1952; gamma = risk aversion). The capsule targets p(w) ∝ exp(-E(w) / T): T is
the uncertainty about the optimum, T -> 0 concentrates on the minimiser. The state is
z in R^{n-1}, coordinates in an orthonormal basis B of the budget plane: w = 1/n + B z, so
sum w = 1 holds exactly and any sampler moves freely in the plane; in the long-only case
E = +inf outside the simplex (a hard wall that Metropolis-adjusted samplers reject exactly).
`optimal_portfolio` minimises E by projected Nesterov gradient descent (optax) onto the
simplex (or the plane).

Price dynamics. `gbm_paths`: dS = mu S dt + sigma S dW, simulated as log S with diffrax's
Euler scheme (d log S = (mu - sigma^2/2) dt + sigma dW is exact under Euler).
`ou_paths`: dX = theta (m - X) dt + sigma dW with Euler on a sub-grid. `calibrate_gbm` /
`calibrate_ou` fit parameters to an observed series by the simulated method of moments:
simulate paths with fixed noise (common random numbers), compare summary statistics with
the observed ones, and descend the squared, standardised difference with optax (Adam),
differentiating through diffrax (`ForwardMode`, a handful of parameters).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from ._base import Capsule, register

__all__ = [
    "CalibrationResult",
    "budget_basis",
    "calibrate_gbm",
    "calibrate_ou",
    "gbm_paths",
    "mean_variance_energy",
    "optimal_portfolio",
    "ou_paths",
    "portfolio",
    "project_simplex",
]


# --------------------------------------------------------------------------- portfolio


def _check_problem(mu, cov, risk_aversion):
    mu = np.asarray(mu, dtype=np.float64)
    cov = np.asarray(cov, dtype=np.float64)
    if mu.ndim != 1 or mu.shape[0] < 2:
        raise ValueError(f"mu must be a vector of >= 2 expected returns, got shape {mu.shape}")
    n = mu.shape[0]
    if cov.shape != (n, n):
        raise ValueError(f"cov must be {n}x{n} to match mu, got shape {cov.shape}")
    if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(cov))):
        raise ValueError("mu and cov must be finite")
    if not np.allclose(cov, cov.T, atol=1e-10 * max(1.0, np.abs(cov).max())):
        raise ValueError("cov must be symmetric")
    eig = np.linalg.eigvalsh(cov)
    if eig.min() < -1e-10 * max(1.0, eig.max()):
        raise ValueError(f"cov must be positive semi-definite, smallest eigenvalue {eig.min():.3g}")
    if isinstance(risk_aversion, bool) or not np.isfinite(risk_aversion) or risk_aversion <= 0:
        raise ValueError(f"risk_aversion must be finite and > 0, got {risk_aversion!r}")
    return mu, cov, float(risk_aversion)


def mean_variance_energy(w, mu, cov, risk_aversion):
    """E(w) = (gamma / 2) w^T Sigma w - mu^T w."""
    return 0.5 * risk_aversion * w @ cov @ w - mu @ w


def budget_basis(n: int) -> np.ndarray:
    """Orthonormal basis B (n, n-1) of the plane {v : sum v = 0} (QR of a Helmert-like matrix)."""
    a = np.eye(n)[:, : n - 1] - 1.0 / n
    q, _ = np.linalg.qr(a)
    return q


def project_simplex(w: Float[Array, " n"]) -> Float[Array, " n"]:
    """Euclidean projection onto {w >= 0, sum w = 1} (sort-based, Duchi et al. 2008)."""
    return optax.projections.projection_simplex(w)


@register(
    "market.portfolio",
    "Mean-variance portfolio energy (gamma/2 w'Sigma w - mu'w) on the budget simplex; "
    "Boltzmann over portfolios",
)
def portfolio(
    mu: Sequence[float],
    cov: Sequence[Sequence[float]],
    risk_aversion: float,
    long_only: bool = True,
    names: Sequence[str] | None = None,
) -> Capsule:
    """Mean-variance portfolio capsule.

    Args:
        mu: (n,) expected returns per period.
        cov: (n, n) covariance of returns per period (symmetric, PSD).
        risk_aversion: gamma > 0.
        long_only: weights >= 0 (the simplex) or any weights summing to 1.
        names: asset names for `decode` (default "asset0", ...).

    Returns:
        A Capsule over z in R^{n-1} (w = 1/n + B z, `budget_basis`), energy E(w(z)), +inf
        outside the simplex when long-only; `project` maps z onto the feasible set exactly;
        `decode(z)` -> {'weights': {name: w}, 'expected_return', 'volatility', 'energy'}.
        params holds 'basis' and 'to_weights' for users who work in weight space.
    """
    mu_np, cov_np, gamma = _check_problem(mu, cov, risk_aversion)
    n = mu_np.shape[0]
    if names is None:
        names = [f"asset{i}" for i in range(n)]
    names = [str(s) for s in names]
    if len(names) != n or len(set(names)) != n:
        raise ValueError(f"names must be {n} distinct strings, got {names}")
    B = jnp.asarray(budget_basis(n), jnp.float32)
    mu_j, cov_j = jnp.asarray(mu_np, jnp.float32), jnp.asarray(cov_np, jnp.float32)
    center = jnp.full((n,), 1.0 / n, jnp.float32)

    def to_weights(z):
        return center + B @ z

    def to_z(w):
        return B.T @ (w - center)

    def energy_fn(z):
        w = to_weights(z)
        e = mean_variance_energy(w, mu_j, cov_j, gamma)
        if long_only:
            e = jnp.where(jnp.all(w >= 0.0), e, jnp.inf)
        return e

    def project(z):
        if not long_only:
            return z
        return to_z(project_simplex(to_weights(z)))

    def init(key, num_chains):
        w = jax.random.dirichlet(key, jnp.ones(n), (num_chains,))  # uniform on the simplex
        return jax.vmap(to_z)(w.astype(jnp.float32))

    def decode(z):
        w = np.asarray(to_weights(jnp.asarray(z)), np.float64)
        return {
            "weights": dict(zip(names, w.tolist())),
            "expected_return": float(mu_np @ w),
            "volatility": float(np.sqrt(max(w @ cov_np @ w, 0.0))),
            "energy": float(mean_variance_energy(w, mu_np, cov_np, gamma)),
        }

    return Capsule(
        name="market.portfolio",
        energy_fn=energy_fn,
        init=init,
        decode=decode,
        params={
            "mu": mu_np.tolist(),
            "cov": cov_np.tolist(),
            "risk_aversion": gamma,
            "long_only": bool(long_only),
            "names": names,
            "basis": np.asarray(B),
            "to_weights": to_weights,
        },
        description="mean-variance portfolio on the budget simplex",
        project=project,
    )


def optimal_portfolio(
    mu, cov, risk_aversion: float, long_only: bool = True, num_steps: int = 20000
) -> Float[Array, " n"]:
    """Minimiser of E(w) on the simplex (long-only) or the budget plane.

    Projected Nesterov gradient descent (optax.sgd with nesterov momentum 0.9, step
    1 / L with L = gamma * lambda_max(Sigma), projection after every update); the objective
    is convex, so this converges to the global minimum. (A projected method on purpose:
    `idf.relax` takes a projection, but its L-BFGS and FIRE stall short of a minimum on
    the simplex boundary, ~1e-2 off in the weights where this is ~1e-6.)
    """
    mu_np, cov_np, gamma = _check_problem(mu, cov, risk_aversion)
    n = mu_np.shape[0]
    lip = gamma * float(np.linalg.eigvalsh(cov_np).max())
    lr = 1.0 / max(lip, 1e-12)
    mu_j, cov_j = jnp.asarray(mu_np, jnp.float32), jnp.asarray(cov_np, jnp.float32)

    def proj(w: Float[Array, " n"]) -> Float[Array, " n"]:
        if long_only:
            return project_simplex(w)
        return w - (jnp.sum(w) - 1.0) / n

    opt = optax.sgd(lr, momentum=0.9, nesterov=True)
    grad_fn = jax.grad(lambda w: mean_variance_energy(w, mu_j, cov_j, gamma))

    @jax.jit
    def run(w0):
        def body(_, carry):
            w, s = carry
            upd, s = opt.update(grad_fn(w), s, w)
            return proj(jnp.asarray(optax.apply_updates(w, upd))), s

        return jax.lax.fori_loop(0, num_steps, body, (w0, opt.init(w0)))[0]

    return run(jnp.full((n,), 1.0 / n, jnp.float32))


# --------------------------------------------------------------------------- price dynamics


def _check_sim(num_steps, num_paths, dt):
    for name, v in (("num_steps", num_steps), ("num_paths", num_paths)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    if not (np.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be finite and > 0, got {dt!r}")


def _euler_paths(
    drift: Callable[[Any, Array, Any], Any],
    diffusion: Callable[[Any, Array, Any], Any],
    y0: Array,
    dt: float,
    num_steps: int,
    substeps: int,
    key: PRNGKeyArray,
    num_paths: int,
) -> Float[Array, "paths steps_plus_1"]:
    """Euler-Maruyama with diffrax: (num_paths, num_steps + 1) values on the grid k * dt."""
    t1 = num_steps * dt
    ts = jnp.linspace(0.0, t1, num_steps + 1)

    def one(k):
        bm = diffrax.UnsafeBrownianPath(shape=(), key=k)
        terms = diffrax.MultiTerm(diffrax.ODETerm(drift), diffrax.ControlTerm(diffusion, bm))
        sol = diffrax.diffeqsolve(
            terms,
            diffrax.Euler(),
            0.0,
            t1,
            dt / substeps,
            y0,
            saveat=diffrax.SaveAt(ts=ts),
            max_steps=num_steps * substeps + 1,
            adjoint=diffrax.ForwardMode(),
        )
        if sol.ys is None:  # SaveAt(ts=...) always saves; diffrax types `ys` as optional
            raise RuntimeError("diffrax returned no saved values")
        return sol.ys

    return jax.vmap(one)(jax.random.split(key, num_paths))


def gbm_paths(
    key: PRNGKeyArray, s0, mu, sigma, dt: float, num_steps: int, num_paths: int = 1
) -> Float[Array, "paths steps_plus_1"]:
    """Geometric Brownian motion dS = mu S dt + sigma S dW on the grid k * dt (years).

    Simulated as log S with diffrax Euler: d log S = (mu - sigma^2 / 2) dt + sigma dW, exact
    in distribution at the grid points. Differentiable in (s0, mu, sigma) (forward mode).
    """
    _check_sim(num_steps, num_paths, dt)
    ys = _euler_paths(
        lambda t, y, a: mu - 0.5 * sigma**2,
        lambda t, y, a: sigma,
        jnp.log(jnp.asarray(s0, jnp.float32)),
        dt,
        num_steps,
        1,
        key,
        num_paths,
    )
    return jnp.exp(ys)


def ou_paths(
    key: PRNGKeyArray,
    x0,
    theta,
    mean,
    sigma,
    dt: float,
    num_steps: int,
    num_paths: int = 1,
    substeps: int = 4,
) -> Float[Array, "paths steps_plus_1"]:
    """Ornstein-Uhlenbeck dX = theta (m - X) dt + sigma dW on the grid k * dt.

    Euler-Maruyama with `substeps` steps per grid interval (the one-step autocorrelation is
    (1 - theta dt / substeps)^substeps vs the exact exp(-theta dt)). Differentiable in the
    parameters (forward mode).
    """
    _check_sim(num_steps, num_paths, dt)
    return _euler_paths(
        lambda t, y, a: theta * (mean - y),
        lambda t, y, a: sigma,
        jnp.asarray(x0, jnp.float32),
        dt,
        num_steps,
        substeps,
        key,
        num_paths,
    )


class CalibrationResult(NamedTuple):
    params: dict  # fitted parameters
    loss_history: np.ndarray  # (num_iters,)
    observed_stats: np.ndarray
    simulated_stats: np.ndarray


def _gbm_stats(s, dt):
    r = jnp.diff(jnp.log(s), axis=-1)
    return jnp.stack([jnp.mean(r, -1) / dt, jnp.std(r, -1) / jnp.sqrt(dt)], -1)


def _ou_stats(x):
    xc = x - jnp.mean(x, -1, keepdims=True)
    var = jnp.mean(xc**2, -1)
    rho = jnp.mean(xc[..., 1:] * xc[..., :-1], -1) / var
    dx = jnp.diff(x, axis=-1)
    return jnp.stack([jnp.mean(x, -1), jnp.sqrt(var), rho, jnp.std(dx, -1)], -1)


def _sim_stats(kind, p, d, key, n, num_paths, dt, substeps):
    """Mean summary statistics of `num_paths` simulated paths at parameters p (fixed key)."""
    if kind == "gbm":
        mu = d["scale"] * p["mu_z"]
        paths = gbm_paths(key, d["y0"], mu, jnp.exp(p["log_sigma"]), dt, n, num_paths)
        return jnp.mean(_gbm_stats(paths, dt), 0)
    m = d["obs"][0] + d["sd"] * p["mean_z"]
    paths = ou_paths(
        key,
        d["y0"],
        jnp.exp(p["log_theta"]),
        m,
        jnp.exp(p["log_sigma"]),
        dt,
        n,
        num_paths,
        substeps,
    )
    return jnp.mean(_ou_stats(paths), 0)


@functools.partial(
    jax.jit, static_argnames=("kind", "n", "num_paths", "dt", "substeps", "num_iters", "lr")
)
def _fit(p0, d, key, *, kind, n, num_paths, dt, substeps, num_iters, lr):
    """Adam on the standardised moment loss; gradients by forward mode through diffrax.

    Module-level and jitted on (shapes, static settings), so repeated calibrations of series
    of the same length reuse one compilation."""
    opt = optax.adam(lr)

    def loss(p):
        st = _sim_stats(kind, p, d, key, n, num_paths, dt, substeps)
        return jnp.sum(((st - d["obs"]) / d["scale"]) ** 2)

    grad = jax.jacfwd(loss)  # few parameters, diffrax ForwardMode: forward-mode gradient

    def body(carry, _):
        p, s = carry
        upd, s = opt.update(grad(p), s, p)
        return (optax.apply_updates(p, upd), s), loss(p)

    (p, _), hist = jax.lax.scan(body, (p0, opt.init(p0)), None, length=num_iters)
    return p, hist, _sim_stats(kind, p, d, key, n, num_paths, dt, substeps)


def _check_series(series, what):
    x = np.asarray(series, np.float64)
    if x.ndim != 1 or x.shape[0] < 10:
        raise ValueError(f"{what}: series must be 1-D with >= 10 observations, got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what}: series has non-finite values")
    return x


def calibrate_gbm(
    prices,
    dt: float,
    *,
    key: PRNGKeyArray,
    num_paths: int = 32,
    num_iters: int = 300,
    lr: float = 0.05,
) -> CalibrationResult:
    """Fit (mu, sigma) of GBM to an observed price series by gradient descent through the
    simulator: minimise sum_k ((stat_k(simulated) - stat_k(observed)) / scale_k)^2 over the
    statistics (mean log return / dt, std log return / sqrt(dt)), with the simulated paths'
    noise held fixed. Parameters are (mu / observed vol, log sigma); Adam on the
    standardised loss.
    """
    s = _check_series(prices, "calibrate_gbm")
    if np.any(s <= 0):
        raise ValueError("calibrate_gbm: prices must be > 0")
    _check_sim(len(s) - 1, num_paths, dt)
    obs = _gbm_stats(jnp.asarray(s, jnp.float32), dt)
    scale = jnp.maximum(obs[1], 1e-6)  # returns and volatility in units of the observed vol
    n = len(s) - 1

    d = {"obs": obs, "scale": scale, "y0": jnp.asarray(s[0], jnp.float32)}
    p0 = {"mu_z": jnp.zeros(()), "log_sigma": jnp.log(scale)}
    p, hist, sim = _fit(
        p0,
        d,
        key,
        kind="gbm",
        n=n,
        num_paths=int(num_paths),
        dt=float(dt),
        substeps=1,
        num_iters=int(num_iters),
        lr=float(lr),
    )
    out = {"mu": float(scale * p["mu_z"]), "sigma": float(jnp.exp(p["log_sigma"]))}
    return CalibrationResult(out, np.asarray(hist), np.asarray(obs), np.asarray(sim))


def calibrate_ou(
    series,
    dt: float,
    *,
    key: PRNGKeyArray,
    num_paths: int = 32,
    num_iters: int = 400,
    lr: float = 0.05,
    substeps: int = 4,
) -> CalibrationResult:
    """Fit (theta, m, sigma) of an OU process to an observed series by gradient descent
    through the simulator (statistics: mean, standard deviation, lag-1 autocorrelation,
    standard deviation of increments; fixed simulation noise; paths start at the first
    observation). Parameters are (log theta, (m - mean) / sd, log sigma); Adam on the
    standardised loss.
    """
    x = _check_series(series, "calibrate_ou")
    _check_sim(len(x) - 1, num_paths, dt)
    obs = _ou_stats(jnp.asarray(x, jnp.float32))
    sd = jnp.maximum(obs[1], 1e-6)
    scale = jnp.stack([sd, sd, jnp.asarray(0.05), jnp.maximum(obs[3], 1e-6)])
    n = len(x) - 1
    rho = float(np.clip(obs[2], 1e-3, 0.999))
    theta0 = -np.log(rho) / dt
    sigma0 = float(obs[3]) / np.sqrt(dt)

    # a deliberately crude start: a 3x off theta, sigma from increments, m at the first value
    p0 = {
        "log_theta": jnp.log(jnp.asarray(theta0 / 3.0, jnp.float32)),
        "mean_z": (jnp.asarray(x[0], jnp.float32) - obs[0]) / sd,
        "log_sigma": jnp.log(jnp.asarray(sigma0, jnp.float32)),
    }
    d = {"obs": obs, "scale": scale, "sd": sd, "y0": jnp.asarray(x[0], jnp.float32)}
    p, hist, sim = _fit(
        p0,
        d,
        key,
        kind="ou",
        n=n,
        num_paths=int(num_paths),
        dt=float(dt),
        substeps=int(substeps),
        num_iters=int(num_iters),
        lr=float(lr),
    )
    out = {
        "theta": float(jnp.exp(p["log_theta"])),
        "mean": float(obs[0] + sd * p["mean_z"]),
        "sigma": float(jnp.exp(p["log_sigma"])),
    }
    return CalibrationResult(out, np.asarray(hist), np.asarray(obs), np.asarray(sim))
