"""`sample()`: drive many chains of a sampler (vmap over chains, lax.scan over steps).

Memory is O(chains x draws): thinning happens inside the scan and draws are written
into a preallocated (chains, draws, ...) buffer, so the number of steps never enters
the memory bill. The random stream of chain c at step i is `fold_in(key_c, i)`, so a
run cut into chunks (progress bar, checkpoints) or spread over devices gives the same
numbers as one uninterrupted scan.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import ArgumentError, as_key, is_traced, nonnegative_int
from .._progress import Progress as _Progress
from ..samplers._base import Sampler, check_positive_int
from ._checkpoint import _key_fingerprint, _load_checkpoint, _save_checkpoint
from ._scan import init_chains, step_chains
from ._stats import (
    _NUM_BINS,
    ENERGY_ERROR_BIN_EDGES,
    _hist_index,
    _info_sums_zero,
)

__all__ = ["Trace", "sample", "ENERGY_ERROR_BIN_EDGES"]

PyTree = Any


class Trace(NamedTuple):
    """The result of `sample`.

    positions: PyTree like one state's position, leaves shaped (chains, draws, ...).
        Draws of a frozen chain (its state was non-finite, e.g. a NaN start) are NaN.
    energies: (chains, draws) energies E(x) of the recorded draws (NaN when frozen).
    stats: per-chain summaries, each shaped (chains, ...): the mean over kept steps of
        every field of the sampler's info (e.g. `acceptance_rate`); `frozen` (bool: the
        chain's own state is non-finite, so it was never updated and is left out of
        `idf.summary`; `diverged` is the same flag under its old name);
        `num_divergent` (divergent proposals: NaN energy, non-finite gradient, or
        |dH| / T > 1000 for HMC; each was rejected and the chain went on); and for
        Hamiltonian samplers `mean_abs_energy_error`, `max_abs_energy_error` and
        `energy_error_hist` (counts of |dH| over every trajectory, not only the draws).
    final_state: the sampler state of every chain after the last step.
    divergences: (chains, draws) bool: a divergent proposal happened in the `thin`
        steps that led to the draw (ArviZ's `diverging`).
    """

    positions: PyTree
    energies: Float[Array, "chains draws"]
    stats: dict[str, Array]
    final_state: PyTree
    divergences: Array | None = None


class _Carry(NamedTuple):
    state: PyTree
    frozen: Array  # (chains,) bool: the chain's own state is non-finite; never updated
    num_divergent: Array  # (chains,) int32, divergent (rejected) proposals over all steps
    div_since: Array  # (chains,) bool, a divergence since the last recorded draw
    active_steps: Array  # (chains,) int32, kept steps counted into sums
    sums: PyTree  # info-shaped float sums over kept, non-frozen steps
    hist: Array  # (chains, bins) int32, |dH| histogram (empty when no energy_error)
    ee_abs_sum: Array  # (chains,) sum of |dH| over counted trajectories
    ee_abs_max: Array  # (chains,) max |dH|
    positions: PyTree  # (chains, draws, ...)
    energies: Array  # (chains, draws, ...)
    divergences: Array  # (chains, draws) bool


# --------------------------------------------------------------------------- checks


def _check_args(sampler, x0_batch, num_steps, thin, burn_in):
    if not isinstance(sampler, Sampler):
        raise ArgumentError(
            "sampler",
            f"sampler must be an idf Sampler (idf.mala(...), idf.hmc(...), ...), got "
            f"{type(sampler).__name__}",
        )
    num_steps = check_positive_int("num_steps", num_steps)
    thin = check_positive_int("thin", thin)
    burn_in = nonnegative_int("burn_in", burn_in)
    if burn_in >= num_steps:
        raise ArgumentError(
            "burn_in", f"burn_in ({burn_in}) must be smaller than num_steps ({num_steps})"
        )
    kept = num_steps - burn_in
    if kept % thin:
        raise ArgumentError(
            "thin", f"thin ({thin}) must divide the kept steps num_steps - burn_in = {kept}"
        )
    leaves = jax.tree.leaves(x0_batch)
    if not leaves:
        raise ArgumentError(
            "x0_batch", "x0_batch is empty: give a PyTree of arrays with a leading chain axis"
        )
    shapes = [jnp.shape(l) for l in leaves]
    if any(len(s) == 0 for s in shapes):
        raise ArgumentError(
            "x0_batch", f"x0_batch leaves need a leading chain axis, got shapes {shapes}"
        )
    n = shapes[0][0]
    if any(s[0] != n for s in shapes):
        raise ArgumentError(
            "x0_batch",
            f"x0_batch leaves disagree on the number of chains (leading axis): {shapes}",
        )
    if n < 1:
        raise ArgumentError("x0_batch", "x0_batch has zero chains")
    gradient_based = hasattr(sampler, "energy_fn")
    for l in leaves:
        dt = jnp.result_type(l)
        if not (jnp.issubdtype(dt, jnp.floating) or jnp.issubdtype(dt, jnp.integer)):
            raise ArgumentError("x0_batch", f"x0_batch leaves must be numeric arrays, got {dt}")
        if gradient_based and not jnp.issubdtype(dt, jnp.floating):
            raise ArgumentError(
                "x0_batch",
                f"x0_batch has integer positions ({dt}) but {type(sampler).__name__} moves "
                "along gradients: give float positions (x0_batch.astype(float)); integer "
                "spins are sampled with idf.block_gibbs",
            )
    if gradient_based and len(leaves) == 1 and len(shapes[0]) == 1:
        raise ArgumentError(
            "x0_batch",
            f"x0_batch has shape {shapes[0]}: the leading axis is the chain axis, so this "
            "is one scalar per chain. For chains of d-dimensional states give shape "
            f"(chains, d); for scalar states make it explicit with shape ({n}, 1)",
        )
    return num_steps, thin, burn_in, int(n)


# --------------------------------------------------------------------------- one step


def _state_ok(state) -> jax.Array:
    """(chains,) True where a chain's own state is usable: energy not NaN or -inf and the
    position finite (E = +inf, a hard wall, is a state the chain can leave)."""
    e = state.energy
    e = jnp.reshape(e, (e.shape[0], -1))
    ok = ~jnp.any(jnp.isnan(e) | (e == -jnp.inf), axis=1)
    # Finite position <=> sum(x - x) is finite (x - x is NaN for inf and NaN): one fused
    # float reduction instead of isfinite + a boolean all per step.
    for leaf in jax.tree.leaves(state.position):
        if jnp.issubdtype(leaf.dtype, jnp.inexact):
            flat = jnp.reshape(leaf, (leaf.shape[0], -1))
            zeros = jnp.sum(flat - flat, axis=1)
            ok = ok & jnp.isfinite(zeros)
    return ok


def _step(sampler: Sampler, has_energy_error: bool, chain_keys, carry: _Carry, i, valid, counting):
    """One transition of every (local) chain at global step index `i`.

    A divergent proposal is a rejection (the samplers keep the old state) and is counted;
    only a chain whose own state is non-finite is frozen. `valid` (traced bool) is False
    for the padding steps before step 0 (see `_blocks`): they change nothing. `counting`
    (traced bool) is True after burn-in: only then do steps enter the sums and the trace's
    divergence flags.
    """
    new_state, info = step_chains(sampler, chain_keys, carry.state, i)
    diverged = getattr(info, "diverged", None)
    if diverged is None:
        diverged = ~jnp.isfinite(new_state.energy)
    diverged = jnp.reshape(diverged, (diverged.shape[0], -1)).any(axis=1)
    frozen = carry.frozen | (~_state_ok(new_state) & valid)
    keep = frozen | ~valid
    state = jax.tree.map(
        lambda old, new: jnp.where(_bcast(keep, old), old, new), carry.state, new_state
    )
    active = ~frozen & counting
    sums = jax.tree.map(
        lambda s, v: s + jnp.where(_bcast(active, v), v.astype(jnp.float32), 0.0),
        carry.sums,
        info,
    )
    hist = carry.hist
    if has_energy_error:
        abs_de = jnp.abs(info.energy_error).astype(jnp.float32)
        idx = _hist_index(abs_de)
        hist = hist + (jax.nn.one_hot(idx, _NUM_BINS, dtype=jnp.int32) * active[:, None])
        ee_sum = carry.ee_abs_sum + jnp.where(active, abs_de, 0.0)
        ee_max = jnp.maximum(carry.ee_abs_max, jnp.where(active, abs_de, 0.0))
    else:
        ee_sum, ee_max = carry.ee_abs_sum, carry.ee_abs_max
    counted = diverged & ~frozen & valid
    return carry._replace(
        state=state,
        frozen=frozen,
        num_divergent=carry.num_divergent + counted.astype(jnp.int32),
        div_since=carry.div_since | (counted & counting),
        active_steps=carry.active_steps + active.astype(jnp.int32),
        sums=sums,
        hist=hist,
        ee_abs_sum=ee_sum,
        ee_abs_max=ee_max,
    )


def _bcast(mask, x):
    return jnp.reshape(mask, mask.shape + (1,) * (jnp.ndim(x) - 1))


def _nan_where(mask, x):
    """NaN in the rows of a float leaf where `mask` (chains,) is set; others unchanged."""
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        return x
    return jnp.where(_bcast(mask, x), jnp.asarray(jnp.nan, x.dtype), x)


def _blocks(sampler, has_ee, thin, chain_keys, carry, block0, pre, num_burn_blocks, *, num):
    """Blocks `block0 .. block0 + num - 1` of `thin` steps each; one draw per block.

    The whole run is one sequence of blocks, burn-in included, so the sampler's step is
    traced and compiled once (a separate burn-in loop compiled it twice). Global step
    `s = b * thin + j - pre` for step j of block b: the first `pre = nb * thin - burn_in`
    steps (< thin) are padding that changes nothing, so the `nb` burn-in blocks hold
    exactly `burn_in` steps and block `nb + d` ends on draw d's step. Every block writes
    its last state to row `max(b - nb, 0)` of the buffers: burn-in blocks scribble on row
    0, which draw 0 then overwrites, at the cost of one row write per block (as before).
    """
    burn_in = num_burn_blocks * thin - pre

    def block(c, b):
        def inner(c, j):
            s = b * thin + j - pre
            return _step(sampler, has_ee, chain_keys, c, s, s >= 0, s >= burn_in), None

        c, _ = jax.lax.scan(inner, c, jnp.arange(thin, dtype=jnp.int32))
        row = jnp.maximum(b - num_burn_blocks, 0)
        frozen = c.frozen
        positions = jax.tree.map(
            lambda buf, x: jax.lax.dynamic_update_index_in_dim(
                buf, _nan_where(frozen, x), row, axis=1
            ),
            c.positions,
            c.state.position,
        )
        energies = jax.lax.dynamic_update_index_in_dim(
            c.energies, _nan_where(frozen, c.state.energy), row, axis=1
        )
        divergences = jax.lax.dynamic_update_index_in_dim(c.divergences, c.div_since, row, axis=1)
        c = c._replace(
            positions=positions,
            energies=energies,
            divergences=divergences,
            div_since=jnp.zeros_like(c.div_since),
        )
        return c, None

    carry, _ = jax.lax.scan(block, carry, block0 + jnp.arange(num, dtype=jnp.int32))
    return carry


def _run_chunk(
    static, dynamic, key_data, carry, block0, pre, num_burn_blocks, *, num, thin, has_ee, mesh, impl
):
    """`num` consecutive blocks (see `_blocks`), on one device or sharded.

    `block0`, `pre` and `num_burn_blocks` are traced int32 scalars: a new burn-in length
    that keeps the number of blocks does not recompile. The chain keys travel as raw key
    data (`impl` names the PRNG): a typed key array returned from or passed to a jitted
    function is re-validated on the host every call (~0.5 ms), raw uint32 data is not.
    """
    sampler = eqx.combine(dynamic, static)

    def local(key_data, carry, block0, pre, num_burn_blocks):
        chain_keys = jax.random.wrap_key_data(key_data, impl=impl)
        return _blocks(
            sampler, has_ee, thin, chain_keys, carry, block0, pre, num_burn_blocks, num=num
        )

    if mesh is None:
        return local(key_data, carry, block0, pre, num_burn_blocks)
    chains = PartitionSpec("chains")
    f = jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(chains, chains, PartitionSpec(), PartitionSpec(), PartitionSpec()),
        out_specs=chains,
        # Sampler code is written for one chain and knows nothing of the mesh; chains
        # never communicate, so skip varying-axis checks. The sampler's parameters are
        # closed over: they are replicated on every device.
        check_vma=False,
    )
    return f(key_data, carry, block0, pre, num_burn_blocks)


# Compiled once per (sampler structure, static fields, shapes, dtypes, chunk sizes): a
# sampler rebuilt with the same energy and new numbers reuses the executable.
_run_chunk_jit = jax.jit(
    _run_chunk,
    static_argnums=(0,),
    static_argnames=("num", "thin", "has_ee", "mesh", "impl"),
    donate_argnums=(3,),
)
# Under an outer jit / vmap / grad the carry is a tracer: nothing to donate.
_run_chunk_traced = jax.jit(
    _run_chunk,
    static_argnums=(0,),
    static_argnames=("num", "thin", "has_ee", "mesh", "impl"),
)


# --------------------------------------------------------------------------- driver


def _default_chunk(num_blocks: int) -> int:
    """Blocks (of `thin` steps) per chunk giving about 50 chunks per run."""
    return max(1, -(-num_blocks // 50))


def sample(
    sampler: Sampler,
    key: PRNGKeyArray,
    x0_batch: PyTree,
    num_steps: int,
    *,
    thin: int = 1,
    burn_in: int = 0,
    progress: bool = False,
    checkpoint: str | os.PathLike | None = None,
    callback: Callable[[int, int], None] | None = None,
    chunk_draws: int | None = None,
    devices: list | None = None,
) -> Trace:
    """Run `sampler` on every chain of `x0_batch` for `num_steps` steps.

    The first `burn_in` steps are discarded; of the remaining `num_steps - burn_in`
    (which `thin` must divide) every `thin`-th state is recorded, giving
    `draws = (num_steps - burn_in) / thin`.

    Args:
        sampler: a `Sampler` (ula, mala, underdamped_langevin, hmc, replica exchange, ...).
        key: a JAX PRNG key; chain c at step i uses `fold_in(split(key, chains)[c], i)`.
        x0_batch: PyTree of float arrays with a leading chain axis.
        num_steps: total steps per chain, burn-in included.
        thin: keep one state every `thin` steps.
        burn_in: leading steps not recorded.
        progress: show a progress bar (the run is cut into chunks; same results).
        checkpoint: a file path; the run state is written there atomically after every
            chunk, and a run started with an existing checkpoint resumes from it.
        callback: `callback(steps_done, num_steps)` on the host after every chunk.
        chunk_draws: draws per chunk when chunking (default: about 50 chunks).
        devices: devices to shard the chain axis over (default: all of `jax.devices()`).

    Returns:
        A `Trace` with positions (chains, draws, ...), energies (chains, draws), stats
        and the final state.
    """
    num_steps, thin, burn_in, n = _check_args(sampler, x0_batch, num_steps, thin, burn_in)
    key = as_key(key)
    dynamic, static = eqx.partition(sampler, eqx.is_array)
    num_draws = (num_steps - burn_in) // thin
    devices = list(jax.devices()) if devices is None else list(devices)
    ndev = len(devices)
    mesh = Mesh(np.asarray(devices), ("chains",)) if ndev > 1 else None
    pad = (-n) % ndev
    if pad:
        x0_batch = jax.tree.map(
            lambda l: jnp.concatenate([l, jnp.repeat(l[-1:], pad, axis=0)]), x0_batch
        )

    carry, chain_keys = _prepare_jit(
        static, dynamic, x0_batch, key, n=n, pad=pad, num_draws=num_draws
    )
    impl = jax.random.key_impl(key)
    has_ee = carry.hist.shape[1] > 0
    if mesh is not None:
        sharding = jax.sharding.NamedSharding(mesh, PartitionSpec("chains"))
        carry = _to_global(carry, sharding)
        chain_keys = _to_global(chain_keys, sharding)

    runner = _run_chunk_traced if is_traced((carry, dynamic, chain_keys)) else _run_chunk_jit
    chunk = functools.partial(
        runner, static, dynamic, thin=thin, has_ee=has_ee, mesh=mesh, impl=impl
    )

    chunked = progress or checkpoint is not None or callback is not None or chunk_draws is not None
    # The run as blocks of `thin` steps, one draw per block, burn-in blocks first; the
    # first `pre` (< thin) steps of block 0 are padding (see `_blocks`).
    num_burn_blocks = -(-burn_in // thin)
    pre = num_burn_blocks * thin - burn_in
    num_blocks = num_burn_blocks + num_draws
    block_chunk = _default_chunk(num_blocks) if chunked else num_blocks
    if chunk_draws is not None:
        block_chunk = check_positive_int("chunk_draws", chunk_draws)

    steps_done = 0
    meta: dict[str, Any] = {}
    if checkpoint is not None or progress or callback is not None:
        if is_traced(dynamic) or is_traced(x0_batch):
            raise ArgumentError(
                "checkpoint" if checkpoint is not None else "progress",
                "checkpoints, progress bars and callbacks need concrete values: they are "
                "not available when idf.sample runs under jax.jit / vmap / grad",
            )
    if checkpoint is not None:
        if jax.process_count() > 1:
            raise ValueError("checkpoint is not supported in multi-process runs (jax.distributed)")
        checkpoint = os.fspath(checkpoint)
        meta = dict(
            num_chains=n,
            num_steps=num_steps,
            thin=thin,
            burn_in=burn_in,
            key=_key_fingerprint(key),
            block_chunk=block_chunk,
            layout=str(jax.tree.structure(carry)),
        )
        if os.path.exists(checkpoint):
            carry, steps_done = _load_checkpoint(checkpoint, carry, meta)
            if mesh is not None:
                carry = _to_global(carry, sharding)

    blocks_done = (steps_done + pre) // thin if steps_done else 0
    bar = _Progress(num_steps, steps_done) if progress else None
    try:
        while blocks_done < num_blocks:
            num = min(block_chunk, num_blocks - blocks_done)
            carry = chunk(
                chain_keys,
                carry,
                np.int32(blocks_done),
                np.int32(pre),
                np.int32(num_burn_blocks),
                num=num,
            )
            blocks_done += num
            steps_done = blocks_done * thin - pre
            if chunked:
                jax.block_until_ready(carry)
            if checkpoint is not None:
                _save_checkpoint(checkpoint, carry, {**meta, "steps_done": steps_done})
            if bar is not None:
                bar.update(steps_done)
            if callback is not None:
                callback(steps_done, num_steps)
    finally:
        if bar is not None:
            bar.close()

    # The carry is donated so the (chains, draws, ...) buffer is not copied at the end
    # (peak memory stays ~1x the draws). Small buffers that cannot be reused (e.g. int
    # counters whose output shape differs) make JAX warn; that is expected here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Some donated buffers were not usable")
        return _finish(carry, n, has_ee)


def _to_global(tree, sharding):
    """Place host-identical values on `sharding`; works when the mesh spans processes.

    Single process: a plain device_put. Multi-process (jax.distributed): every process
    holds the same values, and each builds its addressable shards from them.
    """
    if sharding.is_fully_addressable:
        return jax.device_put(tree, sharding)

    def one(leaf):
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            impl = jax.random.key_impl(leaf)
            return jax.random.wrap_key_data(one(jax.random.key_data(leaf)), impl=impl)
        host = np.asarray(leaf)
        spec = PartitionSpec("chains") if host.ndim else PartitionSpec()
        shard = jax.sharding.NamedSharding(sharding.mesh, spec)
        return jax.make_array_from_callback(host.shape, shard, lambda idx: host[idx])

    return jax.tree.map(one, tree)


def _prepare(static, dynamic, x0_batch, key, *, n: int, pad: int, num_draws: int):
    """The initial carry: init of every chain, empty buffers (compiled by `_prepare_jit`)."""
    sampler = eqx.combine(dynamic, static)
    chain_keys = jax.random.split(key, n)
    init_keys = jax.random.split(jax.random.fold_in(key, 2**31 - 1), n)
    if pad:
        chain_keys = jnp.concatenate([chain_keys, jnp.repeat(chain_keys[-1:], pad, axis=0)])
        init_keys = jnp.concatenate([init_keys, jnp.repeat(init_keys[-1:], pad, axis=0)])
    n_total = n + pad
    state = init_chains(sampler, x0_batch, init_keys)
    # The carry is donated to the chunk runners: never alias the caller's arrays.
    state = jax.tree.map(lambda l: jnp.array(l, copy=True), state)
    for field in ("position", "energy"):
        if not hasattr(state, field):
            raise ArgumentError(
                "sampler", f"sampler state must have a `{field}` field, got {type(state).__name__}"
            )
    info_shape = jax.eval_shape(
        lambda k, s: jax.vmap(sampler.step)(jax.vmap(jax.random.fold_in, (0, None))(k, 0), s)[1],
        chain_keys,
        state,
    )
    has_ee = hasattr(info_shape, "energy_error")
    carry = _Carry(
        state=state,
        frozen=~_state_ok(state),
        num_divergent=jnp.zeros((n_total,), jnp.int32),
        div_since=jnp.zeros((n_total,), bool),
        active_steps=jnp.zeros((n_total,), jnp.int32),
        sums=_info_sums_zero(info_shape, n_total),
        hist=jnp.zeros((n_total, _NUM_BINS if has_ee else 0), jnp.int32),
        ee_abs_sum=jnp.zeros((n_total,), jnp.float32),
        ee_abs_max=jnp.zeros((n_total,), jnp.float32),
        positions=jax.tree.map(
            lambda x: jnp.zeros((n_total, num_draws, *x.shape[1:]), x.dtype), state.position
        ),
        energies=jnp.zeros((n_total, num_draws, *state.energy.shape[1:]), state.energy.dtype),
        divergences=jnp.zeros((n_total, num_draws), bool),
    )
    return carry, jax.random.key_data(chain_keys)


_prepare_jit = jax.jit(_prepare, static_argnums=(0,), static_argnames=("n", "pad", "num_draws"))


def _finish_impl(carry: _Carry, n: int, has_ee: bool) -> Trace:
    c = jax.tree.map(lambda l: l[:n], carry)
    denom = jnp.maximum(c.active_steps, 1).astype(jnp.float32)
    stats: dict[str, Array] = {}
    for name, total in zip(c.sums._fields, c.sums):
        if name in ("diverged", "energy_error"):
            continue
        stats[name] = total / _bcast(denom, total)
    stats["frozen"] = c.frozen
    stats["diverged"] = c.frozen
    stats["num_divergent"] = c.num_divergent
    stats["num_active_steps"] = c.active_steps
    if has_ee:
        stats["energy_error_hist"] = c.hist
        stats["mean_energy_error"] = c.sums.energy_error / denom
        stats["mean_abs_energy_error"] = c.ee_abs_sum / denom
        stats["max_abs_energy_error"] = c.ee_abs_max
        stats["num_trajectories"] = jnp.sum(c.hist, axis=1)
    return Trace(c.positions, c.energies, stats, c.state, c.divergences)


_finish_donate = jax.jit(_finish_impl, static_argnums=(1, 2), donate_argnums=0)
_finish_traced = jax.jit(_finish_impl, static_argnums=(1, 2))


def _finish(carry: _Carry, n: int, has_ee: bool) -> Trace:
    """Per-chain summaries and the Trace; the (chains, draws) buffers are donated."""
    return (_finish_traced if is_traced(carry) else _finish_donate)(carry, n, has_ee)
