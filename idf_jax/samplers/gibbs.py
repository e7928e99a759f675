"""Checkerboard block Gibbs sampling for nearest-neighbour spin lattices (Ising, Potts).

On a periodic square lattice with even side L the sites split into two colours
(checkerboard, (i + j) mod 2); sites of one colour only touch sites of the other, so
all sites of a colour are conditionally independent given the other colour and are
resampled exactly from their conditional law in one parallel block. One `step` is one
sweep: colour 0, then colour 1 (L^2 spin updates). The chain is a heat-bath Gibbs
sampler: it leaves exp(-E/T) invariant and every proposal is taken.

The sampler reads the model from a capsule object without importing the `capsules`
package (duck typing): `capsule.params` must carry `model` ("ising" or "potts"), `L`,
`J`, and `h` (Ising) or `q` (Potts), as built by `capsules.lattice.ising` / `potts`.

Speed notes (CPU): each colour draws L^2/2 32-bit random words, one per updated site,
from a Philox-4x32-10 stream keyed by the step key (cheaper per word than threefry);
Ising heat-bath probabilities take only five values (four neighbours), so they are a
five-entry table of 32-bit thresholds compared with the raw bits (no float transcendental
per site). The energy is carried exactly as integer bond and magnetisation counts updated
from the same neighbour sums. The two colours are the two iterations of a short
`lax.scan` (one colour per iteration) followed by an `optimization_barrier`, so XLA
neither recomputes colour 0 inside colour 1's neighbour sums nor fuses the sweep into the
driver's bookkeeping (measured ~3x faster than one fused sweep on CPU).
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, Integer, PRNGKeyArray

from .._checks import ArgumentError
from .._custom_types import FloatScalar
from ._base import Sampler, as_param, check_positive

__all__ = [
    "GibbsInfo",
    "IsingGibbs",
    "IsingGibbsState",
    "PottsGibbs",
    "PottsGibbsState",
    "block_gibbs",
]


class IsingGibbsState(NamedTuple):
    """Spins (L, L) int8 in {-1, +1}; energy E = -J bonds - h magnetization (float32);
    bonds = sum_<ij> s_i s_j and magnetization = sum_i s_i kept exactly as int32."""

    position: Integer[Array, "L L"]
    energy: Float[Array, ""]
    bonds: Int[Array, ""]
    magnetization: Int[Array, ""]


class PottsGibbsState(NamedTuple):
    """Spins (L, L) int8 in {0..q-1}; energy E = -J satisfied (float32);
    satisfied = sum_<ij> delta(s_i, s_j) kept exactly as int32."""

    position: Integer[Array, "L L"]
    energy: Float[Array, ""]
    satisfied: Int[Array, ""]


class GibbsInfo(NamedTuple):
    """acceptance_rate: always 1 (heat-bath moves are never rejected);
    flip_fraction: fraction of the L^2 spins whose value changed in this sweep."""

    acceptance_rate: Float[Array, ""]
    flip_fraction: Float[Array, ""]


def _read_model(capsule: Any) -> dict:
    params = getattr(capsule, "params", None)
    if not isinstance(params, dict) or "model" not in params:
        raise ArgumentError(
            "capsule",
            "block_gibbs needs a lattice capsule whose `params` dict names the `model` "
            "('ising' or 'potts') and `L`, `J` (and `h` or `q'), e.g. capsules.lattice.ising(L=64)",
        )
    model = params["model"]
    if model not in ("ising", "potts"):
        raise ArgumentError(
            "capsule", f"block_gibbs supports models 'ising' and 'potts', got {model!r}"
        )
    L = params.get("L")
    if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or L < 2:
        raise ArgumentError("capsule", f"lattice side L must be an integer >= 2, got {L!r}")
    if L % 2:
        raise ArgumentError(
            "capsule",
            f"checkerboard block Gibbs needs an even lattice side L (a periodic odd lattice "
            f"cannot be two-coloured), got L={L}",
        )
    return params


def _colour_masks(L: int) -> tuple[np.ndarray, np.ndarray]:
    ij = np.add.outer(np.arange(L), np.arange(L))
    return (ij % 2 == 0), (ij % 2 == 1)


def _nb_sum(s):
    """Sum of the four periodic nearest neighbours of every site (same dtype as s)."""
    return jnp.roll(s, 1, -2) + jnp.roll(s, -1, -2) + jnp.roll(s, 1, -1) + jnp.roll(s, -1, -1)


_PHILOX_M = (np.uint32(0xD2511F53), np.uint32(0xCD9E8D57))
_PHILOX_W = (np.uint32(0x9E3779B9), np.uint32(0xBB67AE85))


def _mulhilo(m, x):
    """(high, low) 32-bit halves of the 64-bit product m * x (x uint32 array)."""
    with jax.enable_x64(True):  # 32x32 -> 64-bit multiply; the result is cast back to uint32
        p = x.astype(jnp.uint64) * jnp.uint64(m)
        return (p >> 32).astype(jnp.uint32), p.astype(jnp.uint32)


def philox4x32(counter, key, rounds: int = 10):
    """Philox-4x32 (Salmon et al., SC'11, "Parallel random numbers: as easy as 1, 2, 3"):
    a keyed bijection of four 32-bit counter words, 10 rounds by default (the Random123
    default, Crush-resistant). Checked against Random123's known-answer vectors.

    Args:
        counter: four uint32 arrays of one shape (c0, c1, c2, c3).
        key: two uint32 scalars or arrays broadcastable to the counter (k0, k1).

    Returns:
        Four uint32 arrays of the counter's shape: 4 uniform 32-bit words per counter.
    """
    c0, c1, c2, c3 = jnp.broadcast_arrays(*(jnp.asarray(c, jnp.uint32) for c in counter))
    k0, k1 = (jnp.asarray(k, jnp.uint32) for k in key)
    for r in range(rounds):
        if r:
            k0, k1 = k0 + _PHILOX_W[0], k1 + _PHILOX_W[1]
        hi0, lo0 = _mulhilo(_PHILOX_M[0], c0)
        hi1, lo1 = _mulhilo(_PHILOX_M[1], c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


def _random_words(key, n: int):
    """n uniform 32-bit words for one (chain, step) key, shape (n,).

    Philox-4x32-10 keyed by the step key's two 32-bit words, counters 0..n/4-1: four words
    per evaluation, ~1.6x cheaper per word on CPU than threefry-2x32 (20 rounds, two words
    per evaluation), which was ~70% of a sweep's time. Each (chain, step, colour) key opens
    its own Philox stream (the standard keyed use of a counter-based generator).
    """
    kd = jax.random.key_data(key).reshape(-1).astype(jnp.uint32)  # threefry: 2 words
    k0, k1 = kd[0], (kd[1] if kd.shape[0] > 1 else ~kd[0])
    m = -(-n // 4)
    i = jnp.arange(m, dtype=jnp.uint32)
    zero = jnp.zeros((), jnp.uint32)
    return jnp.concatenate(philox4x32((i, zero, zero, zero), (k0, k1)))[:n]


def _spread(bits, L):
    """(L, L/2) words -> (L, L): word k of a row serves columns 2k and 2k+1, exactly one of
    which has the colour being updated, so every updated site gets its own word."""
    return jnp.repeat(bits, 2, axis=-1, total_repeat_length=L)


def _ising_thresholds(J, h, temperature):
    """uint32 t_k with P(s=+1 | neighbour sum 2k-4) = t_k / 2^32 = sigmoid(2 (J n + h) / T)."""
    n = jnp.arange(-4.0, 5.0, 2.0)
    p = jax.nn.sigmoid(2.0 * (J * n + h) / temperature)
    return jnp.clip(jnp.round(p * 2.0**32), 0, 2.0**32 - 1).astype(jnp.uint32)


def _select5(idx, table):
    """table[idx] for idx in 0..4 as a chain of selects (cheaper than a gather on CPU)."""
    out = jnp.where(idx == 1, table[1], table[0])
    out = jnp.where(idx == 2, table[2], out)
    out = jnp.where(idx == 3, table[3], out)
    return jnp.where(idx == 4, table[4], out)


class IsingGibbs(Sampler):
    """Checkerboard heat-bath sampler of the Ising model E = -J sum_<ij> s_i s_j - h sum_i s_i.

    J, h and the temperature are array leaves (traced: a new temperature reuses the
    compiled run); the side L is static.
    """

    J: Array
    h: Array
    temperature: Array
    L: int = eqx.field(static=True)
    is_adjusted: ClassVar[bool] = False

    def _energy_of(self, bonds, mag):
        J, h = jnp.asarray(self.J, jnp.float32), jnp.asarray(self.h, jnp.float32)
        return (-J * bonds.astype(jnp.float32) - h * mag.astype(jnp.float32)).astype(jnp.float32)

    def init(self, position, key: PRNGKeyArray | None = None) -> IsingGibbsState:
        del key
        L = self.L
        if jnp.shape(position) != (L, L):
            raise ArgumentError(
                "position", f"spins must have shape ({L}, {L}), got {jnp.shape(position)}"
            )
        s = jnp.where(position > 0, 1, -1).astype(jnp.int8)
        s32 = s.astype(jnp.int32)
        bonds = jnp.sum(s32 * (jnp.roll(s32, 1, -1) + jnp.roll(s32, 1, -2)))
        mag = jnp.sum(s32)
        return IsingGibbsState(s, self._energy_of(bonds, mag), bonds, mag)

    def step(self, key: PRNGKeyArray, state: IsingGibbsState):
        L = self.L
        thr = _ising_thresholds(
            jnp.asarray(self.J, jnp.float32),
            jnp.asarray(self.h, jnp.float32),
            jnp.asarray(self.temperature, jnp.float32),
        )
        masks = tuple(jnp.asarray(m) for m in _colour_masks(L))

        def half(carry, c):
            s, bonds, mag, flips = carry
            words = _random_words(jax.random.fold_in(key, c), L * L // 2)
            bits = _spread(words.reshape(L, L // 2), L)
            mask = jnp.where(c == 0, masks[0], masks[1])
            nb = _nb_sum(s)  # int8 in {-4, -2, 0, 2, 4}
            up = bits < _select5((nb + 4) >> 1, thr)
            new = jnp.where(mask, jnp.where(up, jnp.int8(1), jnp.int8(-1)), s)
            d = (new - s).astype(jnp.int32)  # 0 or +-2, only on this colour
            bonds = bonds + jnp.sum(d * nb.astype(jnp.int32))
            return (new, bonds, mag + jnp.sum(d), flips + jnp.sum(d != 0)), None

        carry = (state.position, state.bonds, state.magnetization, jnp.int32(0))
        # One colour per iteration of a two-step loop, then a barrier: XLA neither fuses
        # colour 0 into colour 1's neighbour sums nor the sweep into the caller's code.
        carry, _ = jax.lax.scan(half, carry, jnp.arange(2))
        s, bonds, mag, flips = jax.lax.optimization_barrier(carry)
        info = GibbsInfo(jnp.float32(1.0), (flips / (L * L)).astype(jnp.float32))
        return IsingGibbsState(s, self._energy_of(bonds, mag), bonds, mag), info


class PottsGibbs(Sampler):
    """Checkerboard heat-bath sampler of the q-state Potts model E = -J sum_<ij> delta(s_i, s_j).

    J and the temperature are array leaves; L and q are static.
    """

    J: Array
    temperature: Array
    L: int = eqx.field(static=True)
    q: int = eqx.field(static=True)
    is_adjusted: ClassVar[bool] = False

    def init(self, position, key: PRNGKeyArray | None = None) -> PottsGibbsState:
        del key
        L = self.L
        if jnp.shape(position) != (L, L):
            raise ArgumentError(
                "position", f"spins must have shape ({L}, {L}), got {jnp.shape(position)}"
            )
        s = jnp.asarray(position).astype(jnp.int8)
        sat = jnp.sum((s == jnp.roll(s, 1, -1)).astype(jnp.int32) + (s == jnp.roll(s, 1, -2)))
        J = jnp.asarray(self.J, jnp.float32)
        return PottsGibbsState(s, (-J * sat).astype(jnp.float32), sat)

    def step(self, key: PRNGKeyArray, state: PottsGibbsState):
        L, q = self.L, self.q
        J = jnp.asarray(self.J, jnp.float32)
        T = jnp.asarray(self.temperature, jnp.float32)
        # Boltzmann weights exp(J n / T) of n = 0..4 equal neighbours, scaled so the
        # largest is 1 (no overflow at low T; the law is unchanged by scaling).
        n = jnp.arange(5.0)
        w = jnp.exp(J * (n - jnp.where(J > 0, 4.0, 0.0)) / T)
        masks = tuple(jnp.asarray(m) for m in _colour_masks(L))
        states = jnp.arange(q, dtype=jnp.int8)

        def half(carry, c):
            s, sat, flips = carry
            mask = jnp.where(c == 0, masks[0], masks[1])
            k = jax.random.fold_in(key, c)
            nbrs = (jnp.roll(s, 1, 0), jnp.roll(s, -1, 0), jnp.roll(s, 1, 1), jnp.roll(s, -1, 1))
            # counts[k] = number of neighbours in state k, shape (q, L, L), values 0..4
            counts = sum((nb[None] == states[:, None, None]).astype(jnp.int8) for nb in nbrs)
            weights = w[counts]  # (q, L, L)
            cdf = jnp.cumsum(weights, axis=0)
            # uniform in [0, 1) from the top 24 bits of one word per updated site
            u = (_random_words(k, L * L // 2) >> 8).astype(jnp.float32) * (2.0**-24)
            u = _spread(u.reshape(L, L // 2), L) * cdf[-1]
            # inverse CDF: new = number of k < q-1 with cdf[k] <= u
            new_val = jnp.sum((cdf[:-1] <= u[None]).astype(jnp.int8), axis=0).astype(jnp.int8)
            new = jnp.where(mask, new_val, s)
            c_new = jnp.take_along_axis(counts, new[None].astype(jnp.int32), 0)[0]
            c_old = jnp.take_along_axis(counts, s[None].astype(jnp.int32), 0)[0]
            dsat = jnp.sum(jnp.where(mask, c_new.astype(jnp.int32) - c_old, 0))
            return (new, sat + dsat, flips + jnp.sum(new != s)), None

        carry = (state.position, state.satisfied, jnp.int32(0))
        carry, _ = jax.lax.scan(half, carry, jnp.arange(2))
        s, sat, flips = jax.lax.optimization_barrier(carry)
        info = GibbsInfo(jnp.float32(1.0), (flips / (L * L)).astype(jnp.float32))
        return PottsGibbsState(s, (-J * sat).astype(jnp.float32), sat), info


def block_gibbs(capsule: Any, temperature: FloatScalar) -> IsingGibbs | PottsGibbs:
    """Checkerboard block Gibbs (heat bath) sampler for a lattice spin capsule.

    Targets p(s) ∝ exp(-E(s)/T) exactly. One `step` resamples colour 0 then colour 1
    from their exact conditionals:
    - Ising: P(s_i = +1 | rest) = 1 / (1 + exp(-2 (J sum_nb s_j + h) / T));
    - Potts: P(s_i = k | rest) ∝ exp(J n_k / T), n_k = neighbours of i in state k.

    Drive many lattices with `idf.sample(sampler, key, capsule.init(key, chains), n)`:
    the state carries `position` (spins (L, L) int8) and `energy` (float32), plus the
    exact integer counts the energy is made of.

    Args:
        capsule: a lattice capsule (`capsules.lattice.ising` / `potts`), read through its
            `params` dict (model, L, J, h / q); L must be even.
        temperature: T > 0 in units of J (k_B = 1); an array leaf of the sampler.

    Returns:
        An `IsingGibbs` or `PottsGibbs` sampler; `init(spins)` accepts any integer / float
        array of shape (L, L) (Ising: > 0 means +1).
    """
    params = _read_model(capsule)
    check_positive("temperature", temperature)
    L = int(params["L"])
    T = as_param(temperature)
    if params["model"] == "ising":
        return IsingGibbs(as_param(float(params["J"])), as_param(float(params.get("h", 0.0))), T, L)
    return PottsGibbs(as_param(float(params["J"])), T, L, int(params["q"]))
