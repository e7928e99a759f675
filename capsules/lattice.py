"""Lattice spin models on a periodic L x L square lattice: Ising and q-state Potts.

A state is the spin array of one lattice, shape (L, L), integer dtype (int8 by default):
Ising spins are -1 / +1, Potts spins are 0 .. q-1. Both are "thermodynamic-hardware
native": every site's conditional law depends only on its four nearest neighbours, so
the two checkerboard colours can be resampled in two parallel blocks
(`idf_jax.block_gibbs`).

Known answers used by the tests (J > 0, k_B = 1, L -> infinity):
- Onsager (1944): energy per spin
  u(T) = -J coth(2K) [1 + (2/pi) (2 tanh^2(2K) - 1) K1(k)],  K = J/T,
  k = 2 sinh(2K) / cosh^2(2K), K1 the complete elliptic integral of the first kind;
  critical temperature T_c = 2J / ln(1 + sqrt 2) ~= 2.269185 J.
- Yang (1952): spontaneous magnetisation per spin M(T) = (1 - sinh(2K)^-4)^(1/8), T < T_c.
- Potts with q = 2 is the Ising model at coupling J/2 plus a constant:
  E_Potts = -J sum delta(s_i, s_j) = -(J/2) sum s_i s_j - J N_bonds / 2.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Integer, PRNGKeyArray

from ._base import Capsule, register

__all__ = [
    "ising",
    "potts",
    "onsager_energy",
    "yang_magnetization",
    "ISING_TC",
    "potts_tc",
]

ISING_TC = 2.0 / np.log1p(np.sqrt(2.0))
"""Critical temperature of the square-lattice Ising model in units of J (k_B = 1)."""


def potts_tc(q: int) -> float:
    """Critical temperature T_c = J / ln(1 + sqrt q) of the square-lattice q-state Potts model."""
    return float(1.0 / np.log1p(np.sqrt(q)))


def onsager_energy(temperature: float, J: float = 1.0) -> float:
    """Onsager's exact energy per spin of the infinite square-lattice Ising model (h = 0).

    u = -J coth(2K) [1 + (2/pi)(2 tanh^2(2K) - 1) K1(k)],  K = J/T, k = 2 sinh 2K / cosh^2 2K.
    """
    from scipy.special import ellipk

    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    K = J / temperature
    k = 2.0 * np.sinh(2 * K) / np.cosh(2 * K) ** 2
    a = 2 * np.tanh(2 * K) ** 2 - 1  # vanishes at T_c, where K1(k=1) diverges
    # scipy's ellipk takes the parameter m = k^2.
    term = 0.0 if abs(a) < 1e-12 else a * ellipk(min(k**2, 1.0))
    return float(-J / np.tanh(2 * K) * (1 + 2 / np.pi * term))


def yang_magnetization(temperature: float, J: float = 1.0) -> float:
    """Yang's exact spontaneous magnetisation per spin, (1 - sinh(2J/T)^-4)^(1/8); 0 above T_c."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    x = 1.0 - np.sinh(2 * J / temperature) ** -4
    return float(x**0.125) if x > 0 else 0.0


def _check_L(L) -> int:
    if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or L < 2:
        raise ValueError(f"L (lattice side) must be an integer >= 2, got {L!r}")
    return int(L)


def _check_finite(name, v) -> float:
    if isinstance(v, bool) or not np.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {v!r}")
    return float(v)


def _check_spins(x, L):
    if jnp.shape(x)[-2:] != (L, L):
        raise ValueError(f"spins must have shape (..., {L}, {L}), got {jnp.shape(x)}")


def _ising_energy(J: float, h: float, L: int):
    def energy_fn(spins: Integer[Array, "L L"]) -> Float[Array, ""]:
        """E = -J sum_<ij> s_i s_j - h sum_i s_i (each bond once, periodic)."""
        _check_spins(spins, L)
        s = spins.astype(jnp.int32)
        bonds = jnp.sum(s * (jnp.roll(s, 1, -1) + jnp.roll(s, 1, -2)))
        mag = jnp.sum(s)
        return (-J * bonds - h * mag).astype(jnp.float32)

    return energy_fn


