"""Per-chain summaries carried through the scan: info sums and the |dH| histogram."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# log10 |dH| histogram used for energy-law fidelity: edges at 10^(k/10), k = -100..40.
_LOG10_LO, _LOG10_HI, _BINS_PER_DECADE = -10.0, 4.0, 10
_NUM_BINS = int((_LOG10_HI - _LOG10_LO) * _BINS_PER_DECADE) + 2  # + underflow/overflow
ENERGY_ERROR_BIN_EDGES = 10.0 ** np.linspace(
    _LOG10_LO, _LOG10_HI, int((_LOG10_HI - _LOG10_LO) * _BINS_PER_DECADE) + 1
)
"""Upper edges of the |dH| histogram in `trace.stats['energy_error_hist']`: bin 0 counts
|dH| < 1e-10, bin k counts ENERGY_ERROR_BIN_EDGES[k-1] <= |dH| < ENERGY_ERROR_BIN_EDGES[k],
the last bin |dH| >= 1e4 (and non-finite dH)."""


def _info_sums_zero(info_shape, n):
    return jax.tree.map(lambda s: jnp.zeros((n, *s.shape[1:]), jnp.float32), info_shape)


def _hist_index(abs_de):
    lg = jnp.log10(jnp.maximum(abs_de, 1e-30))
    idx = jnp.floor((lg - _LOG10_LO) * _BINS_PER_DECADE).astype(jnp.int32) + 1
    idx = jnp.where(abs_de < 10.0**_LOG10_LO, 0, idx)
    idx = jnp.where(jnp.isfinite(abs_de), idx, _NUM_BINS - 1)
    return jnp.clip(idx, 0, _NUM_BINS - 1)
