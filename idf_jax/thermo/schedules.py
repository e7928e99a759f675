"""Temperature / noise schedules: pure functions of the step index, usable inside jit.

A schedule is an `equinox.Module` called as `schedule(step, num_steps=None) -> value`.
`step` may be a Python int or a traced integer array; the progress fraction is
`s = clip(step / (num_steps - 1), 0, 1)`, so `schedule(0) == start` and
`schedule(num_steps - 1) == end`. `num_steps` is fixed when the schedule is built
(`geometric(10.0, 1e-3, num_steps=5000)`) or supplied by the caller at call time
(`sample_equilibrium` passes its own `num_steps` to a schedule built without one).

- `constant(value)`:                 T(s) = value
- `linear(start, end)`:              T(s) = start + (end - start) s
- `geometric(start, end)`:           T(s) = start (end / start)^s          (log-linear)
- `cosine(start, end)`:              T(s) = end + (start - end) (1 + cos(pi s)) / 2
- `ladder(temperatures)`:            piecewise geometric through a ladder, equal time
                                     per rung (with `thermodynamic_ladder`: constant
                                     thermodynamic speed annealing)

`thermodynamic_ladder` spaces temperatures at constant thermodynamic speed from the
energy variance measured in a short pilot run (see its docstring).

Example:
    >>> s = idf.schedules.geometric(10.0, 1e-3, num_steps=101)
    >>> float(s(0)), float(s(50)), float(s(100))
    (10.0, 0.1, 0.001)
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ..run._scan import init_chains, scan_chains
from ..samplers._base import Sampler, check_positive_int

__all__ = [
    "Schedule",
    "constant",
    "linear",
    "geometric",
    "cosine",
    "ladder",
    "thermodynamic_ladder",
    "as_schedule",
]

PyTree = Any
StepIndex = int | Int[Array, ""]


def _check_value(name: str, v, *, positive: bool = False) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {v!r}") from None
    if not np.isfinite(f):
        raise ValueError(f"{name} must be finite, got {v!r}")
    if positive and f <= 0:
        raise ValueError(f"{name} must be > 0, got {v!r}")
    return f


class Schedule(eqx.Module):
    """Base class. Subclasses implement `_at(s)` on the progress fraction s in [0, 1]."""

    num_steps: int | None = eqx.field(static=True, default=None, kw_only=True)

    def __check_init__(self):
        if self.num_steps is not None:
            check_positive_int("num_steps", self.num_steps)

    def progress(self, step: StepIndex, num_steps: int | None = None) -> Float[Array, ""]:
        """s = clip(step / (num_steps - 1), 0, 1) (s = 0 for a one-step run)."""
        n = self.num_steps if self.num_steps is not None else num_steps
        if n is None:
            raise ValueError(
                f"{type(self).__name__} was built without num_steps: pass num_steps when "
                "calling it, or build it with num_steps=..."
            )
        n = check_positive_int("num_steps", n)
        step = jnp.asarray(step, jnp.float32)
        return jnp.clip(step / max(n - 1, 1), 0.0, 1.0)

    def __call__(self, step: StepIndex, num_steps: int | None = None) -> Float[Array, ""]:
        return self._at(self.progress(step, num_steps))

    @abc.abstractmethod
    def _at(self, s) -> Float[Array, ""]:
        """The value at progress fraction s in [0, 1]."""


class _Constant(Schedule):
    value: float

    def __call__(self, step: StepIndex, num_steps: int | None = None):
        # No num_steps needed for a constant.
        return jnp.full((), self.value, jnp.float32) + 0.0 * jnp.asarray(step, jnp.float32)

    def _at(self, s):
        return jnp.full((), self.value, jnp.float32)


class _Linear(Schedule):
    start: float
    end: float

    def _at(self, s):
        return self.start + (self.end - self.start) * s


class _Geometric(Schedule):
    start: float
    end: float

    def _at(self, s):
        return self.start * jnp.exp(s * jnp.log(self.end / self.start))


class _Cosine(Schedule):
    start: float
    end: float

    def _at(self, s):
        return self.end + (self.start - self.end) * 0.5 * (1.0 + jnp.cos(jnp.pi * s))


class _Ladder(Schedule):
    temperatures: Float[Array, " k"]

    def _at(self, s):
        # Piecewise geometric interpolation through the rungs, equal time per interval.
        k = self.temperatures.shape[0]
        if k == 1:
            return self.temperatures[0]
        u = s * (k - 1)
        i = jnp.clip(jnp.floor(u).astype(jnp.int32), 0, k - 2)
        frac = u - i
        lo, hi = jnp.log(self.temperatures[i]), jnp.log(self.temperatures[i + 1])
        return jnp.exp(lo + frac * (hi - lo))

    @property
    def start(self) -> float:
        return float(self.temperatures[0])

    @property
    def end(self) -> float:
        return float(self.temperatures[-1])


def constant(value: float) -> Schedule:
    """T(step) = value for every step."""
    return _Constant(_check_value("value", value))


def linear(start: float, end: float, num_steps: int | None = None) -> Schedule:
    """T(s) = start + (end - start) s, s = step / (num_steps - 1)."""
    return _Linear(_check_value("start", start), _check_value("end", end), num_steps=num_steps)


def geometric(start: float, end: float, num_steps: int | None = None) -> Schedule:
    """T(s) = start (end / start)^s: equal ratios per step (log-linear). start, end > 0."""
    return _Geometric(
        _check_value("start", start, positive=True),
        _check_value("end", end, positive=True),
        num_steps=num_steps,
    )


def cosine(start: float, end: float, num_steps: int | None = None) -> Schedule:
    """T(s) = end + (start - end) (1 + cos(pi s)) / 2: slow at both ends."""
    return _Cosine(_check_value("start", start), _check_value("end", end), num_steps=num_steps)


def ladder(temperatures, num_steps: int | None = None) -> Schedule:
    """Anneal through `temperatures` (in the given order, all > 0), spending an equal
    number of steps between consecutive rungs, geometric within each interval.

    With a ladder from `thermodynamic_ladder` (reversed to run hot -> cold) this is an
    annealing schedule of constant thermodynamic speed.
    """
    t = np.asarray(temperatures, np.float64)
    if t.ndim != 1 or t.size < 1:
        raise ValueError(f"temperatures must be a non-empty 1-d array, got shape {t.shape}")
    if not np.all(np.isfinite(t)) or np.any(t <= 0):
        raise ValueError("temperatures must be finite and > 0")
    return _Ladder(jnp.asarray(t, jnp.float32), num_steps=num_steps)


def as_schedule(schedule) -> Callable[[StepIndex, int], Array]:
    """A `Schedule`, a number (constant) or any callable `f(step)` -> `g(step, num_steps)`."""
    if isinstance(schedule, Schedule):
        return schedule
    if isinstance(schedule, (int, float, np.floating, np.integer)):
        return constant(float(schedule))
    if callable(schedule):
        return lambda step, num_steps=None: jnp.asarray(schedule(step), jnp.float32)
    raise ValueError(
        f"schedule must be an idf.schedules.Schedule, a number or a callable step -> value, "
        f"got {type(schedule).__name__}"
    )


# ---------------------------------------------------------------- thermodynamic ladder


def _pilot_energies(sampler_factory, key, x0_batch, temps, num_steps, burn_in):
    """Energies (temps, chains, kept_steps) of a pilot run at every temperature at once."""
    n_chains = jax.tree.leaves(x0_batch)[0].shape[0]

    def run_one(temp, key):
        sampler = sampler_factory(temp)
        keys = jax.random.split(key, n_chains)
        state = init_chains(sampler, x0_batch, keys)
        _, energies = scan_chains(sampler, keys, state, num_steps, record=lambda s, _: s.energy)
        return energies[burn_in:].T  # (chains, kept)

    keys = jax.random.split(key, temps.shape[0])
    return jax.jit(jax.vmap(run_one))(temps, keys)


def thermodynamic_ladder(
    sampler_factory: Callable[[Any], Sampler],
    key: PRNGKeyArray,
    x0_batch: PyTree,
    t_min: float,
    t_max: float,
    num_temperatures: int,
    *,
    num_pilot: int = 16,
    pilot_steps: int = 400,
    burn_in: int | None = None,
) -> Float[Array, " num_temperatures"]:
    """Temperatures t_min = T_0 < ... < T_{K-1} = t_max of constant thermodynamic speed.

    The thermodynamic length of the path in beta = 1/T is
    L = integral sqrt(Var_beta(E)) d beta = integral sqrt(C(T)) d ln T, with the heat
    capacity C = Var(E) / T^2 (k_B = 1). Neighbouring Boltzmann distributions at
    beta and beta + d beta overlap by an amount set by d beta * sd(E), so rungs equally
    spaced in L overlap equally (equal swap acceptance in replica exchange, equal
    dissipation per rung in annealing). For constant C this is geometric spacing.

    Procedure: a pilot run of `pilot_steps` steps at `num_pilot` geometrically spaced
    temperatures (all in one vmapped call) measures Var(E) at each (pooled over chains
    after `burn_in`); sqrt(C) is interpolated linearly in ln T, integrated by the
    trapezoid rule, and the cumulative length is inverted at K equally spaced values.

    Args:
        sampler_factory: `temperature -> Sampler` (the temperature may be traced), e.g.
            `lambda t: idf.mala(E, 1e-2, temperature=t)`.
        key: PRNG key of the pilot run.
        x0_batch: PyTree with a leading chain axis; every pilot temperature starts there.
        t_min, t_max: 0 < t_min < t_max, energy units.
        num_temperatures: K >= 2.
        num_pilot: pilot temperatures (>= 2).
        pilot_steps: steps per pilot chain; burn_in defaults to half of them.

    Returns:
        (K,) ascending temperatures.
    """
    t_min = _check_value("t_min", t_min, positive=True)
    t_max = _check_value("t_max", t_max, positive=True)
    if not t_min < t_max:
        raise ValueError(f"need t_min < t_max, got {t_min} and {t_max}")
    k = check_positive_int("num_temperatures", num_temperatures)
    if k < 2:
        raise ValueError(f"num_temperatures must be >= 2, got {k}")
    num_pilot = check_positive_int("num_pilot", num_pilot)
    if num_pilot < 2:
        raise ValueError(f"num_pilot must be >= 2, got {num_pilot}")
    pilot_steps = check_positive_int("pilot_steps", pilot_steps)
    burn_in = pilot_steps // 2 if burn_in is None else int(burn_in)
    if not 0 <= burn_in < pilot_steps - 1:
        raise ValueError(f"burn_in must be in [0, pilot_steps - 1), got {burn_in}")

    pilot_t = np.geomspace(t_min, t_max, num_pilot)
    energies = _pilot_energies(
        sampler_factory, key, x0_batch, jnp.asarray(pilot_t, jnp.float32), pilot_steps, burn_in
    )
    energies = np.asarray(energies, np.float64).reshape(num_pilot, -1)
    if not np.all(np.isfinite(energies)):
        raise ValueError("pilot run produced non-finite energies: lower the sampler's step size")
    var = energies.var(axis=1, ddof=1)
    sqrt_c = np.sqrt(np.maximum(var, 0.0)) / pilot_t  # sqrt(heat capacity)
    # Guard against a zero variance (frozen pilot chain): fall back to geometric spacing there.
    floor = max(np.max(sqrt_c) * 1e-6, 1e-12)
    sqrt_c = np.maximum(sqrt_c, floor)
    log_t = np.log(pilot_t)
    seg = 0.5 * (sqrt_c[1:] + sqrt_c[:-1]) * np.diff(log_t)
    length = np.concatenate([[0.0], np.cumsum(seg)])
    targets = np.linspace(0.0, length[-1], k)
    # Invert L(ln T) exactly for a piecewise-linear integrand: solve the quadratic per segment.
    out = np.empty(k)
    for j, target in enumerate(targets):
        i = int(np.clip(np.searchsorted(length, target, side="right") - 1, 0, num_pilot - 2))
        a, b = sqrt_c[i], sqrt_c[i + 1]
        h = log_t[i + 1] - log_t[i]
        r = target - length[i]
        slope = (b - a) / h
        if abs(slope) < 1e-12 * max(a, 1e-300):
            dx = r / a
        else:
            # a dx + slope dx^2 / 2 = r
            dx = (-a + np.sqrt(max(a * a + 2.0 * slope * r, 0.0))) / slope
        out[j] = np.exp(log_t[i] + np.clip(dx, 0.0, h))
    out[0], out[-1] = t_min, t_max
    return jnp.asarray(out, jnp.float32)
