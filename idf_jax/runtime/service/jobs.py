"""Sampling and equilibrium jobs shared by the CLI and the service.

A job names a registered capsule and a sampler; it builds the capsule's (constrained)
energy, runs `idf.sample` or `idf.sample_equilibrium`, and summarises the result.
No domain logic lives here: the energy, initial states, constraints, projection and the
kind of state all come from the `Capsule` record. A capsule whose `state_kind` is
"spins" (an integer lattice) is sampled by checkerboard block Gibbs (`idf.block_gibbs`)
at the job's temperature whatever gradient sampler the job names; annealing needs
continuous states. Built samplers are cached per job description, so a repeated job
reuses the compiled chunk runners of `idf.sample` instead of recompiling.

Sampler "mams" is `idf.sample_tuned(method="mams")`: the MAMS tuner adapts the step size
and trajectory length on the chains during the `burn_in` steps (0: the tuner's own
warm-up, `mams_warmup`), then the remaining steps are drawn. `preset` names a tuner preset
(target "sample_tuned", written by `experiments/evolve_sampler.py mams-evolve` or
`idf.evolve.save_preset`) whose target acceptance, trajectory-length factor and warm-up
fraction the tuner uses; step_size, friction and num_integration_steps are not used. The
tuned sampler is built per job (the tuning is part of the run); its energy function is
cached per capsule instance, so a repeated job (any seed or preset) reuses the compiles.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from ..._custom_types import EnergyFn, PyTree
from ...run import Trace, sample
from ...samplers import Sampler, hmc, mala, ula, underdamped_langevin
from ...samplers._base import FunctionSampler, energy_and_grad
from ...samplers.gibbs import block_gibbs
from ...samplers.projected import projected_langevin
from ...thermo.anneal import EquilibriumResult, sample_equilibrium
from ...thermo.constraints import apply_constraints

if TYPE_CHECKING:
    from capsules import Capsule
    from capsules._base import StateKind

    from .config import Limits

__all__ = [
    "SAMPLERS",
    "JobError",
    "SampleJob",
    "EquilibriumJob",
    "build_capsule",
    "mams_warmup",
    "run_sample",
    "run_equilibrium",
    "summarize_trace",
    "equilibrium_available",
    "tuner_config",
]

SAMPLERS = ("mala", "ula", "underdamped", "hmc", "mams")
"""Job samplers; "mams" is `idf.sample_tuned(method="mams")` (tuned on the chains)."""


class JobError(ValueError):
    """A job that cannot run as asked. `field` names the offending input, `status` is the
    HTTP status the service answers with (422 invalid, 413 over a limit, 503 missing part)."""

    def __init__(self, field: str, message: str, status: int = 422):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.status = status


@dataclasses.dataclass(frozen=True)
class SampleJob:
    """One sampling run: `chains` chains of `sampler` on capsule `capsule(**params)`.

    step_size: sampler step (units of the state); temperature: kT in energy units;
    friction: underdamped Langevin friction (1/time); num_integration_steps: HMC leapfrog
    steps per trajectory. steps counts burn-in; (steps - burn_in) must be divisible by thin.
    sampler "mams": burn_in is the tuner's warm-up (0: `mams_warmup`); preset: a tuner
    preset (packaged name or file path) for `idf.sample_tuned(preset=...)`, or None.
    """

    capsule: str
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    sampler: str = "mala"
    chains: int = 16
    steps: int = 1000
    thin: int = 1
    burn_in: int = 0
    step_size: float = 1e-3
    temperature: float = 1.0
    friction: float = 1.0
    num_integration_steps: int = 10
    seed: int = 0
    preset: str | None = None


@dataclasses.dataclass(frozen=True)
class EquilibriumJob:
    """One annealing run (`idf.sample_equilibrium`) of `chains` chains on a capsule."""

    capsule: str
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    chains: int = 16
    steps: int = 2000
    seed: int = 0
    relax: bool = True


def _freeze(value):
    if isinstance(value, Mapping):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def build_capsule(name: str, params: Mapping[str, Any] | None = None) -> Capsule:
    """`capsules.make(name, **params)` with every failure turned into a `JobError`."""
    import capsules

    params = dict(params or {})
    reg = capsules.registry()
    if name not in reg:
        known = ", ".join(reg) or "none registered"
        raise JobError("capsule", f"unknown capsule {name!r}; known: {known}")
    try:
        return reg[name].factory(**params)
    except TypeError as e:  # unknown or missing keyword, wrong type
        raise JobError("params", f"invalid parameters for {name}: {e}") from e
    except (ValueError, KeyError, IndexError, OverflowError) as e:
        raise JobError("params", f"invalid parameters for {name}: {e}") from e


def _initial_states(capsule: Capsule, key: jax.Array, chains: int) -> PyTree:
    try:
        x0 = capsule.init(key, chains)
    except (TypeError, ValueError, KeyError, IndexError, OverflowError) as e:
        raise JobError("params", f"capsule {capsule.name} cannot build initial states: {e}") from e
    return x0


def state_size(capsule: Capsule) -> int:
    """Number of scalars in one chain's state, found without computing anything."""
    try:
        shapes = jax.eval_shape(lambda k: capsule.init(k, 1), jax.random.key(0))
    except jax.errors.JAXTypeError:
        # an init that needs concrete values (an RDKit embedding seeded from the key):
        # build one chain's state for real, outside any trace
        shapes = _initial_states(capsule, jax.random.key(0), 1)
    except (TypeError, ValueError, KeyError, IndexError, OverflowError) as e:
        raise JobError("params", f"capsule {capsule.name} cannot build initial states: {e}") from e
    return int(sum(math.prod(l.shape[1:]) for l in jax.tree.leaves(shapes)))


