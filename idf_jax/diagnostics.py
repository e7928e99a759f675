"""Convergence diagnostics: rank-normalised split R-hat and bulk ESS, acceptance, summary.

R-hat and ESS follow Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021), "Rank-
normalization, folding, and localization: an improved R-hat for assessing convergence
of MCMC", Bayesian Analysis 16(2): chains are split in half, draws are replaced by the
normal scores of their ranks, and ESS uses Geyer's initial monotone sequence.
They run on the host (numpy) on arrays shaped (chains, draws, ...).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from jaxtyping import ArrayLike
from scipy.special import ndtri

__all__ = ["ess", "ess_tail", "rhat", "split_rhat", "acceptance_rate", "summary"]


def _as_chains(x: ArrayLike) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim < 2:
        raise ValueError(f"draws must be shaped (chains, draws, ...), got shape {a.shape}")
    if a.shape[1] < 4:
        raise ValueError(f"need at least 4 draws per chain for diagnostics, got {a.shape[1]}")
    return a


def _split(a: np.ndarray) -> np.ndarray:
    """(chains, draws) -> (2 chains, draws // 2), dropping the middle draw when odd."""
    half = a.shape[1] // 2
    return np.concatenate([a[:, :half], a[:, -half:]], axis=0)


def _z_scale(a: np.ndarray) -> np.ndarray:
    """Normal scores of the pooled ranks (Blom's offset 3/8)."""
    from scipy.stats import rankdata  # imported here: scipy.stats costs ~1 s at import

    r = rankdata(a, axis=None, method="average").reshape(a.shape)
    return ndtri((r - 0.375) / (a.size + 0.25))


def _autocov(a: np.ndarray) -> np.ndarray:
    """Biased autocovariance of each chain along axis 1, via FFT."""
    n = a.shape[1]
    x = a - a.mean(axis=1, keepdims=True)
    m = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(x, n=m, axis=1)
    return np.fft.irfft(f * np.conjugate(f), n=m, axis=1)[:, :n] / n


def _ess_raw(a: np.ndarray) -> float:
    """ESS of one (chains, draws) array with Geyer's initial monotone sequence."""
    n_chain, n_draw = a.shape
    if np.ptp(a) == 0 or not np.all(np.isfinite(a)):
        return float("nan")
    acov = _autocov(a)
    chain_mean = a.mean(axis=1)
    mean_var = np.mean(acov[:, 0]) * n_draw / (n_draw - 1.0)
    var_plus = mean_var * (n_draw - 1.0) / n_draw
    if n_chain > 1:
        var_plus += np.var(chain_mean, ddof=1)
    mean_acov = acov.mean(axis=0)
    rho = np.zeros(n_draw)
    rho[0] = 1.0
    rho_even, rho_odd = 1.0, 1.0 - (mean_var - mean_acov[1]) / var_plus
    rho[1] = rho_odd
    t = 1
    while t < n_draw - 3 and rho_even + rho_odd > 0.0:
        rho_even = 1.0 - (mean_var - mean_acov[t + 1]) / var_plus
        rho_odd = 1.0 - (mean_var - mean_acov[t + 2]) / var_plus
        if rho_even + rho_odd >= 0:
            rho[t + 1], rho[t + 2] = rho_even, rho_odd
        t += 2
    max_t = t - 2
    if rho_even > 0:
        rho[max_t + 1] = rho_even
    t = 1
    while t <= max_t - 2:  # initial monotone sequence
        if rho[t + 1] + rho[t + 2] > rho[t - 1] + rho[t]:
            rho[t + 1] = rho[t + 2] = (rho[t - 1] + rho[t]) / 2.0
        t += 2
    total = n_chain * n_draw
    tau = -1.0 + 2.0 * np.sum(rho[: max_t + 1]) + np.sum(rho[max_t + 1 : max_t + 2])
    tau = max(tau, 1.0 / np.log10(total))
    return float(total / tau)


def _rhat_raw(a: np.ndarray) -> float:
    n = a.shape[1]
    between = n * np.var(a.mean(axis=1), ddof=1)
    within = np.mean(np.var(a, axis=1, ddof=1))
    return float(np.sqrt((between / within + n - 1) / n))


def _per_component(fn, x: ArrayLike) -> np.ndarray:
    a = _as_chains(x)
    flat = a.reshape(a.shape[0], a.shape[1], -1)
    out = np.array([fn(flat[:, :, k]) for k in range(flat.shape[2])])
    return out.reshape(a.shape[2:]) if a.ndim > 2 else out[0]


def ess(x: ArrayLike) -> np.ndarray:
    """Bulk effective sample size of draws shaped (chains, draws, ...), per component.

    ESS of the rank-normalised split chains (Vehtari et al. 2021, eq. 10-11).
    """
    return _per_component(lambda a: _ess_raw(_z_scale(_split(a))), x)


def ess_tail(x: ArrayLike, prob: float = 0.05) -> np.ndarray:
    """Tail effective sample size, per component (Vehtari et al. 2021, section 4.3).

    The minimum of the ESS of the indicators I(x <= q_prob) and I(x <= q_{1-prob}) over
    the split chains: how well the 5 % and 95 % quantiles are estimated. Matches ArviZ's
    `ess(method="tail")`.
    """

    def one(a):
        lo, hi = np.quantile(a, [prob, 1.0 - prob])
        return min(
            _ess_raw(_split((a <= lo).astype(np.float64))),
            _ess_raw(_split((a <= hi).astype(np.float64))),
        )

    return _per_component(one, x)


def rhat(x: ArrayLike) -> np.ndarray:
    """Rank-normalised split R-hat, max of bulk and folded (tail) versions, per component."""

    def one(a):
        bulk = _rhat_raw(_z_scale(_split(a)))
        folded = np.abs(a - np.median(a))
        return max(bulk, _rhat_raw(_z_scale(_split(folded))))

    return _per_component(one, x)


def split_rhat(x: ArrayLike) -> np.ndarray:
    """Classic (not rank-normalised) split R-hat, per component."""
    return _per_component(lambda a: _rhat_raw(_split(a)), x)


def acceptance_rate(trace) -> float:
    """Mean Metropolis acceptance probability over chains and kept steps."""
    return float(np.mean(np.asarray(trace.stats["acceptance_rate"])))


def summary(trace, *, print_table: bool = True, max_components: int = 8) -> dict[str, Any]:
    """Summarise a `Trace`: mean, sd, bulk and tail ESS and R-hat of the energy and each leaf.

    Frozen chains (their own state was non-finite, e.g. a NaN start; their draws are NaN)
    are left out of every statistic, and the summary says how many were left out.
    Leaves with more than `max_components` components are reported in aggregate
    (min ESS, max R-hat over components). Prints a rich table when `print_table`.

    Returns:
        {'energy': {...}, 'position': {leaf_name: {...}}, 'acceptance_rate': float,
         'frozen_chains': int, 'num_divergent': int (divergent proposals, all rejected),
         'divergent_chains': int (chains with at least one), 'chains': int (chains
         summarised), 'draws': int}
    """
    import jax

    frozen = np.asarray(trace.stats.get("frozen", trace.stats["diverged"]), bool)
    keep = ~frozen
    if not np.any(keep):
        raise ValueError(
            f"every one of the {frozen.size} chains is frozen (non-finite state): nothing "
            "to summarise; check the starting positions"
        )
    energies = np.asarray(trace.energies)[keep]
    num_div = np.asarray(trace.stats.get("num_divergent", np.zeros(frozen.shape, int)))
    out: dict[str, Any] = {
        "chains": int(energies.shape[0]),
        "draws": int(energies.shape[1]),
        "frozen_chains": int(np.sum(frozen)),
        "energy": _stats(energies),
        "position": {},
        "num_divergent": int(np.sum(num_div[keep])),
        "divergent_chains": int(np.sum(num_div[keep] > 0)),
        "acceptance_rate": (
            float(np.mean(np.asarray(trace.stats["acceptance_rate"])[keep]))
            if "acceptance_rate" in trace.stats
            else float("nan")
        ),
    }
    for path, leaf in jax.tree_util.tree_flatten_with_path(trace.positions)[0]:
        name = "x" + jax.tree_util.keystr(path)
        out["position"][name] = _stats(np.asarray(leaf)[keep])
    if print_table:
        _print(out, max_components)
    return out


def _stats(a: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "mean": a.mean(axis=(0, 1)),
        "sd": a.std(axis=(0, 1)),
        "ess_bulk": ess(a),
        "ess_tail": ess_tail(a),
        "rhat": rhat(a),
    }


def _print(out: dict, max_components: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"idf-jax summary: {out['chains']} chains x {out['draws']} draws")
    for col in ("quantity", "mean", "sd", "ESS (bulk)", "ESS (tail)", "R-hat"):
        table.add_column(col, justify="right" if col != "quantity" else "left")

    def row(name, s):
        table.add_row(
            name,
            f"{float(s['mean']):.4g}",
            f"{float(s['sd']):.4g}",
            f"{float(s['ess_bulk']):.0f}",
            f"{float(s['ess_tail']):.0f}",
            f"{float(s['rhat']):.3f}",
        )

    row("energy", out["energy"])
    for name, s in out["position"].items():
        size = np.size(s["mean"])
        if size <= max_components:
            for idx in np.ndindex(np.shape(s["mean"])):
                row(
                    f"{name}{list(idx) if idx else ''}",
                    {k: np.asarray(v)[idx] for k, v in s.items()},
                )
        else:
            table.add_row(
                f"{name} ({size} comps)",
                f"{np.mean(s['mean']):.4g} (avg)",
                f"{np.mean(s['sd']):.4g} (avg)",
                f"{np.nanmin(s['ess_bulk']):.0f} (min)",
                f"{np.nanmin(s['ess_tail']):.0f} (min)",
                f"{np.nanmax(s['rhat']):.3f} (max)",
            )
    console = Console(width=max(Console().width, 120))
    console.print(table)
    console.print(
        f"acceptance rate {out['acceptance_rate']:.3f}   divergent proposals "
        f"{out['num_divergent']} (rejected; in {out['divergent_chains']} chains)"
    )
    if out["frozen_chains"]:
        console.print(
            f"[yellow]{out['frozen_chains']} frozen chain(s) (non-finite state) left out of "
            "every statistic above[/yellow]"
        )