@register("lattice.ising", "Ising model on a periodic L x L square lattice (spins -1/+1)")
def ising(L: int, J: float = 1.0, h: float = 0.0) -> Capsule:
    """Square-lattice Ising model with periodic boundaries.

    E(s) = -J sum_<ij> s_i s_j - h sum_i s_i,  s_i in {-1, +1}, nearest-neighbour bonds
    <ij> counted once (2 L^2 bonds). Energies in units of J (k_B = 1, temperatures in the
    same units). A state is an int8 array (L, L).

    Args:
        L: lattice side (>= 2; the checkerboard sampler needs it even).
        J: coupling (J > 0 ferromagnet, J < 0 antiferromagnet).
        h: external field.

    Returns:
        A `Capsule`; `init(key, n)` draws n hot (infinite-temperature) lattices, shape
        (n, L, L) int8; `decode(s)` gives a dict with the spins, energy per spin and
        magnetisation per spin. `params` carries what `idf_jax.block_gibbs` needs;
        `state_kind` is "spins".
    """
    L = _check_L(L)
    J = _check_finite("J", J)
    h = _check_finite("h", h)
    energy_fn = _ising_energy(J, h, L)

    def init(key: PRNGKeyArray, num_chains: int) -> Integer[Array, "n L L"]:
        up = jax.random.bernoulli(key, 0.5, (num_chains, L, L))
        return jnp.where(up, 1, -1).astype(jnp.int8)

    def decode(spins) -> dict:
        s = np.asarray(spins)
        return {
            "spins": s.astype(np.int8),
            "energy_per_spin": float(energy_fn(jnp.asarray(s))) / L**2,
            "magnetization_per_spin": float(s.astype(np.float64).mean()),
        }

    return Capsule(
        name="lattice.ising",
        energy_fn=energy_fn,
        init=init,
        decode=decode,
        params={"model": "ising", "L": L, "J": J, "h": h},
        description="Ising model on a periodic square lattice",
        state_kind="spins",
    )


def _potts_energy(J: float, L: int):
    def energy_fn(spins: Integer[Array, "L L"]) -> Float[Array, ""]:
        """E = -J sum_<ij> delta(s_i, s_j) (each bond once, periodic)."""
        _check_spins(spins, L)
        s = spins
        same = (s == jnp.roll(s, 1, -1)).astype(jnp.int32) + (s == jnp.roll(s, 1, -2))
        return (-J * jnp.sum(same)).astype(jnp.float32)

    return energy_fn


@register("lattice.potts", "q-state Potts model on a periodic L x L square lattice")
def potts(L: int, q: int, J: float = 1.0) -> Capsule:
    """Square-lattice q-state Potts model with periodic boundaries.

    E(s) = -J sum_<ij> delta(s_i, s_j),  s_i in {0, ..., q-1}; bonds counted once.
    T_c = J / ln(1 + sqrt q) (continuous for q <= 4, first order for q > 4).
    A state is an int8 array (L, L).

    Args:
        L: lattice side (>= 2; the checkerboard sampler needs it even).
        q: number of states, 2 <= q <= 127.
        J: coupling.
    """
    L = _check_L(L)
    if isinstance(q, bool) or not isinstance(q, (int, np.integer)) or not 2 <= q <= 127:
        raise ValueError(f"q (number of Potts states) must be an integer in [2, 127], got {q!r}")
    q = int(q)
    J = _check_finite("J", J)
    energy_fn = _potts_energy(J, L)

    def init(key: PRNGKeyArray, num_chains: int) -> Integer[Array, "n L L"]:
        return jax.random.randint(key, (num_chains, L, L), 0, q).astype(jnp.int8)

    def decode(spins) -> dict:
        s = np.asarray(spins)
        counts = np.bincount(s.ravel().astype(np.int64), minlength=q)[:q]
        # Order parameter m = (q max_k n_k / N - 1) / (q - 1): 0 disordered, 1 ordered.
        m = (q * counts.max() / s.size - 1.0) / (q - 1.0)
        return {
            "spins": s.astype(np.int8),
            "energy_per_spin": float(energy_fn(jnp.asarray(s))) / L**2,
            "order_parameter": float(m),
        }

    return Capsule(
        name="lattice.potts",
        energy_fn=energy_fn,
        init=init,
        decode=decode,
        params={"model": "potts", "L": L, "q": q, "J": J},
        description="q-state Potts model on a periodic square lattice",
        state_kind="spins",
    )