def check_limits(job: SampleJob | EquilibriumJob, dims: int, limits: Limits) -> None:
    """Raise a 413 `JobError` naming the field when a job exceeds a `Limits` entry."""
    if dims > limits.max_dimensions:
        raise JobError(
            "params", f"state has {dims} dimensions, over the limit {limits.max_dimensions}", 413
        )
    if job.chains > limits.max_chains:
        raise JobError("chains", f"{job.chains} chains, over the limit {limits.max_chains}", 413)
    if job.steps > limits.max_steps:
        raise JobError("steps", f"{job.steps} steps, over the limit {limits.max_steps}", 413)
    work = job.chains * job.steps * max(dims, 1)
    if work > limits.max_work:
        raise JobError(
            "steps",
            f"chains * steps * dimensions = {work}, over the limit max_work={limits.max_work}",
            413,
        )
    if isinstance(job, SampleJob) and job.sampler == "hmc":
        work *= job.num_integration_steps  # gradient evaluations per step
        if work > limits.max_work:
            raise JobError(
                "num_integration_steps",
                f"chains * steps * dimensions * num_integration_steps = {work}, over the "
                f"limit max_work={limits.max_work}",
                413,
            )
    if isinstance(job, SampleJob):
        kept = job.chains * ((job.steps - job.burn_in) // job.thin) * max(dims, 1)
        if kept > limits.max_trace_values:
            raise JobError(
                "thin",
                f"chains * draws * dimensions = {kept} values kept in memory, over the limit "
                f"max_trace_values={limits.max_trace_values}; thin more, or use fewer steps "
                "or chains",
                413,
            )


class _LRU:
    def __init__(self, size: int):
        self.size = size
        self._d: collections.OrderedDict = collections.OrderedDict()
        self._lock = threading.Lock()

    def get_or_make(self, key, make: Callable[[], Any]):
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                return self._d[key]
        value = make()
        with self._lock:
            self._d[key] = value
            while len(self._d) > self.size:
                self._d.popitem(last=False)
        return value


_SAMPLER_CACHE = _LRU(32)
_ENERGY_CACHE = _LRU(32)


def _make_sampler(job: SampleJob, capsule: Capsule) -> Sampler:
    if capsule.state_kind == "spins":
        return _spin_sampler(job, capsule)
    energy_fn = apply_constraints(capsule.energy_fn, capsule.constraints)
    name = job.sampler
    try:
        if name == "ula":
            s = ula(energy_fn, job.step_size, job.temperature)
        elif name == "mala":
            s = mala(energy_fn, job.step_size, job.temperature)
        elif name == "underdamped":
            s = underdamped_langevin(energy_fn, job.step_size, job.friction, job.temperature)
        elif name == "hmc":
            s = hmc(energy_fn, job.step_size, job.num_integration_steps, job.temperature)
        else:
            raise JobError("sampler", f"unknown sampler {name!r}; choose one of {SAMPLERS}")
    except JobError:
        raise
    except ValueError as e:
        raise JobError(_guess_field(str(e)), str(e)) from e
    if capsule.project is not None:
        if name in ("mala", "ula"):
            return projected_langevin(energy_fn, capsule.project, job.step_size, job.temperature)
        s = _projected(s, energy_fn, capsule.project)
    return s


def _spin_sampler(job: SampleJob, capsule: Capsule) -> Sampler:
    """Checkerboard block Gibbs at the job's temperature for a spin-lattice capsule."""
    if capsule.constraints or capsule.project is not None:
        raise JobError(
            "capsule",
            f"capsule {capsule.name} has spin states with constraints or a projection; "
            "block Gibbs samples the bare lattice energy only",
        )
    try:
        return block_gibbs(capsule, job.temperature)
    except ValueError as e:
        field = "temperature" if "temperature" in str(e) else "params"
        raise JobError(field, str(e)) from e


def _projected(
    sampler: Sampler, energy_fn: EnergyFn, project: Callable[[PyTree], PyTree]
) -> Sampler:
    """HMC / underdamped with the capsule's projection applied after each step.

    The energy and gradient are re-evaluated at the projected point (two gradient
    evaluations per step). This is projected dynamics for optimisation on the capsule's
    feasible set, not an exact sampler of exp(-E/T) on it; MALA and ULA jobs use the
    library's `projected_langevin` instead (one gradient per step, same caveat).
    """

    def init(position, key=None):
        return _refresh(sampler.init(project(position), key))

    def _refresh(state):
        e, g = energy_and_grad(energy_fn, state.position)
        return (
            state._replace(energy=e, grad=g) if hasattr(state, "grad") else state._replace(energy=e)
        )

    def step(key, state):
        new, info = sampler.step(key, state)
        return _refresh(new._replace(position=project(new.position))), info

    return FunctionSampler(init, step)


def _guess_field(message: str) -> str:
    for f in ("step_size", "temperature", "friction", "num_integration_steps"):
        if f in message:
            return f
    return "sampler"


def run_sample(
    job: SampleJob,
    *,
    limits: Limits | None = None,
    progress: bool = False,
    callback: Callable[[int, int], None] | None = None,
    cache: _LRU | None = None,
    before_run: Callable[[int, int, int], None] | None = None,
) -> tuple[Trace, Capsule]:
    """Run a `SampleJob`; returns (trace, capsule). Raises `JobError` for bad input.

    `before_run(chains, draws, dimensions)` is called once the job is checked against
    `limits`, before anything is sampled (a caller's own size checks)."""
    _check_job(job)
    if job.sampler == "mams":
        job = dataclasses.replace(job, burn_in=mams_warmup(job))
    capsule = build_capsule(job.capsule, job.params)
    dims = state_size(capsule)
    if limits is not None:
        check_limits(job, dims, limits)
    if before_run is not None:
        before_run(job.chains, (job.steps - job.burn_in) // job.thin, dims)
    if job.sampler == "mams":
        max_grads = None if limits is None else limits.max_work // max(dims, 1)
        return _run_tuned(job, capsule, progress, callback, max_grads), capsule
    cache = _SAMPLER_CACHE if cache is None else cache
    key_ = _sampler_key(job, capsule.state_kind)
    sampler = cache.get_or_make(key_, lambda: _make_sampler(job, capsule))
    key = jax.random.key(job.seed)
    k_init, k_run = jax.random.split(key)
    x0 = _initial_states(capsule, k_init, job.chains)
    try:
        trace = sample(
            sampler,
            k_run,
            x0,
            job.steps,
            thin=job.thin,
            burn_in=job.burn_in,
            progress=progress,
            callback=callback,
        )
    except ValueError as e:
        raise JobError(_guess_field_run(str(e)), str(e)) from e
    return trace, capsule


def mams_warmup(job: SampleJob) -> int:
    """The warm-up (tuning) steps of a "mams" job: its burn_in when > 0, else the tuner's
    rule: round(f * steps) clipped to [100, 1000] (f: the preset's warmup_fraction, else
    0.05; `idf_jax.run.tuned.WARMUP_RULES`), lengthened so that thin divides the rest.
    A 422 `JobError("steps")` when no draw would be left."""
    from ...run.tuned import WARMUP_RULES

    if job.burn_in > 0:
        return job.burn_in
    fraction, fewest, most = WARMUP_RULES["microcanonical"]
    if job.preset is not None:
        fraction = tuner_config(job.preset).get("warmup_fraction", fraction)
    warmup = int(min(max(round(fraction * job.steps), fewest), most))
    if job.steps - warmup < job.thin:
        raise JobError(
            "steps",
            f"sampler 'mams' tunes for {warmup} warm-up steps; steps ({job.steps}) must be at "
            f"least {warmup + job.thin}, or set burn_in (the warm-up) yourself",
        )
    return job.steps - job.thin * ((job.steps - warmup) // job.thin)


def tuner_config(preset: str) -> dict[str, Any]:
    """The checked settings of the tuner preset `preset` (a packaged name or a file path);
    a 422 `JobError("preset")` for a missing file, another kind of preset or bad settings."""
    from ..._checks import ArgumentError
    from ...run.tuned import TUNER_PRESET_TARGET, read_tuner_preset

    try:
        config = read_tuner_preset(preset)
    except ArgumentError as e:
        raise JobError("preset", str(e).removeprefix("preset: ")) from e
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise JobError("preset", f"cannot read preset {preset!r}: {e}") from e
    if config is None:
        raise JobError(
            "preset",
            f"{preset!r} is not a tuner preset (target {TUNER_PRESET_TARGET!r}) "
            "that sampler 'mams' takes",
        )
    return config


def _run_tuned(
    job: SampleJob,
    capsule: Capsule,
    progress: bool,
    callback: Callable[[int, int], None] | None,
    max_grad_evals: int | None = None,
) -> Trace:
    """A "mams" job: `idf.sample_tuned(method="mams", preset=job.preset)` on the chains.

    `max_grad_evals` (max_work / dimensions) bounds the draws' gradient evaluations, which
    are known once the warm-up has tuned L / step_size: over it, a 413 naming "steps"
    before any draw."""
    from ..._checks import ArgumentError
    from ...run.tuned import sample_tuned

    if capsule.state_kind == "spins":
        raise JobError(
            "sampler",
            f"capsule {capsule.name} has spin states; sampler 'mams' needs continuous ones "
            "(spin lattices are sampled by block Gibbs: name any other sampler)",
        )
    if capsule.project is not None:
        raise JobError(
            "sampler",
            f"capsule {capsule.name} has a projection, which sampler 'mams' does not apply; "
            "use mala, ula, underdamped or hmc",
        )
    if job.preset is not None:
        tuner_config(job.preset)  # a clear 422 before anything compiles
    # one energy function per capsule instance: the tuned samplers built from it are then
    # equal PyTrees (their settings traced), so a repeated job reuses the compiled runs
    energy_fn = _ENERGY_CACHE.get_or_make(
        (job.capsule, _freeze(job.params)),
        lambda: apply_constraints(capsule.energy_fn, capsule.constraints),
    )
    k_init, k_run = jax.random.split(jax.random.key(job.seed))
    x0 = _initial_states(capsule, k_init, job.chains)
    try:
        return sample_tuned(
            energy_fn,
            k_run,
            x0,
            (job.steps - job.burn_in) // job.thin,
            method="mams",
            num_warmup=job.burn_in,
            temperature=job.temperature,
            thin=job.thin,
            preset=job.preset,
            max_grad_evals=max_grad_evals,
            progress=progress,
            callback=callback,
        )
    except ArgumentError as e:
        if e.argument == "max_grad_evals":
            raise JobError("steps", str(e).removeprefix("max_grad_evals: "), 413) from e
        field = {"x0_batch": "params", "num_draws": "steps", "num_warmup": "burn_in"}
        raise JobError(field.get(e.argument, e.argument), str(e)) from e


def _sampler_key(job: SampleJob, state_kind: StateKind) -> tuple:
    """What a built sampler depends on: block Gibbs only on the capsule and temperature."""
    if state_kind == "spins":
        return (job.capsule, _freeze(job.params), "block_gibbs", job.temperature)
    return (
        job.capsule,
        _freeze(job.params),
        job.sampler,
        job.step_size,
        job.temperature,
        job.friction,
        job.num_integration_steps,
    )


def _guess_field_run(message: str) -> str:
    for f in ("burn_in", "thin", "num_steps", "x0_batch"):
        if message.startswith(f) or f in message.split(" ")[0:3]:
            return {"num_steps": "steps", "x0_batch": "params"}.get(f, f)
    return "params"


def _check_job(job: SampleJob) -> None:
    if job.sampler not in SAMPLERS:
        raise JobError("sampler", f"unknown sampler {job.sampler!r}; choose one of {SAMPLERS}")
    for f in ("chains", "steps", "thin", "num_integration_steps"):
        v = getattr(job, f)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise JobError(f, f"must be an integer >= 1, got {v!r}")
    if (
        isinstance(job.burn_in, bool)
        or not isinstance(job.burn_in, (int, np.integer))
        or job.burn_in < 0
    ):
        raise JobError("burn_in", f"must be an integer >= 0, got {job.burn_in!r}")
    if job.burn_in >= job.steps:
        raise JobError(
            "burn_in", f"burn_in ({job.burn_in}) must be smaller than steps ({job.steps})"
        )
    if (job.steps - job.burn_in) % job.thin:
        raise JobError(
            "thin", f"thin ({job.thin}) must divide steps - burn_in = {job.steps - job.burn_in}"
        )
    for f in ("step_size", "temperature", "friction"):
        v = getattr(job, f)
        if not (isinstance(v, (int, float, np.floating)) and math.isfinite(v) and v > 0):
            raise JobError(f, f"must be a finite number > 0, got {v!r}")


def _leaf_names(tree) -> list[tuple[str, Any]]:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [("x" + jax.tree_util.keystr(p), l) for p, l in flat]


def summarize_trace(trace: Trace) -> dict[str, Any]:
    """JSON-ready summary: energy statistics, R-hat / ESS of the energy, acceptance, divergences."""
    from ...diagnostics import ess, rhat

    e = np.asarray(trace.energies, dtype=np.float64)
    chains, draws = e.shape[:2]
    finite = np.isfinite(e)
    out: dict[str, Any] = {
        "chains": int(chains),
        "draws": int(draws),
        "energy_mean": _num(np.mean(e[finite])) if finite.any() else None,
        "energy_sd": _num(np.std(e[finite])) if finite.any() else None,
        "energy_min": _num(np.min(e[finite])) if finite.any() else None,
        "energy_final_per_chain": [_num(v) for v in e[:, -1]],
        "divergent_chains": int(np.sum(np.asarray(trace.stats["diverged"]))),
    }
    if draws >= 4 and chains >= 1:
        with np.errstate(all="ignore"):
            out["energy_ess"] = _num(np.asarray(ess(e)))
            out["energy_rhat"] = _num(np.asarray(rhat(e))) if chains >= 2 else None
    if "acceptance_rate" in trace.stats:
        out["acceptance_rate"] = _num(np.mean(np.asarray(trace.stats["acceptance_rate"])))
    if "mean_abs_energy_error" in trace.stats:
        out["mean_abs_energy_error"] = _num(
            np.mean(np.asarray(trace.stats["mean_abs_energy_error"]))
        )
    if "tuning_grad_evals" in trace.stats:  # an `idf.sample_tuned` run: what it tuned, its cost
        out["tuned"] = {
            k: _num(np.mean(np.asarray(trace.stats[k])))
            for k in ("step_size", "L", "tuning_grad_evals", "sampling_grad_evals")
            if k in trace.stats
        }
    return out


def _num(x) -> float | None:
    v = float(np.asarray(x).reshape(-1)[0]) if np.size(x) else float("nan")
    return v if math.isfinite(v) else None


def positions_as_lists(tree) -> dict[str, Any]:
    """{leaf name: nested lists} of a position PyTree (non-finite values become None)."""
    out = {}
    for name, leaf in _leaf_names(tree):
        a = np.asarray(leaf, dtype=np.float64)
        out[name] = np.where(np.isfinite(a), a, np.nan).tolist()
        out[name] = _nan_to_none(out[name])
    return out


def _nan_to_none(x):
    if isinstance(x, list):
        return [_nan_to_none(v) for v in x]
    return None if isinstance(x, float) and not math.isfinite(x) else x


def equilibrium_available() -> bool:
    """True: the annealing driver `idf.sample_equilibrium` is part of the core."""
    return True


def run_equilibrium(
    job: EquilibriumJob, *, limits: Limits | None = None
) -> tuple[EquilibriumResult, Capsule, dict[str, Any]]:
    """Run `idf.sample_equilibrium` on the capsule; returns (result, capsule, summary)."""
    for f in ("chains", "steps"):
        v = getattr(job, f)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise JobError(f, f"must be an integer >= 1, got {v!r}")
    capsule = build_capsule(job.capsule, job.params)
    if capsule.state_kind != "continuous":
        raise JobError(
            "capsule",
            f"capsule {capsule.name} has {capsule.state_kind} states; annealing "
            "(sample_equilibrium) needs continuous states: sample it instead",
        )
    dims = state_size(capsule)
    if limits is not None:
        check_limits(job, dims, limits)
    key = jax.random.key(job.seed)
    k_init, k_run = jax.random.split(key)
    x0 = _initial_states(capsule, k_init, job.chains)
    try:
        res = sample_equilibrium(
            capsule.energy_fn,
            k_run,
            x0,
            num_steps=job.steps,
            constraints=list(capsule.constraints) or None,
            relax=job.relax,
            project=capsule.project,
        )
    except ValueError as e:
        raise JobError("params", str(e)) from e
    energies = np.asarray(res.energy, dtype=np.float64).reshape(job.chains, -1)[:, 0]
    best = int(np.asarray(res.best_chain))  # lowest energy among feasible chains
    best_pos = jax.tree.map(lambda l: jnp.asarray(l)[best], res.position)
    summary = {
        "chains": job.chains,
        "energy_per_chain": [_num(v) for v in energies],
        "best_energy": _num(energies[best]),
        "best_chain": best,
        "best_position": positions_as_lists(best_pos),
        "violation_per_chain": [_num(v) for v in np.asarray(res.violation).reshape(-1)],
        "acceptance_rate": _num(np.mean(np.asarray(res.acceptance_rate))),
    }
    return res, capsule, summary
