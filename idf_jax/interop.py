"""Hand results to the tools people already use: ArviZ for traces, ASE for structures.

Both packages are optional (`pip install idf-jax[dev]` brings ArviZ, `[molecular]` ASE);
each function imports its package on call and says which extra to install when missing.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from ._checks import ArgumentError

__all__ = ["to_arviz", "to_ase"]


def _require(module: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(f"{module} is needed here: pip install 'idf-jax[{extra}]'") from e


def to_arviz(trace: Any, *, var_names: dict[str, str] | None = None) -> Any:
    """An `arviz.InferenceData` from a `Trace`.

    posterior: one variable per position leaf, named `x` (a single array) or by its
        PyTree path (`x['a']` -> `a`), dims (chain, draw, ...);
    sample_stats: `energy` (chain, draw) — the potential E(x), ArviZ's name for it —,
        `diverging` (chain, draw) from `trace.divergences` (a divergent, rejected
        proposal in the steps that led to the draw), and `lp` = -E.

    Frozen chains (non-finite state) carry NaN draws; drop them first with
    `trace.stats["frozen"]` if ArviZ's summaries should ignore them.

    Args:
        trace: the result of `idf.sample`.
        var_names: optional renaming {leaf name: variable name}.
    """
    az = _require("arviz", "dev")
    if not hasattr(trace, "positions") or not hasattr(trace, "energies"):
        raise ArgumentError("trace", f"to_arviz needs an idf Trace, got {type(trace).__name__}")
    posterior: dict[str, np.ndarray] = {}
    flat = jax.tree_util.tree_flatten_with_path(trace.positions)[0]
    for path, leaf in flat:
        name = "x" if not path else jax.tree_util.keystr(path).strip("[]'.\"") or "x"
        if var_names and name in var_names:
            name = var_names[name]
        posterior[name] = np.asarray(leaf)
    energy = np.asarray(trace.energies)
    stats: dict[str, np.ndarray] = {"energy": energy, "lp": -energy}
    if getattr(trace, "divergences", None) is not None:
        stats["diverging"] = np.asarray(trace.divergences, bool)
    else:
        stats["diverging"] = np.zeros(energy.shape, bool)
    return az.from_dict(posterior=posterior, sample_stats=stats)


def to_ase(symbols: Any, positions: Any) -> Any:
    """An `ase.Atoms` from element symbols (n,) and positions (n, 3) in Angstrom."""
    ase = _require("ase", "molecular")
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ArgumentError("positions", f"positions must have shape (n, 3), got {pos.shape}")
    syms = list(symbols)
    if len(syms) != pos.shape[0]:
        raise ArgumentError("symbols", f"{len(syms)} symbols for {pos.shape[0]} positions")
    return ase.Atoms(symbols=syms, positions=pos)
