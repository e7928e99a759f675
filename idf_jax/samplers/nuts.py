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
    the checkpoints `ck` of its sub-subtrees for the U-turn check.
    """

    key: Array  # (2,) uint32 Threefry key words of the transition's leaf stream
    h0: Array
    directions: Array  # int32 bit mask: bit k set = depth k grows forward
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
    ck: Array  # (max_depth, 2 d + 1) checkpoint rows [v, c, v . c]: M^-1 p, rho - p / 2
    sub_div: Array  # the last leaf diverged
    sub_turn: Array  # a sub-subtree ending at the last leaf turned
    sub_done: Array  # the subtree is complete (full, turned or diverged): merge next
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
    # sums of products, not `dot`: under vmap a dot becomes a tiny batched matmul call
    return (jnp.sum(inv_mass * p_left * r) <= 0) | (jnp.sum(inv_mass * p_right * r) <= 0)


def _add_pairs(a, b):
    return a[0] + b[0], a[1] + b[1]


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

        # Two nested loops (doublings, then the leaves of one subtree), as BlackJAX's
        # iterative NUTS; `advance` is the same machine flattened to one leaf per call.
        def subtree(w):
            w = jax.lax.while_loop(lambda v: ~v.sub_done, lambda v: _leaf(ops, v, True), w)
            return _merge(ops, w)

        work = jax.lax.while_loop(lambda w: ~w.done, subtree, work)
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

        # The parameters pass an optimization barrier: a sampler closed over by the
        # caller's jit makes them compile-time constants, and XLA:CPU then folds them into
        # the leapfrog arithmetic and re-fuses that cheap arithmetic into every consumer
        # of the new point (the position, the energy chain and ~10 selects each recompute
        # it): 1.25x slower per leapfrog than with traced parameters.
        eps, temperature, m_flat = jax.lax.optimization_barrier(
            (jnp.asarray(self.step_size, dt), jnp.asarray(self.temperature, dt), m_flat)
        )
        return _Ops(grad_e, unravel, eps, temperature, m_flat, self.max_tree_depth)

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


def _key_words(key) -> Array:
    """Two uint32 words of a PRNG key (typed or legacy), the Threefry key of a stream."""
    data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    data = jnp.ravel(data).astype(jnp.uint32)
    return data[:2] if data.shape[0] >= 2 else jnp.concatenate([data, ~data])[:2]


def _draws(key, x) -> tuple[Array, Array, Array]:
    """The random inputs of one transition from its key: standard-normal momentum noise
    (shaped like x), the direction bits (bit k: depth k grows forward) and the two
    Threefry key words of the leaf stream. Drawn ahead in bulk by the desynchronised driver."""
    k_mom, k_dir, k_tree = jax.random.split(key, 3)
    z = jax.random.normal(k_mom, x.shape, x.dtype)
    directions = jax.random.bits(k_dir, (), jnp.uint32).astype(jnp.int32)
    return z, directions, _key_words(k_tree)


def _start(ops: _Ops, key, x, e, g) -> NUTSWork:
    return _start_drawn(ops, _draws(key, x), x, e, g)


def _start_drawn(ops: _Ops, draws, x, e, g) -> NUTSWork:
    """A new transition from (x, E, grad E) with the random inputs `draws` of `_draws`."""
    z, directions, key_words = draws
    d = ops.max_depth
    p0 = z * jnp.sqrt(ops.temperature / ops.inv_mass)
    h0 = e + 0.5 * jnp.sum(ops.inv_mass * p0 * p0)
    pt = _Point(x, p0, g, e)
    zero = jnp.zeros((), x.dtype)
    ninf = jnp.asarray(-jnp.inf, x.dtype)
    i0 = jnp.zeros((), jnp.int32)
    f = jnp.zeros((), bool)
    return NUTSWork(
        key=key_words,
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
        ck=jnp.zeros((d, 2 * x.shape[0] + 1), x.dtype),
        sub_div=f,
        sub_turn=f,
        sub_done=f,
        moved=f,
        diverged=f,
        turning=f,
        done=f,
    )


def _mix32(h):
    """lowbias32 (C. Wellons' 32-bit integer hash: xorshift-multiply, bias ~0.17)."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x7FEB352D)
    h = h ^ (h >> 15)
    h = h * jnp.uint32(0x846CA68B)
    return h ^ (h >> 16)


def _uniforms(key_data, counter, dtype):
    """Two uniforms in (0, 1) for leaf `counter` of a transition.

    A counter-based stream keyed by the transition's two Threefry-derived key words:
    u_j = mix(mix(k0 ^ (2 counter + j) * golden) ^ k1), mix = lowbias32. A leaf needs two
    uniforms (multinomial and subtree acceptance), and one Threefry call per leaf was
    ~40% of a small target's transition on CPU; the per-transition key is Threefry.
    """
    c = counter.astype(jnp.uint32) * jnp.uint32(2) + jnp.arange(2, dtype=jnp.uint32)
    bits = _mix32(_mix32(key_data[0] ^ (c * jnp.uint32(0x9E3779B9))) ^ key_data[1])
    # 23 (float32) random mantissa bits, offset by half a step: never 0 or 1.
    return ((bits >> 9).astype(dtype) + 0.5) * jnp.asarray(2.0**-23, dtype)


def _advance(ops: _Ops, w: NUTSWork) -> NUTSWork:
    """One leapfrog step; when it completes a subtree, the merge too."""
    w = _leaf(ops, w)
    return _where(w.sub_done, _merge(ops, w), w)


def _leaf(ops: _Ops, w: NUTSWork, looped: bool = False) -> NUTSWork:
    """One leapfrog step from the growing end of the subtree, its multinomial sampling
    and the U-turn checks of the sub-subtrees that end at the new leaf."""
    inv_mass, temp = ops.inv_mass, ops.temperature
    dt = w.h0.dtype
    fwd = ((w.directions >> w.depth) & 1) == 1
    eps = jnp.where(fwd, ops.eps, -ops.eps)
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

    # progressive multinomial sampling within the subtree
    u = _uniforms(w.key, w.num_states, dt)
    first = w.n == 0
    sub_log_w = jnp.where(first, lw, jnp.logaddexp(w.sub_log_w, lw))
    take = first | (jnp.log(u[0]) < lw - sub_log_w)
    sub_rho = jnp.where(first, p, w.sub_rho + p)

    # Iterative U-turn checks on the sub-subtrees that end at this leaf, against the
    # checkpoints stored at earlier leaves: a leaf writes checkpoint idx_max only when n
    # is even, and then no sub-subtree ends at it (idx_min = idx_max + 1), so the check
    # never needs this leaf's own write. Checkpoint k is the row [v_k, c_k, a_k] with the
    # velocity v_k = M^-1 p_k, c_k = rho_k - p_k / 2 and a_k = v_k . c_k at its leaf; the
    # span from checkpoint k to this leaf has r = h - c_k with h = rho - p / 2, so
    # v_k . r = v_k . h - a_k and v . r = v . h - c_k . v.
    d = inv_mass.shape[0]
    idx_min, idx_max = _ckpt_idxs(w.n)
    even = (w.n % 2) == 0
    i = jnp.arange(ops.max_depth)
    v = inv_mass * p
    half = sub_rho - 0.5 * p
    vh = jnp.sum(v * half)
    ck = w.ck
    in_range = (i >= idx_min) & (i <= idx_max)
    if looped:
        # Only the checkpoints idx_max down to idx_min, stopping at the first U-turn
        # (NumPyro / BlackJAX): ~1 row per leaf on average. Best in lock-step, where all
        # active chains are at the same leaf of the same subtree (masked: 1.07x the time
        # on the funnel, 1.16x on a 100-d Gaussian, 128 chains, CPU).
        def turned(k):
            row = ck[k]
            return (jnp.sum(row[:d] * half) - row[2 * d] <= 0) | (
                vh - jnp.sum(row[d : 2 * d] * v) <= 0
            )

        def body(c):
            k, _ = c
            return k - 1, turned(k)

        _, sub_turn = jax.lax.while_loop(
            lambda c: (c[0] >= idx_min) & ~c[1], body, (idx_max, jnp.zeros((), bool))
        )
    else:
        # All checkpoints at once, masked, no inner loop: for chains at different leaves
        # (the desynchronised driver). Both sums of products in one variadic reduce:
        # XLA:CPU hands a plain batched multiply-reduce of this shape to a YNNPACK
        # fusion that costs ~5x the whole check.
        zero = jnp.zeros((), dt)
        s_left, s_right = jax.lax.reduce(
            (ck[:, :d] * half[None, :], ck[:, d : 2 * d] * v[None, :]),
            (zero, zero),
            _add_pairs,
            (1,),
        )
        t_left = s_left - ck[:, 2 * d]
        t_right = vh - s_right
        sub_turn = jnp.any(in_range & ((t_left <= 0) | (t_right <= 0)))
    # one-hot write, not a scatter: under vmap the index differs between chains
    write = ((i == idx_max) & even)[:, None]
    ck = jnp.where(write, jnp.concatenate([v, half, vh[None]])[None, :], ck)
    sub_full = (w.n + 1) >= (jnp.int32(1) << w.depth)
    return w._replace(
        num_states=w.num_states + 1,
        sum_log_acc=jnp.logaddexp(w.sum_log_acc, jnp.minimum(lw, 0.0)),
        n=w.n + 1,
        sub_end=new,
        sub=_where(take, new, w.sub),
        sub_leaf_log_w=jnp.where(take, lw, w.sub_leaf_log_w),
        sub_log_w=sub_log_w,
        sub_rho=sub_rho,
        ck=ck,
        sub_div=div,
        sub_turn=sub_turn,
        sub_done=div | sub_turn | sub_full,
    )


def _merge(ops: _Ops, w: NUTSWork) -> NUTSWork:
    """A finished subtree: biased progressive sampling of its draw, merge into the
    trajectory, the U-turn check of the whole, and the next direction (or the end)."""
    new = w.sub_end
    u = _uniforms(w.key, w.num_states - 1, w.h0.dtype)
    ok = ~(w.sub_div | w.sub_turn)
    accept = ok & (jnp.log(u[1]) < w.sub_log_w - w.log_w)
    fwd = ((w.directions >> w.depth) & 1) == 1
    left = _where(fwd, w.left, new)
    right = _where(fwd, new, w.right)
    rho = w.rho + w.sub_rho
    full_turn = _is_turning(ops.inv_mass, left.p, right.p, rho)
    finished = ~ok | full_turn | (w.depth + 1 >= ops.max_depth)
    next_depth = jnp.minimum(w.depth + 1, ops.max_depth - 1)
    next_end = _where(((w.directions >> next_depth) & 1) == 1, right, left)
    return w._replace(
        left=left,
        right=right,
        rho=rho,
        prop=_where(accept, w.sub, w.prop),
        prop_log_w=jnp.where(accept, w.sub_leaf_log_w, w.prop_log_w),
        log_w=jnp.where(ok, jnp.logaddexp(w.log_w, w.sub_log_w), w.log_w),
        depth=jnp.where(finished, w.depth, next_depth),
        n=jnp.zeros_like(w.n),
        sub_end=next_end,
        sub_done=finished,  # a finished chain stays "subtree done": no idle inner loop
        moved=w.moved | accept,
        diverged=w.sub_div,
        turning=w.sub_turn | full_turn,
        done=finished,
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
