"""`adapt` and `adapt_run`: one entry point, dispatching on `method`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jaxtyping import Array, PRNGKeyArray

from .._checks import ArgumentError
from .._custom_types import PyTree
from ..samplers._base import Sampler
from .window import AdaptationResult, window_adapt_run

__all__ = ["METHODS", "adapt", "adapt_run"]

METHODS = ("window", "window_dense", "chees", "meads", "mclmc", "mams")
"""The warm-up methods `adapt(..., method=...)` accepts."""


def adapt(
    sampler: Sampler | Callable[..., Sampler],
    key: PRNGKeyArray,
    x0_batch: PyTree,
    num_steps: int,
    target_acceptance: float | Array | None = None,
    *,
    method: str = "window",
    **kwargs: Any,
) -> tuple[Sampler, dict]:
    """Tune `sampler` on a batch of chains; returns (tuned sampler, params).

    Args:
        sampler: what `method` tunes: "window" / "window_dense": a sampler with a
            `step_size` field or a factory `(step_size[, inverse_mass=None])` (see
            `idf_jax.adaptation.window`); "chees": an `idf.dynamic_hmc`; "meads": an
            `idf.ghmc`; "mclmc": an `idf.mclmc`; "mams": an `idf.mams`. The sampler's
            own parameters are the starting point where the method needs one.
        key: PRNG key.
        x0_batch: PyTree with a leading chain axis; every chain contributes.
        num_steps: warm-up steps per chain.
        target_acceptance: in (0, 1) for the acceptance-tuned methods (defaults: window
            0.574 MALA / 0.8 HMC, ChEES 0.651, MAMS 0.9); not used by MCLMC or MEADS.
        method: one of `METHODS`.
        **kwargs: method options (see each method's `*_adapt_run`).

    Returns:
        (sampler, params): the tuned sampler (its parameters are array leaves) and a dict
        of the tuned values ('step_size', and 'inverse_mass', 'L', 'trajectory_length',
        'alpha', 'delta' where the method tunes them).
    """
    res = adapt_run(sampler, key, x0_batch, num_steps, target_acceptance, method=method, **kwargs)
    return res.sampler, res.params


def adapt_run(
    sampler: Sampler | Callable[..., Sampler],
    key: PRNGKeyArray,
    x0_batch: PyTree,
    num_steps: int,
    target_acceptance: float | Array | None = None,
    *,
    method: str = "window",
    **kwargs: Any,
) -> AdaptationResult:
    """`adapt`, returning the full `AdaptationResult` (final positions, acceptance, cost)."""
    if method == "window":
        return window_adapt_run(sampler, key, x0_batch, num_steps, target_acceptance, **kwargs)
    if method == "window_dense":
        return window_adapt_run(
            sampler, key, x0_batch, num_steps, target_acceptance, dense_mass=True, **kwargs
        )
    if method == "mclmc":
        from .microcanonical import mclmc_adapt_run

        if target_acceptance is not None:
            raise ArgumentError(
                "target_acceptance",
                'method="mclmc" tunes to an energy-error variance, not an acceptance rate',
            )
        return mclmc_adapt_run(_sampler(sampler, method), key, x0_batch, num_steps, **kwargs)
    if method == "mams":
        from .microcanonical import mams_adapt_run

        return mams_adapt_run(
            _sampler(sampler, method), key, x0_batch, num_steps, target_acceptance, **kwargs
        )
    if method == "chees":
        from .chees import chees_adapt_run

        return chees_adapt_run(
            _sampler(sampler, method), key, x0_batch, num_steps, target_acceptance, **kwargs
        )
    if method == "meads":
        from .meads import meads_adapt_run

        if target_acceptance is not None:
            raise ArgumentError(
                "target_acceptance", 'method="meads" has no acceptance target (eigenvalue bounds)'
            )
        return meads_adapt_run(_sampler(sampler, method), key, x0_batch, num_steps, **kwargs)
    raise ArgumentError("method", f"method must be one of {list(METHODS)}, got {method!r}")


def _sampler(sampler: Any, method: str) -> Any:
    if not isinstance(sampler, Sampler):
        raise ArgumentError(
            "sampler", f'method="{method}" needs a sampler instance, got {type(sampler).__name__}'
        )
    return sampler
