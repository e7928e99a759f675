"""Microcanonical samplers: MCLMC (unadjusted) and MAMS (Metropolis-adjusted).

Both move on the unit sphere of velocities with the isokinetic (ESH) dynamics of
Steeg & Galstyan (2021) / Robnik et al. (2023), integrated by the McLachlan minimal-norm
scheme (two gradients per step) or velocity Verlet (one). The target is exp(-E(x)/T):
the dynamics sees grad log p = -grad E / T.

- MCLMC (Robnik, De Luca, Silverstein, Seljak 2023; BlackJAX `mclmc`): every step is
  one integrator step wrapped in partial velocity refreshment with decoherence length L,
  u <- (u + nu z) / |u + nu z|, nu = sqrt((exp(2 (eps/2) / L) - 1) / d), half a step
  before and after. No accept / reject: its bias is controlled by the energy error,
  whose variance per dimension the tuner drives to 5e-4.
- MAMS (Robnik et al., arXiv 2503.01707; BlackJAX `adjusted_mclmc_dynamic`): each
  transition draws a fresh unit velocity, runs n = ceil(U * s(L / eps)) steps (U
  uniform, s chosen so that E[n] = L / eps) and accepts with min(1, exp(-dH / T)).

Preconditioning is an inverse mass M^-1: diagonal (a scalar or a PyTree like x), where
the dynamics runs in coordinates z = M^(-1/2) x, or dense (one (D, D) symmetric
positive-definite array, D the size of x), where it runs in z = C^-1 x with
M^-1 = C C^T (one Cholesky factor per transition; x moves by C u, the velocity sees
C^T grad log p). `info.energy_error` is the energy error in
energy units (T times the dimensionless change), as for HMC.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from .. import _tree
from .._checks import ArgumentError
from .._custom_types import FloatScalar
from . import _metric
from ._base import (
    EnergyFn,
    PyTree,
    Sampler,
    as_energy,
    as_param,
    cast,
    check_positive,
    energy_and_grad,
    is_divergent,
    safe_log_accept,
)

__all__ = [
    "INTEGRATORS",
    "MAMS",
    "MCLMC",
    "MAMSInfo",
    "MAMSState",
    "MCLMCInfo",
    "MCLMCState",
    "build_mams_kernel",
    "build_mclmc_kernel",
    "isokinetic_step",
    "mams",
    "mclmc",
    "mean_integration_steps",
    "preconditioner",
]

_B1 = 0.1931833275037836
INTEGRATORS = {
    # (alternating velocity / position coefficients, gradients per step)
    "mclachlan": ((_B1, 0.5, 1.0 - 2.0 * _B1, 0.5, _B1), 2),
    "leapfrog": ((0.5, 1.0, 0.5), 1),
}
"""Palindromic isokinetic integrators: coefficients and gradient evaluations per step."""

DIVERGENCE_THRESHOLD = 1000.0


class MCLMCState(NamedTuple):
    """Position, unit velocity u (a PyTree like x), cached E(x) and grad E(x)."""

    position: PyTree
    momentum: PyTree
    energy: Float[Array, ""]
    grad: PyTree


class MCLMCInfo(NamedTuple):
    """Per-step diagnostics of MCLMC.

    energy_error: T times the dimensionless energy change of the step (kinetic change
    plus (E' - E) / T): the tuner drives its variance per dimension to a target.
    acceptance_rate is 1 and is_accepted True (unadjusted); diverged: the step produced
    a non-finite state and was undone (the velocity redrawn).
    """

    acceptance_rate: Float[Array, ""]
    is_accepted: Bool[Array, ""]
    diverged: Bool[Array, ""]
    energy_error: Float[Array, ""]
    num_grad_evals: Float[Array, ""]


class MAMSState(NamedTuple):
    """Position with cached E(x) and grad E(x) (velocities are redrawn every transition)."""

    position: PyTree
    energy: Float[Array, ""]
    grad: PyTree


class MAMSInfo(NamedTuple):
    """Per-transition diagnostics of MAMS.

    energy_error: dH in energy units; num_integration_steps: n of this trajectory;
    num_grad_evals: n times the integrator's gradients per step.
    """

    acceptance_rate: Float[Array, ""]
    is_accepted: Bool[Array, ""]
    diverged: Bool[Array, ""]
    energy_error: Float[Array, ""]
    num_integration_steps: Float[Array, ""]
    num_grad_evals: Float[Array, ""]


# --------------------------------------------------------------------------- dynamics


def _unit_vector(key, like: PyTree) -> PyTree:
    z = _tree.normal_like(key, like)
    return _tree.mul(z, 1.0 / jnp.sqrt(_tree.sq_norm(z)))


def _velocity_update(u_flat, g_flat, step, dim):
    """ESH velocity update along g = M^(1/2) grad log p; returns (u', kinetic change)."""
    g_norm = jnp.linalg.norm(g_flat)
    e = jnp.where(g_norm > 1e-13, g_flat / jnp.where(g_norm > 1e-13, g_norm, 1.0), g_flat)
    ue = jnp.dot(u_flat, e)
    delta = step * g_norm / (dim - 1)
    zeta = jnp.exp(-delta)
    new = e * (1 - zeta) * (1 + zeta + ue * (1 - zeta)) + 2 * zeta * u_flat
    new_norm = jnp.linalg.norm(new)
    new = jnp.where(new_norm > 1e-13, new / jnp.where(new_norm > 1e-13, new_norm, 1.0), new)
    log_a = jnp.log((1.0 + ue) * (1.0 - zeta**2) + 2.0 * zeta**2)
    return new, (delta - jnp.log(2.0) + log_a) * (dim - 1)


def preconditioner(inv_mass, position: PyTree):
    """(to_x, to_z) on flat vectors for the inverse mass M^-1 = C C^T.

    to_x(u) = C u (a z-space direction in x space), to_z(g) = C^T g (an x-space gradient
    in z space); C = sqrt(M^-1) for a diagonal M^-1, its Cholesky factor for a dense one.
    """
    if _metric.is_dense(inv_mass, position):
        chol = jnp.linalg.cholesky(jax.tree.leaves(inv_mass)[0])
        return (lambda u: chol @ u), (lambda g: chol.T @ g)
    sqrt_m = jax.tree.map(jnp.sqrt, inv_mass)
    scale = ravel_pytree(sqrt_m)[0] if _tree._is_tree_like(sqrt_m, position) else sqrt_m
    return (lambda u: scale * u), (lambda g: scale * g)


def isokinetic_step(
    energy_fn: EnergyFn, integrator: str, state: MCLMCState, step_size, temp, inv_mass
):
    """One deterministic isokinetic integrator step.

    Returns (state, kinetic_change) with kinetic_change dimensionless (units of T).
    """
    to_x, to_z = preconditioner(inv_mass, state.position)
    return _isokinetic(energy_fn, integrator, state, step_size, temp, to_x, to_z)


def _isokinetic(energy_fn, integrator, state: MCLMCState, step_size, temp, to_x, to_z):
    coefs, _ = INTEGRATORS[integrator]
    flat_x, unravel = ravel_pytree(state.position)
    dim = flat_x.shape[0]
    u = ravel_pytree(state.momentum)[0]
    x, energy, grad = state.position, state.energy, state.grad
    kinetic = jnp.zeros((), flat_x.dtype)
    for i, c in enumerate(coefs):
        if i % 2 == 0:
            g = -to_z(ravel_pytree(grad)[0]) / temp
            u, dk = _velocity_update(u, g, step_size * c, dim)
            kinetic = kinetic + dk
        else:
            x = _tree.add_scaled(x, unravel(to_x(u)), step_size * c)
            energy, grad = energy_and_grad(energy_fn, x)
    return MCLMCState(x, unravel(u), energy, grad), kinetic


def _partial_refresh(key, momentum, step_size, L):
    """(u + nu z) / |u + nu z|, and the standard normal draw z (reused by the NaN fallback)."""
    flat, unravel = ravel_pytree(momentum)
    dim = flat.shape[0]
    nu = jnp.sqrt((jnp.exp(2.0 * step_size / L) - 1.0) / dim)
    noise = jax.random.normal(key, flat.shape, flat.dtype)
    z = flat + nu * noise
    return unravel(z / jnp.linalg.norm(z)), noise


def _state_finite(state: MCLMCState) -> jax.Array:
    return (
        _tree.all_finite(state.position)
        & _tree.all_finite(state.momentum)
        & ~is_divergent(state.energy, state.grad)
        & jnp.isfinite(state.energy)
    )


def build_mclmc_kernel(energy_fn: EnergyFn, integrator: str = "mclachlan"):
    """The MCLMC transition with its parameters as arguments.

    `kernel(key, state, step_size, L, temperature, inverse_mass) -> (state, info)`.
    A step that produces a non-finite state is undone: the position is kept, the
    velocity redrawn, and the step flagged divergent.
    """
    n_grad = INTEGRATORS[integrator][1]

    def kernel(key: PRNGKeyArray, state: MCLMCState, step_size, L, temperature, inverse_mass):
        eps, big_l = cast(step_size, state.energy), cast(L, state.energy)
        temp, inv_mass = cast(temperature, state.energy), cast(inverse_mass, state.energy)
        k1, k2 = jax.random.split(key)
        u, noise = _partial_refresh(k1, state.momentum, 0.5 * eps, big_l)
        to_x, to_z = preconditioner(inv_mass, state.position)
        s, kinetic = _isokinetic(
            energy_fn, integrator, state._replace(momentum=u), eps, temp, to_x, to_z
        )
        s = s._replace(momentum=_partial_refresh(k2, s.momentum, 0.5 * eps, big_l)[0])
        change = kinetic + (s.energy - state.energy) / temp
        ok = _state_finite(s) & jnp.isfinite(change)
        # A failed step is undone with a fresh direction: the first refresh's normal draw
        # is independent of the kept state, so its direction is uniform on the sphere.
        _, unravel = ravel_pytree(state.momentum)
        fresh = unravel(noise / jnp.linalg.norm(noise))
        fallback = state._replace(momentum=fresh)
        new = _tree.select(ok, s, fallback)
        one = jnp.ones((), jnp.result_type(state.energy))
        info = MCLMCInfo(
            one,
            jnp.array(True),
            ~ok,
            jnp.where(ok, temp * change, 0.0),
            jnp.asarray(n_grad, jnp.float32),
        )
        return new, info

    return kernel


def _rescale(mu):
    """s with E[ceil(U s)] = mu for U ~ Uniform(0, 1), mu >= 1 (BlackJAX `rescale`)."""
    k = jnp.floor(2 * mu - 1)
    x = k * (mu - 0.5 * (k + 1)) / (k + 1 - mu)
    return k + x


def mean_integration_steps(step_size, L):
    """L / step_size, floored at 1: the mean number of steps of a MAMS trajectory."""
    return jnp.maximum(L / step_size, 1.0)


def build_mams_kernel(energy_fn: EnergyFn, integrator: str = "mclachlan", jitter: bool = True):
    """The MAMS transition with its parameters as arguments.

    `kernel(key, state, step_size, L, temperature, inverse_mass) -> (state, info)`: a
    fresh unit velocity, n steps (random with mean L / step_size when `jitter`, else
    ceil(L / step_size)), accepted with min(1, exp(-dH / T)); a non-finite end or
    |dH| / T > 1000 is divergent (rejected).
    """
    n_grad = INTEGRATORS[integrator][1]

    def kernel(key: PRNGKeyArray, state: MAMSState, step_size, L, temperature, inverse_mass):
        eps, big_l = cast(step_size, state.energy), cast(L, state.energy)
        temp, inv_mass = cast(temperature, state.energy), cast(inverse_mass, state.energy)
        k_u, k_n, k_acc = jax.random.split(key, 3)
        mu = mean_integration_steps(eps, big_l)
        if jitter:
            n_raw = jnp.ceil(jax.random.uniform(k_n, dtype=mu.dtype) * _rescale(mu))
        else:
            n_raw = jnp.ceil(mu)
        n = jnp.clip(n_raw, 1, 2**30).astype(jnp.int32)
        s0 = MCLMCState(state.position, _unit_vector(k_u, state.position), state.energy, state.grad)
        to_x, to_z = preconditioner(inv_mass, state.position)  # one factor per trajectory

        def body(_, carry):
            s, kin = carry
            s, dk = _isokinetic(energy_fn, integrator, s, eps, temp, to_x, to_z)
            return s, kin + dk

        s, kinetic = jax.lax.fori_loop(0, n, body, (s0, jnp.zeros_like(state.energy)))
        d_h = kinetic + (s.energy - state.energy) / temp
        d_h = jnp.where(jnp.isnan(d_h), jnp.inf, d_h)
        diverged = is_divergent(s.energy, s.grad) | (jnp.abs(d_h) > DIVERGENCE_THRESHOLD)
        diverged = diverged | ~_tree.all_finite(s.position)
        log_ratio = jnp.where(diverged, -jnp.inf, safe_log_accept(-d_h))
        accept_prob = jnp.exp(jnp.minimum(log_ratio, 0.0))
        u = jax.random.uniform(k_acc, dtype=jnp.result_type(state.energy))
        accept = jnp.log(u) < log_ratio
        new = _tree.select(accept, MAMSState(s.position, s.energy, s.grad), state)
        nf = n.astype(jnp.float32)
        info = MAMSInfo(accept_prob, accept, diverged, temp * d_h, nf, nf * n_grad)
        return new, info

    return kernel


# --------------------------------------------------------------------------- PyTrees


def _check_integrator(integrator: str) -> str:
    if integrator not in INTEGRATORS:
        raise ArgumentError(
            "integrator", f"integrator must be one of {sorted(INTEGRATORS)}, got {integrator!r}"
        )
    return integrator


def _dimension_check(position: PyTree) -> None:
    if sum(jnp.size(leaf) for leaf in jax.tree.leaves(position)) < 2:
        raise ArgumentError("x0_batch", "microcanonical samplers need a state of dimension >= 2")


class MCLMC(Sampler):
    """Microcanonical Langevin Monte Carlo as a PyTree (see `mclmc`)."""

    energy_fn: EnergyFn
    step_size: Array
    L: Array
    temperature: Array
    inverse_mass: PyTree
    integrator: str = eqx.field(static=True, default="mclachlan")
    is_adjusted: ClassVar[bool] = False

    def init(self, position: PyTree, key: PRNGKeyArray | None = None) -> MCLMCState:
        _dimension_check(position)
        energy, grad = energy_and_grad(self.energy_fn, position)
        key = jax.random.key(0) if key is None else key
        return MCLMCState(position, _unit_vector(key, position), energy, grad)

    def step(self, key: PRNGKeyArray, state: MCLMCState):
        kernel = build_mclmc_kernel(self.energy_fn, self.integrator)
        return kernel(key, state, self.step_size, self.L, self.temperature, self.inverse_mass)


class MAMS(Sampler):
    """Metropolis-adjusted microcanonical sampler as a PyTree (see `mams`)."""

    energy_fn: EnergyFn
    step_size: Array
    L: Array
    temperature: Array
    inverse_mass: PyTree
    integrator: str = eqx.field(static=True, default="mclachlan")
    jitter: bool = eqx.field(static=True, default=True)
    is_adjusted: ClassVar[bool] = True

    def init(self, position: PyTree, key: PRNGKeyArray | None = None) -> MAMSState:
        del key
        _dimension_check(position)
        energy, grad = energy_and_grad(self.energy_fn, position)
        return MAMSState(position, energy, grad)

    def step(self, key: PRNGKeyArray, state: MAMSState):
        kernel = build_mams_kernel(self.energy_fn, self.integrator, self.jitter)
        return kernel(key, state, self.step_size, self.L, self.temperature, self.inverse_mass)


def _params(step_size, L, temperature, inverse_mass):
    check_positive("step_size", step_size)
    check_positive("L", L)
    check_positive("temperature", temperature)
    inv_mass = 1.0 if inverse_mass is None else inverse_mass
    _metric.check_inverse_mass(inv_mass)
    return as_param(step_size), as_param(L), as_param(temperature), as_param(inv_mass)


def mclmc(
    energy_fn: EnergyFn,
    step_size: FloatScalar,
    L: FloatScalar,
    temperature: FloatScalar = 1.0,
    inverse_mass: FloatScalar | PyTree | None = None,
    integrator: str = "mclachlan",
) -> MCLMC:
    """Microcanonical Langevin Monte Carlo (unadjusted) targeting exp(-E(x)/T).

    Args:
        energy_fn: E(x) -> scalar (a function or an `eqx.Module`); x of dimension >= 2.
        step_size: integrator step epsilon > 0 (an array leaf).
        L: velocity decoherence length > 0 (an array leaf; `inf` for no refreshment).
        temperature: T > 0.
        inverse_mass: M^-1: None (identity), a scalar or a PyTree like x (diagonal), or
            one (D, D) symmetric positive-definite array, D the size of x (dense).
        integrator: "mclachlan" (2 gradients per step) or "leapfrog" (1).

    Tune `step_size` and `L` with `idf.adapt(sampler, ..., method="mclmc")`.
    """
    params = _params(step_size, L, temperature, inverse_mass)
    return MCLMC(as_energy(energy_fn), *params, integrator=_check_integrator(integrator))


def mams(
    energy_fn: EnergyFn,
    step_size: FloatScalar,
    L: FloatScalar,
    temperature: FloatScalar = 1.0,
    inverse_mass: FloatScalar | PyTree | None = None,
    integrator: str = "mclachlan",
    jitter: bool = True,
) -> MAMS:
    """Metropolis-adjusted microcanonical sampler (MAMS) targeting exp(-E(x)/T).

    Args:
        energy_fn: E(x) -> scalar (a function or an `eqx.Module`); x of dimension >= 2.
        step_size: integrator step epsilon > 0 (an array leaf).
        L: trajectory length > 0 (an array leaf): L / step_size steps on average.
        temperature: T > 0.
        inverse_mass: M^-1: None (identity), a scalar or a PyTree like x (diagonal), or
            one (D, D) symmetric positive-definite array, D the size of x (dense).
        integrator: "mclachlan" (2 gradients per step) or "leapfrog" (1).
        jitter: random trajectory lengths with mean L / step_size (the paper's and
            BlackJAX's dynamic variant); False uses ceil(L / step_size) steps.

    Tune with `idf.adapt(sampler, ..., method="mams")` (target acceptance 0.9).
    """
    params = _params(step_size, L, temperature, inverse_mass)
    if not isinstance(jitter, bool):
        raise ArgumentError("jitter", f"jitter must be a bool, got {jitter!r}")
    return MAMS(
        as_energy(energy_fn), *params, integrator=_check_integrator(integrator), jitter=jitter
    )
