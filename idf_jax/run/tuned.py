"""`sample_tuned`: tune a sampler on the chains, then sample, recording the tuning cost.

For users who do not want to choose: `method="auto"` picks MAMS (the many-chain winner
of Robnik et al., arXiv 2503.01707, and idf's by measurement: benchmarks/README.md,
"Posteriors with known answers") for float states of dimension >= 2. Discrete states
have no gradient to tune on: they are refused with a pointer to `idf.block_gibbs`.

The warm-up is proportional to the run unless `num_warmup` is given (`default_warmup`):
the microcanonical tuners pool every chain's acceptance / energy error and stop each
step-size phase once it has converged, so they need a small fraction of the draws
(BlackJAX's MCLMC tuner spends fixed fractions of `num_steps` likewise).

`preset=`: a sampler preset written by `idf evolve sampler` (target "mala" or "hmc",
config {step_size[, num_integration_steps]}), packaged or a file. No warm-up tuning
runs then: the preset's settings are used as they are, the `num_warmup` steps are a
discarded burn-in with them. A tuner preset (target "sample_tuned", config {method:
"mams", target_acceptance, l_factor, warmup_fraction}) instead sets the MAMS tuner's
acceptance target, trajectory-length factor and warm-up fraction: the warm-up tuning runs.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import PRNGKeyArray

from .. import adaptation
from .._checks import ArgumentError, as_key, is_traced, positive, positive_int
from .._custom_types import EnergyFn, FloatScalar, PyTree
from ..samplers.dynamic_hmc import dynamic_hmc
from ..samplers.ghmc import ghmc
from ..samplers.hmc import hmc
from ..samplers.langevin import mala
from ..samplers.mclmc import mams, mclmc
from ._driver import Trace, sample

__all__ = [
    "SAMPLER_PRESET_TARGETS",
    "TUNED_METHODS",
    "TUNER_PRESET_TARGET",
    "WARMUP_RULES",
    "default_warmup",
    "read_sampler_preset",
    "read_tuner_preset",
    "sample_tuned",
    "sampler_presets",
]

TUNED_METHODS = ("auto", "nuts", "mams", "mclmc", "chees", "meads", "hmc", "mala")

WARMUP_RULES = {"microcanonical": (0.05, 100, 1000), "window": (0.2, 200, 1000)}
"""(fraction of the run, fewest, most) warm-up steps: "microcanonical" for method "auto",
"mams", "mclmc"; "window" for the window, ChEES and MEADS warm-ups."""


def default_warmup(method: str, num_steps: int) -> int:
    """The warm-up steps `sample_tuned(method=method)` gives a run of `num_steps` transitions.

    round(fraction * num_steps) clipped to [fewest, most] of `WARMUP_RULES`: 5 % in
    [100, 1000] for MAMS / MCLMC (measured: on the funnel, eight schools and the 2PL
    model 100-400 warm-up steps at 128 chains give the same cost to b2avg < 0.01 within
    noise), 20 % in [200, 1000] for the window (Stan's windows need ~150 steps), ChEES
    and MEADS warm-ups.
    """
    if not isinstance(method, str) or method not in TUNED_METHODS:
        raise ArgumentError(
            "method", f"method must be one of {list(TUNED_METHODS)}, got {method!r}"
        )
    steps = positive_int("num_steps", num_steps)
    kind = "microcanonical" if method in ("auto", "mams", "mclmc") else "window"
    fraction, fewest, most = WARMUP_RULES[kind]
    return int(min(max(round(fraction * steps), fewest), most))


SAMPLER_PRESET_TARGETS = ("mala", "hmc")
"""The `target` of the presets `sample_tuned(..., preset=)` takes (`idf evolve sampler`)."""


TUNER_PRESET_TARGET = "sample_tuned"
"""The `target` of the tuner presets of `sample_tuned(..., preset=)` (config: method "mams",
target_acceptance in (0, 1), l_factor > 0, warmup_fraction in (0, 1))."""


def read_tuner_preset(preset: str | os.PathLike) -> dict[str, Any] | None:
    """The checked config of a tuner preset (target `TUNER_PRESET_TARGET`); None when
    `preset` names an existing preset of another target; ArgumentError("preset") when it
    is a tuner preset with bad settings (missing files are left to `read_sampler_preset`)."""
    from .._presets import PRESET_DIR, read_preset

    if not isinstance(preset, (str, os.PathLike)):
        return None
    packaged = isinstance(preset, str) and (PRESET_DIR / f"{preset}.json").is_file()
    if not packaged and not os.path.isfile(preset):
        return None
    rec = read_preset(preset)
    if rec.get("target") != TUNER_PRESET_TARGET:
        return None
    config = dict(rec["config"])
    keys = {"method", "target_acceptance", "l_factor", "warmup_fraction"}
    unknown = sorted(set(config) - keys)
    if unknown or config.get("method", "mams") != "mams":
        raise ArgumentError(
            "preset",
            f"tuner preset {str(preset)!r} may set {sorted(keys)} (method 'mams'), "
            f"got {sorted(config)} with method {config.get('method')!r}",
        )
    out: dict[str, Any] = {"method": "mams"}
    for name, lo, hi in (
        ("target_acceptance", 0.0, 1.0),
        ("l_factor", 0.0, math.inf),
        ("warmup_fraction", 0.0, 1.0),
    ):
        if name in config:
            v = config[name]
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and lo < v < hi
            if not ok:
                raise ArgumentError(
                    "preset", f"tuner preset {str(preset)!r} has {name} {v!r}; not in ({lo}, {hi})"
                )
            out[name] = float(v)
    return out


def sampler_presets() -> list[str]:
    """Names of the packaged sampler presets (targets in `SAMPLER_PRESET_TARGETS`)."""
    from .._presets import available_presets, read_preset

    return [
        n for n in available_presets() if read_preset(n).get("target") in SAMPLER_PRESET_TARGETS
    ]


def _available_text() -> str:
    from .._presets import available_presets, read_preset

    sampler = sampler_presets()
    other = [
        f"{n} ({read_preset(n).get('target')})" for n in available_presets() if n not in sampler
    ]
    return (
        f"packaged sampler presets: {', '.join(sampler) or 'none'}"
        + (f"; other packaged presets: {', '.join(other)}" if other else "")
        + "; or give the path of a file written by `idf evolve sampler`"
    )


def read_sampler_preset(preset: str | os.PathLike) -> tuple[str, dict[str, Any]]:
    """(target, config) of a sampler preset, checked; ArgumentError("preset") otherwise."""
    from .._presets import PRESET_DIR, read_preset

    if not isinstance(preset, (str, os.PathLike)):
        raise ArgumentError(
            "preset", f"preset is a preset name or file path, got {type(preset).__name__}"
        )
    packaged = isinstance(preset, str) and (PRESET_DIR / f"{preset}.json").is_file()
    if not packaged and not os.path.isfile(preset):
        raise ArgumentError("preset", f"no preset {str(preset)!r}: {_available_text()}")
    rec = read_preset(preset)
    target = rec.get("target")
    if target not in SAMPLER_PRESET_TARGETS:
        raise ArgumentError(
            "preset",
            f"preset {str(preset)!r} is for {target!r}, not a sampler "
            f"({list(SAMPLER_PRESET_TARGETS)}): {_available_text()}",
        )
    config = dict(rec["config"])
    allowed = {"step_size"} | ({"num_integration_steps"} if target == "hmc" else set())
    unknown = sorted(set(config) - allowed)
    if unknown or "step_size" not in config:
        raise ArgumentError(
            "preset",
            f"preset {str(preset)!r} ({target}) must set step_size"
            + (" and may set num_integration_steps" if target == "hmc" else "")
            + (f"; it sets {unknown} as well" if unknown else ""),
        )
    return str(target), config


def _is_discrete(x0_batch: PyTree) -> bool:
    return any(
        not jnp.issubdtype(jnp.result_type(leaf), jnp.floating)
        for leaf in jax.tree.leaves(x0_batch)
    )


def _num_chains(x0_batch: PyTree, what: str) -> int:
    """The chain count of x0_batch (a PyTree of arrays with a leading chain axis of
    continuous states); `what` starts the message for discrete states."""
    leaves = jax.tree.leaves(x0_batch)
    if not leaves or any(jnp.ndim(l) == 0 for l in leaves):
        raise ArgumentError(
            "x0_batch", "x0_batch must be a PyTree of arrays with a leading chain axis"
        )
    if _is_discrete(x0_batch):
        raise ArgumentError(
            "x0_batch",
            f"{what} and x0_batch holds discrete states; "
            "sample spins with idf.block_gibbs(capsule, T) and idf.sample",
        )
    return int(leaves[0].shape[0])


def _nuts_factory(energy_fn, temperature) -> Callable:
    try:
        module = importlib.import_module("idf_jax.samplers.nuts")
    except ImportError as e:
        raise ArgumentError(
            "method",
            'method="nuts" needs idf_jax.samplers.nuts (idf.nuts), which this build does not '
            'have; use method="mams" (the default) or "chees"',
        ) from e

    def factory(step_size, inverse_mass=None):
        return module.nuts(energy_fn, step_size, temperature=temperature, inverse_mass=inverse_mass)

    return factory


def sample_tuned(
    energy_fn: EnergyFn,
    key: PRNGKeyArray,
    x0_batch: PyTree,
    num_draws: int,
    method: str = "auto",
    *,
    num_warmup: int | None = None,
    temperature: FloatScalar = 1.0,
    thin: int = 1,
    num_integration_steps: int = 10,
    preset: str | os.PathLike | None = None,
    max_grad_evals: int | None = None,
    **sample_kwargs: Any,
) -> Trace:
    """Tune a sampler for `energy_fn` on the chains of `x0_batch`, then draw from it.

    Args:
        energy_fn: E(x) -> scalar; the target is exp(-E(x)/T).
        key: PRNG key (split between warm-up and sampling).
        x0_batch: PyTree of float arrays with a leading chain axis.
        num_draws: draws per chain after the warm-up.
        method: "auto" (= "mams"), "nuts" (window adaptation of `idf.nuts`), "mams",
            "mclmc" (their tuners), "chees" (`idf.dynamic_hmc`), "meads" (`idf.ghmc`),
            "hmc" (window adaptation, `num_integration_steps` leapfrog steps) or "mala".
        num_warmup: warm-up steps per chain (at most: the MAMS / MCLMC tuners stop their
            step-size phases once converged); None: `default_warmup(method,
            num_draws * thin)` (with a preset: 1000 burn-in steps).
        temperature: T > 0.
        thin: keep one state every `thin` steps (num_draws * thin steps are run).
        num_integration_steps: leapfrog steps for method="hmc".
        preset: a sampler preset (a packaged name or a file written by `idf evolve
            sampler`): its sampler and settings replace the warm-up tuning (method
            "auto" takes the preset's; another method raises `ArgumentError`; an
            explicit `num_integration_steps` wins over the preset's). A tuner preset
            (target "sample_tuned") sets the MAMS tuner's target_acceptance, l_factor
            and warm-up fraction (within the microcanonical warm-up bounds; an explicit
            `num_warmup` wins) and the tuning runs.
        max_grad_evals: the most gradient evaluations the draws may take, all chains
            together (None: no bound). Checked once the warm-up has tuned the sampler,
            before any draw, from its mean gradients per transition (MAMS: L / step_size
            times the integrator's gradients per step; HMC: its leapfrog steps); over it,
            `ArgumentError("max_grad_evals")`. Needs concrete values (not under jit /
            vmap) and a method with a set mean ("mams", "mclmc", "hmc", "mala"); the
            warm-up itself is not bounded by it.
        **sample_kwargs: passed to `idf.sample` (progress, checkpoint, devices, ...).

    Returns:
        The `Trace` of the sampling run, its stats extended with (chains,) arrays:
        `tuning_grad_evals` (gradient evaluations each chain spent in the warm-up),
        `tuning_seconds` (wall time of the warm-up, NaN under jit / vmap),
        `sampling_grad_evals` (gradient evaluations each chain spent drawing), and the
        tuned `step_size` (and `L` / `trajectory_length` where the method has one).
        With a preset, `tuning_grad_evals` is the burn-in's cost, `tuning_seconds` 0
        (the tuning was paid when the preset was made) and `step_size` the preset's.
    """
    tuner: dict[str, Any] = {}
    tuner_preset = read_tuner_preset(preset) if preset is not None else None
    if tuner_preset is not None:
        if method not in ("auto", "mams"):
            raise ArgumentError(
                "method",
                f"preset {str(preset)!r} tunes 'mams'; leave method='auto' or pass "
                f"method='mams', got {method!r}",
            )
        method = "mams"
        tuner = tuner_preset
    elif preset is not None:
        if max_grad_evals is not None:
            raise ArgumentError(
                "max_grad_evals",
                "max_grad_evals bounds a tuned run's draws; a sampler preset's cost is "
                "known before the call: (num_warmup + num_draws * thin) * chains * steps",
            )
        num_warmup = 1000 if num_warmup is None else num_warmup
        return _sample_preset(
            energy_fn,
            key,
            x0_batch,
            num_draws,
            method,
            preset,
            num_warmup=num_warmup,
            temperature=temperature,
            thin=thin,
            num_integration_steps=num_integration_steps,
            **sample_kwargs,
        )
    if not isinstance(method, str) or method not in TUNED_METHODS:
        raise ArgumentError(
            "method", f"method must be one of {list(TUNED_METHODS)}, got {method!r}"
        )
    num_draws = positive_int("num_draws", num_draws)
    thin = positive_int("thin", thin)
    if num_warmup is not None:
        num_warmup = positive_int("num_warmup", num_warmup)
    positive("temperature", temperature)
    key = as_key(key)
    n = _num_chains(x0_batch, "sample_tuned tunes gradient-based samplers")
    dim = ravel_pytree(jax.tree.map(lambda l: l[0], x0_batch))[0].shape[0]
    if max_grad_evals is not None:
        max_grad_evals = positive_int("max_grad_evals", max_grad_evals)
    if method == "auto":
        # MAMS needs a state of dimension >= 2; a scalar state gets NUTS (or ChEES).
        has_nuts = importlib.util.find_spec("idf_jax.samplers.nuts") is not None
        method = "mams" if dim >= 2 else ("nuts" if has_nuts else "chees")
    if num_warmup is None:
        num_warmup = default_warmup(method, num_draws * thin)
        if "warmup_fraction" in tuner:
            _, fewest, most = WARMUP_RULES["microcanonical"]
            frac = tuner["warmup_fraction"]
            num_warmup = int(min(max(round(frac * num_draws * thin), fewest), most))
    k_tune, k_draw = jax.random.split(key)
    eps0, l0 = 0.25 * math.sqrt(dim), math.sqrt(dim)
    if method == "mams":
        sampler, how = mams(energy_fn, eps0, l0, temperature), "mams"
    elif method == "mclmc":
        sampler, how = mclmc(energy_fn, eps0, l0, temperature), "mclmc"
    elif method == "chees":
        sampler, how = dynamic_hmc(energy_fn, 0.1, 0.1, temperature), "chees"
    elif method == "meads":
        sampler, how = ghmc(energy_fn, 0.1, temperature=temperature), "meads"
    elif method == "hmc":
        steps = positive_int("num_integration_steps", num_integration_steps)

        def hmc_factory(step_size, inverse_mass=None):
            return hmc(energy_fn, step_size, steps, temperature, inverse_mass)

        sampler, how = hmc_factory, "window"
    elif method == "mala":

        def mala_factory(step_size):
            return mala(energy_fn, step_size, temperature)

        sampler, how = mala_factory, "window"
    else:  # nuts
        sampler, how = _nuts_factory(energy_fn, temperature), "window"

    traced = is_traced((x0_batch, key, temperature))
    if max_grad_evals is not None:
        if traced:
            raise ArgumentError(
                "max_grad_evals", "max_grad_evals needs concrete values; not under jit / vmap"
            )
        if method not in _MEAN_GRADS_KNOWN:
            raise ArgumentError(
                "max_grad_evals",
                f"method {method!r} has no set mean of gradients per transition; "
                f"max_grad_evals takes one of {list(_MEAN_GRADS_KNOWN)}",
            )
    start = time.perf_counter()
    tune_kw = {"l_factor": tuner["l_factor"]} if "l_factor" in tuner else {}
    res = adaptation.adapt_run(
        sampler, k_tune, x0_batch, num_warmup, tuner.get("target_acceptance"), method=how, **tune_kw
    )
    if not traced:
        jax.block_until_ready(res)
    seconds = float("nan") if traced else time.perf_counter() - start
    if max_grad_evals is not None:
        per = _mean_grads_per_transition(res.sampler)
        need = n * num_draws * thin * per
        if need > max_grad_evals:
            raise ArgumentError(
                "max_grad_evals",
                f"the tuned {method} sampler takes {per:.4g} gradient evaluations per "
                f"transition, so {n} chains x {num_draws * thin} transitions need "
                f"{need:.4g}, over max_grad_evals={max_grad_evals}; draw fewer",
            )
    trace = sample(res.sampler, k_draw, res.positions, num_draws * thin, thin=thin, **sample_kwargs)
    stats = dict(trace.stats)
    ones = jnp.ones((n,), jnp.float32)
    grads = res.num_grad_evals if res.num_grad_evals is not None else jnp.float32(jnp.nan)
    stats["tuning_grad_evals"] = ones * grads / n
    stats["tuning_seconds"] = ones * seconds
    per_step = stats.get("num_grad_evals")
    if per_step is None:
        per_step = ones * float(getattr(res.sampler, "num_integration_steps", 1))
    stats["sampling_grad_evals"] = per_step * (num_draws * thin)
    for name in ("step_size", "L", "trajectory_length"):
        if name in res.params:
            stats[name] = ones * res.params[name]
    return trace._replace(stats=stats)


_MEAN_GRADS_KNOWN = ("mams", "mclmc", "hmc", "mala")


def _mean_grads_per_transition(sampler: Any) -> float:
    """Mean gradient evaluations of one transition of a concrete sampler: MAMS
    g max(L / step_size, 1) (jittered: E[n] = L / step_size; else ceil), MCLMC g, HMC its
    leapfrog steps, Langevin 1; g the integrator's gradients per step."""
    from ..samplers.mclmc import INTEGRATORS, MAMS, MCLMC, mean_integration_steps

    if isinstance(sampler, MAMS):
        g = INTEGRATORS[sampler.integrator][1]
        mu = float(mean_integration_steps(sampler.step_size, sampler.L))
        return g * (mu if sampler.jitter else math.ceil(mu))
    if isinstance(sampler, MCLMC):
        return float(INTEGRATORS[sampler.integrator][1])
    return float(getattr(sampler, "num_integration_steps", 1))


def _sample_preset(
    energy_fn: EnergyFn,
    key: PRNGKeyArray,
    x0_batch: PyTree,
    num_draws: int,
    method: str,
    preset: str | os.PathLike,
    *,
    num_warmup: int,
    temperature: FloatScalar,
    thin: int,
    num_integration_steps: int,
    **sample_kwargs: Any,
) -> Trace:
    """`sample_tuned` with a sampler preset: burn-in and draws with the preset's settings."""
    target, config = read_sampler_preset(preset)
    if method not in ("auto", target):
        raise ArgumentError(
            "method",
            f"preset {str(preset)!r} is a {target!r} preset; leave method='auto' or pass "
            f"method={target!r}, got {method!r}",
        )
    num_draws = positive_int("num_draws", num_draws)
    num_warmup = positive_int("num_warmup", num_warmup)
    thin = positive_int("thin", thin)
    positive("temperature", temperature)
    try:
        step_size = float(config["step_size"])
    except (TypeError, ValueError):
        step_size = math.nan
    if not (math.isfinite(step_size) and step_size > 0):
        raise ArgumentError(
            "preset",
            f"preset {str(preset)!r} has step_size {config['step_size']!r}; it must be > 0",
        )
    key = as_key(key)
    n = _num_chains(x0_batch, "sampler presets are for gradient-based samplers")
    if target == "hmc":
        steps = num_integration_steps
        # the preset's number, unless the caller set another than the default (10)
        if steps == 10 and "num_integration_steps" in config:
            steps = int(config["num_integration_steps"])
        steps = positive_int("num_integration_steps", steps)
        sampler = hmc(energy_fn, step_size, steps, temperature)
        per_step_default = float(steps)
    else:
        sampler = mala(energy_fn, step_size, temperature)
        per_step_default = 1.0
    trace = sample(
        sampler,
        key,
        x0_batch,
        num_warmup + num_draws * thin,
        thin=thin,
        burn_in=num_warmup,
        **sample_kwargs,
    )
    stats = dict(trace.stats)
    ones = jnp.ones((n,), jnp.float32)
    per_step = stats.get("num_grad_evals")
    if per_step is None:
        per_step = ones * per_step_default
    stats["tuning_grad_evals"] = per_step * num_warmup
    stats["tuning_seconds"] = ones * 0.0
    stats["sampling_grad_evals"] = per_step * (num_draws * thin)
    stats["step_size"] = ones * step_size
    if target == "hmc":
        stats["L"] = ones * per_step_default
    return trace._replace(stats=stats)
