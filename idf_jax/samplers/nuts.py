"""The No-U-Turn Sampler as a finite-state machine whose unit of work is one leapfrog step.

Multinomial NUTS (Hoffman & Gelman 2014; Betancourt 2017, "A conceptual introduction
to Hamiltonian Monte Carlo", appendix A) targeting p(x) ∝ exp(-E(x)/T), the algorithm
of BlackJAX's iterative NUTS (`blackjax/mcmc/nuts.py`, `trajectory.py`,
`termination.py`, itself NumPyro's):

- momenta p ~ N(0, T M), H(x, p) = E(x) + p^T M^-1 p / 2, leaf weights
  w = exp(-(H - H0) / T) relative to the start H0;
- the trajectory doubles: at depth d (d = 0, 1, ...) a direction v = ±1 is drawn and a
  subtree of 2^d leapfrog steps of size v eps is grown from that end; within the
  subtree one leaf is kept by progressive multinomial sampling (leaf k replaces the kept
  one with probability w_k / sum_{j<=k} w_j); a finished subtree replaces the
  trajectory's proposal with probability min(1, W_subtree / W_old) (biased progressive
  sampling), W the summed weights;
- generalised no-U-turn criterion on momenta: a span with end momenta p-, p+ and
  momentum sum rho is turning when (M^-1 p-) . r <= 0 or (M^-1 p+) . r <= 0, with
  r = rho - (p- + p+) / 2 (NumPyro's form); checked on every sub-subtree of the subtree
  being built, leaf by leaf, with O(max_tree_depth) momentum checkpoints (the iterative
  scheme), and on the whole merged trajectory after each doubling. A turning or
  divergent subtree is not sampled from and ends the transition;
- a leaf with (H - H0) / T > 1000 or a NaN energy / non-finite gradient is divergent
  (Stan's one-sided convention: a large *drop* of H is a legitimate heavy leaf, e.g.
  from a far-out start); the transition stops there and is flagged;
- at most `max_tree_depth` doublings (2^max_tree_depth - 1 leapfrog steps).

The transition is written as `start -> advance* -> finish`, where `advance` does exactly
one leapfrog step and its bookkeeping (no inner loops), so the same code gives
`NUTS.step` (a `while_loop` of `advance`) and the desynchronised many-chain driver
`idf.sample_nuts_desync`, in which every chain advances one leapfrog per iteration and
a chain that finishes a transition starts its next one at once (Dance et al., ICML 2025).
Positions are raveled into one flat vector internally; any PyTree of floats works.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from .._checks import ArgumentError
from .._custom_types import FloatScalar
from ._base import (
    EnergyFn,
    PyTree,
    Sampler,
    as_energy,
    as_param,
    check_positive,
    energy_and_grad,
)
from .hmc import DIVERGENCE_THRESHOLD
from .langevin import LangevinState

__all__ = ["NUTS", "NUTSInfo", "NUTSWork", "nuts"]

NUTSState = LangevinState


class NUTSInfo(NamedTuple):
    """Per-transition diagnostics.

    acceptance_rate: mean over the trajectory's leaves of min(1, exp(-(H - H0) / T))
        (what Stan's and BlackJAX's step-size adaptation targets);
    is_accepted: the draw differs from the start of the transition;
    diverged: a leaf had (H - H0) / T > 1000, a NaN energy or a non-finite gradient;
    energy_error: H(draw) - H0 (energy units);
    is_turning: the transition stopped on a U-turn (not on divergence or the depth cap);
    num_integration_steps: leapfrog steps taken (= gradient evaluations);
    tree_depth: doublings done (1 .. max_tree_depth).
    """

    acceptance_rate: Float[Array, ""]
    is_accepted: Bool[Array, ""]
    diverged: Bool[Array, ""]
    energy_error: Float[Array, ""]
    is_turning: Bool[Array, ""]
    num_integration_steps: Int[Array, ""]
    tree_depth: Int[Array, ""]


class _Point(NamedTuple):
    """A phase-space point, flat: position, momentum, grad E, E."""

    x: Array
    p: Array
    g: Array
    e: Array


class NUTSWork(NamedTuple):
    """The state of one transition in progress (all flat arrays, fixed shapes).

    The trajectory spans `left`..`right` with momentum sum `rho`; the subtree being grown
    at depth `depth` in direction `direction` has `n` leaves so far, its last leaf
    `sub_end`, kept leaf `sub`, log summed weight `sub_log_w`, momentum sum `sub_rho`, and
    the checkpoints `ck_p`, `ck_rho` of its sub-subtrees for the U-turn check.
    """

    key: Array
    h0: Array
    directions: Array  # (max_depth,) +-1
    left: _Point
    right: _Point
    rho: Array
    num_states: Array
    prop: _Point  # the transition's current draw (p unused)
    prop_log_w: Array  # log w of the drawn leaf (= -(H - H0) / T)
    log_w: Array  # log summed weight of the trajectory
    sum_log_acc: Array  # log sum of min(1, w) over leaves
    depth: Array
    n: Array
    sub_end: _Point
    sub: _Point
    sub_leaf_log_w: Array
    sub_log_w: Array
    sub_rho: Array
    ck_p: Array  # (max_depth, d)
    ck_rho: Array  # (max_depth, d)
    moved: Array
    diverged: Array
    turning: Array
    done: Array


class _Ops(NamedTuple):
    """Everything one transition needs, for positions shaped like a template."""

    grad_e: Callable[[Array], tuple[Array, Array]]
    unravel: Callable[[Array], PyTree]
    eps: Array
    temperature: Array
    inv_mass: Array  # (d,)
    max_depth: int


def _where(pred, a, b):
    return jax.tree.map(lambda u, v: jnp.where(pred, u, v), a, b)


def _is_turning(inv_mass, p_left, p_right, rho):
    r = rho - 0.5 * (p_left + p_right)
    return (jnp.dot(inv_mass * p_left, r) <= 0) | (jnp.dot(inv_mass * p_right, r) <= 0)


def _ckpt_idxs(n):
    """Checkpoint range (NumPyro): idx_max = popcount(n >> 1); the trailing ones of n
    give the number of sub-subtrees that end at leaf n."""
    idx_max = jnp.bitwise_count(n >> 1).astype(jnp.int32)
    num_subtrees = jnp.bitwise_count((~n & (n + 1)) - 1).astype(jnp.int32)
    return idx_max - num_subtrees + 1, idx_max


class NUTS(Sampler):
    """The No-U-Turn Sampler as a PyTree (see `nuts` and the module docstring)."""

    energy_fn: EnergyFn
    step_size: Array
    temperature: Array
    inverse_mass: PyTree
    max_tree_depth: int = eqx.field(static=True)
    is_adjusted: ClassVar[bool] = True

    # ---------------------------------------------------------------- chain state
    def init(self, position: PyTree, key: PRNGKeyArray | None = None) -> NUTSState:
        del key
        energy, grad = energy_and_grad(self.energy_fn, position)
        return NUTSState(position, energy, grad)

    def step(self, key: PRNGKeyArray, state: NUTSState) -> tuple[NUTSState, NUTSInfo]:
        ops = self.ops(state.position)
        work = self.start(ops, key, state)
        work = jax.lax.while_loop(lambda w: ~w.done, lambda w: self.advance(ops, w), work)
        return self.finish(ops, work)

    # ---------------------------------------------------------------- the machine
    def ops(self, like: PyTree) -> _Ops:
        """Flat-vector helpers for positions shaped like `like` (one chain)."""
        flat, unravel = ravel_pytree(like)
        dt = flat.dtype
        inv_mass = self.inverse_mass
        if jax.tree.structure(inv_mass) == jax.tree.structure(like):
            inv_mass = jax.tree.map(lambda m, x: jnp.broadcast_to(m, jnp.shape(x)), inv_mass, like)
            m_flat = ravel_pytree(inv_mass)[0].astype(dt)
        else:
            m_flat = jnp.broadcast_to(jnp.asarray(inv_mass, dt), flat.shape)
        energy_fn = self.energy_fn

        def grad_e(x):
            return energy_and_grad(lambda y: energy_fn(unravel(y)), x)

        return _Ops(
            grad_e,
            unravel,
            jnp.asarray(self.step_size, dt),
            jnp.asarray(self.temperature, dt),
            m_flat,
            self.max_tree_depth,
        )

    def start(self, ops: _Ops, key: PRNGKeyArray, state: NUTSState) -> NUTSWork:
        """A new transition from `state`: momentum draw, empty trajectory, no leapfrog yet."""
        x = ravel_pytree(state.position)[0]
        g = ravel_pytree(state.grad)[0].astype(x.dtype)
        e = jnp.asarray(state.energy, x.dtype)
        return _start(ops, key, x, e, g)

    def advance(self, ops: _Ops, work: NUTSWork) -> NUTSWork:
        """One leapfrog step of the transition and its bookkeeping."""
        return _advance(ops, work)

    def finish(self, ops: _Ops, work: NUTSWork) -> tuple[NUTSState, NUTSInfo]:
        """The draw of a finished transition as a chain state, and its diagnostics."""
        return _finish(ops, work)


def _start(ops: _Ops, key, x, e, g) -> NUTSWork:
    k_mom, k_dir, k_tree = jax.random.split(key, 3)
    d = ops.max_depth
    p0 = jax.random.normal(k_mom, x.shape, x.dtype) * jnp.sqrt(ops.temperature / ops.inv_mass)
    h0 = e + 0.5 * jnp.sum(ops.inv_mass * p0 * p0)
    directions = jnp.where(jax.random.bernoulli(k_dir, 0.5, (d,)), 1, -1).astype(jnp.int32)
    pt = _Point(x, p0, g, e)
    zero = jnp.zeros((), x.dtype)
    ninf = jnp.asarray(-jnp.inf, x.dtype)
    i0 = jnp.zeros((), jnp.int32)
    f = jnp.zeros((), bool)
    return NUTSWork(
        key=k_tree,
        h0=h0,
        directions=directions,
        left=pt,
        right=pt,
        rho=p0,
        num_states=i0,
        prop=pt,
        prop_log_w=zero,
        log_w=zero,
        sum_log_acc=ninf,
        depth=i0,
        n=i0,
        sub_end=pt,
        sub=pt,
        sub_leaf_log_w=zero,
        sub_log_w=ninf,
        sub_rho=jnp.zeros_like(x),
        ck_p=jnp.zeros((d, x.shape[0]), x.dtype),
        ck_rho=jnp.zeros((d, x.shape[0]), x.dtype),
        moved=f,
        diverged=f,
        turning=f,
        done=f,
    )


def _advance(ops: _Ops, w: NUTSWork) -> NUTSWork:
    inv_mass, temp = ops.inv_mass, ops.temperature
    dt = w.h0.dtype
    # --- one leapfrog step from the growing end of the subtree
    eps = w.directions[w.depth].astype(dt) * ops.eps
    a = w.sub_end
    p_half = a.p - 0.5 * eps * a.g
    x = a.x + eps * inv_mass * p_half
    e, g = ops.grad_e(x)
    e = jnp.asarray(e, dt)
    p = p_half - 0.5 * eps * g
    new = _Point(x, p, g, e)
    dh = (e + 0.5 * jnp.sum(inv_mass * p * p) - w.h0) / temp
    dh = jnp.where(jnp.isnan(dh), jnp.inf, dh)
    bad = jnp.isnan(e) | (e == -jnp.inf) | (jnp.isfinite(e) & ~jnp.all(jnp.isfinite(g)))
    div = bad | (dh > DIVERGENCE_THRESHOLD)
    lw = jnp.where(div, -jnp.inf, -dh)

    # --- the subtree: progressive multinomial sampling of its leaves
    k_leaf = jax.random.fold_in(jax.random.fold_in(w.key, w.depth), w.n)
    u = jax.random.uniform(k_leaf, (2,), dt)
    first = w.n == 0
    sub_log_w = jnp.where(first, lw, jnp.logaddexp(w.sub_log_w, lw))
    take = first | (jnp.log(u[0]) < lw - sub_log_w)
    sub = _where(take, new, w.sub)
    sub_leaf_log_w = jnp.where(take, lw, w.sub_leaf_log_w)
    sub_rho = jnp.where(first, p, w.sub_rho + p)
    sum_log_acc = jnp.logaddexp(w.sum_log_acc, jnp.minimum(lw, 0.0))
    num_states = w.num_states + 1

    # --- iterative U-turn checks on the sub-subtrees that end at this leaf
    idx_min, idx_max = _ckpt_idxs(w.n)
    even = (w.n % 2) == 0
    ck_p = w.ck_p.at[idx_max].set(jnp.where(even, p, w.ck_p[idx_max]))
    ck_rho = w.ck_rho.at[idx_max].set(jnp.where(even, sub_rho, w.ck_rho[idx_max]))
    r = sub_rho[None, :] - ck_rho + 0.5 * ck_p - 0.5 * p[None, :]
    t_left = jnp.sum(ck_p * inv_mass * r, axis=1)
    t_right = r @ (inv_mass * p)
    i = jnp.arange(ops.max_depth)
    in_range = (i >= idx_min) & (i <= idx_max)
    sub_turn = jnp.any(in_range & ((t_left <= 0) | (t_right <= 0)))
    sub_full = (w.n + 1) >= (jnp.int32(1) << w.depth)
    sub_done = div | sub_turn | sub_full

    # --- a finished subtree: biased progressive sampling, merge, full U-turn check
    ok = ~(div | sub_turn)
    accept = ok & (jnp.log(u[1]) < sub_log_w - w.log_w)
    fwd = w.directions[w.depth] > 0
    left = _where(fwd, w.left, new)
    right = _where(fwd, new, w.right)
    rho = w.rho + sub_rho
    full_turn = _is_turning(inv_mass, left.p, right.p, rho)
    finished = div | sub_turn | full_turn | (w.depth + 1 >= ops.max_depth)
    next_depth = jnp.minimum(w.depth + 1, ops.max_depth - 1)
    next_end = _where(w.directions[next_depth] > 0, right, left)
    merged = w._replace(
        left=left,
        right=right,
        rho=rho,
        prop=_where(accept, sub, w.prop),
        prop_log_w=jnp.where(accept, sub_leaf_log_w, w.prop_log_w),
        log_w=jnp.where(ok, jnp.logaddexp(w.log_w, sub_log_w), w.log_w),
        depth=jnp.where(finished, w.depth, next_depth),
        n=jnp.zeros_like(w.n),
        sub_end=next_end,
        moved=w.moved | accept,
        diverged=div,
        turning=sub_turn | full_turn,
        done=finished,
    )
    growing = w._replace(n=w.n + 1, sub_end=new)
    out = _where(sub_done, merged, growing)
    return out._replace(
        sub=sub,
        sub_leaf_log_w=sub_leaf_log_w,
        sub_log_w=sub_log_w,
        sub_rho=sub_rho,
        sum_log_acc=sum_log_acc,
        num_states=num_states,
        ck_p=ck_p,
        ck_rho=ck_rho,
    )


def _finish(ops: _Ops, w: NUTSWork) -> tuple[NUTSState, NUTSInfo]:
    n = jnp.maximum(w.num_states, 1).astype(w.h0.dtype)
    info = NUTSInfo(
        acceptance_rate=jnp.exp(w.sum_log_acc) / n,
        is_accepted=w.moved,
        diverged=w.diverged,
        energy_error=-w.prop_log_w * ops.temperature,
        is_turning=w.turning & ~w.diverged,
        num_integration_steps=w.num_states,
        tree_depth=w.depth + 1,
    )
    state = NUTSState(ops.unravel(w.prop.x), w.prop.e, ops.unravel(w.prop.g))
    return state, info


def nuts(
    energy_fn: EnergyFn,
    step_size: FloatScalar,
    temperature: FloatScalar = 1.0,
    inverse_mass: FloatScalar | PyTree | None = None,
    max_tree_depth: int = 10,
) -> NUTS:
    """Multinomial NUTS targeting exp(-E(x)/T), with the generalised no-U-turn criterion.

    H(x, p) = E(x) + p^T M^-1 p / 2, p ~ N(0, T M) at the start of every transition; the
    trajectory of leapfrog steps of size `step_size` doubles in random directions until
    the generalised U-turn criterion (M^-1 p±) . (rho - (p- + p+)/2) <= 0 holds on the
    trajectory or on any of its sub-trees, a leaf diverges ((H - H0)/T > 1000 or a NaN
    energy), or `max_tree_depth` doublings are done. The draw is a leaf chosen with
    probability ∝ exp(-(H - H0)/T) (multinomial sampling, biased progressive at the top
    level), so exp(-E/T) is left invariant. See the module docstring for the details.

    Under `idf.sample` the chains are vmapped, so each transition lasts as long as the
    longest trajectory among the chains; `idf.sample_nuts_desync` lets every chain run
    at its own pace (one leapfrog step per chain per iteration).

    Args:
        energy_fn: E(x) -> scalar (a function or an `eqx.Module`).
        step_size: leapfrog step epsilon > 0 (an array leaf: a new value reuses the
            compiled run).
        temperature: T > 0 (an array leaf).
        inverse_mass: diagonal M^-1: None (identity), a scalar, or a PyTree like x.
        max_tree_depth: at most this many doublings, 2^max_tree_depth - 1 leapfrog steps
            (static: it sets the size of the U-turn checkpoints).

    Returns:
        A `NUTS` sampler; `info` is a `NUTSInfo` (acceptance_rate, diverged,
        energy_error, num_integration_steps, tree_depth, ...).
    """
    check_positive("step_size", step_size)
    check_positive("temperature", temperature)
    if (
        isinstance(max_tree_depth, bool)
        or not isinstance(max_tree_depth, int)
        or not 1 <= max_tree_depth <= 30
    ):
        raise ArgumentError(
            "max_tree_depth", f"max_tree_depth must be an integer in 1..30, got {max_tree_depth!r}"
        )
    inv_mass = 1.0 if inverse_mass is None else inverse_mass
    check_positive("inverse_mass", inv_mass)
    return NUTS(
        as_energy(energy_fn),
        as_param(step_size),
        as_param(temperature),
        as_param(inv_mass),
        max_tree_depth,
    )
