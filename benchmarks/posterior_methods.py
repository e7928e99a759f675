"""The samplers `bench_posteriors.py` compares, each as a tune / step pair (private to it).

A `Method` is three pure functions over a batch of chains:

    tune(target, key, x0, plan) -> Tuned(params, states, tuning_grads (n,), cost (n,))
    step(target, params, keys, states) -> (states, grads (n,))    # one transition per chain
    position(states) -> (n, d)

`tune` runs the method's own published warm-up (its gradient evaluations counted per chain
in `tuning_grads`); `cost` estimates gradient evaluations per transition, to size the run.

Peers (BlackJAX 1.7.1, the installed version):
- `blackjax_nuts`: multinomial NUTS, `blackjax.window_adaptation` (Stan's windows, diagonal
  mass, target acceptance 0.8), every chain adapted on its own (`vmap`); cost = the
  leapfrog steps of each trajectory (`info.num_integration_steps`).
- `blackjax_mclmc`: unadjusted MCLMC (isokinetic McLachlan integrator, 2 gradients a step),
  `blackjax.mclmc_find_L_and_step_size` (its three phases, diagonal preconditioning).
- `blackjax_mams`: adjusted MCLMC with random trajectory lengths
  (`adjusted_mclmc_dynamic`), `blackjax.adjusted_mclmc_find_L_and_step_size` with target
  acceptance 0.9 (the MAMS paper's) and its other defaults (this version pins
  L = 2 step sizes, `target_num_integration_steps=2`); 2 gradients per integration step.

idf methods (whatever the installed idf_jax has; checked with hasattr, so the same script
benchmarks samplers that land later):
- `idf_mala`, `idf_hmc`: `idf.mala` / `idf.hmc` (10 leapfrog steps) tuned by `idf.adapt_run`;
- `idf_nuts`, `idf_mclmc`, `idf_mams`: `idf.nuts(E, step_size)`, `idf.mclmc(E, step_size, L)`,
  `idf.mams(E, step_size, L)` tuned by `idf.adapt(..., method=...)` where it takes a method;
  gradient counts from the samplers' info (a field named like `num_grad_evals` or
  `num_integration_steps`) or the sampler's `grads_per_step`.
`idf.sample_tuned` returns a Trace, not a kernel: `bench_posteriors.py` drives it itself.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

try:
    import blackjax
    from blackjax.mcmc import adjusted_mclmc_dynamic as bj_mams
    from blackjax.mcmc import mclmc as bj_mclmc
except ImportError:  # the peers are optional: idf rows still run
    blackjax = None

import idf_jax as idf
from idf_jax.run import tuned as _tuned

__all__ = ["GRAD_FIELDS", "Method", "Plan", "Tuned", "available_methods", "info_grads"]

GRAD_FIELDS = (
    "num_grad_evals",
    "num_gradient_evaluations",
    "num_grads",
    "grad_evals",
    "num_integration_steps",
    "num_leapfrog_steps",
)
"""Info / stats fields read, in this order, as gradient evaluations of one transition."""


class Plan(NamedTuple):
    """Static sizes: warm-up transitions, and the planned sampling length (MCLMC tuners)."""

    tune_steps: int
    sample_steps: int


class Tuned(NamedTuple):
    params: Any
    states: Any
    tuning_grads: jax.Array  # (n,)
    cost: jax.Array  # (n,) gradient evaluations per transition, estimated


class Method(NamedTuple):
    name: str
    family: str  # "blackjax" or "idf"
    tune: Callable[..., Tuned]
    step: Callable[..., tuple[Any, jax.Array]]
    position: Callable[[Any], jax.Array]
    note: str


def info_grads(info: Any, sampler: Any = None) -> jax.Array:
    """Gradient evaluations of one transition from its info (or the sampler's known cost)."""
    for name in GRAD_FIELDS:
        if hasattr(info, name):
            return jnp.asarray(getattr(info, name), jnp.float32)
    for name in ("grads_per_step", "num_grads_per_step"):
        if sampler is not None and hasattr(sampler, name):
            return jnp.asarray(getattr(sampler, name), jnp.float32)
    raise ValueError(
        f"cannot count gradient evaluations: {type(info).__name__} has none of the fields "
        f"{', '.join(GRAD_FIELDS)} and the sampler no `grads_per_step`"
    )


def _microcanonical_start(target) -> tuple[float, float]:
    """(step size, L) = (0.25 sqrt(d), sqrt(d)): the published start, sample_tuned's."""
    return 0.25 * target.dim**0.5, target.dim**0.5


def _idf(name: str) -> Any:
    """A front-door name of a later idf_jax (`available_methods` checks it exists)."""
    return getattr(idf, name)


def _positions(states) -> jax.Array:
    return states.position


# --------------------------------------------------------------------------- BlackJAX


def _bj_nuts_tune(target, key, x0, plan: Plan) -> Tuned:
    assert blackjax is not None
    wa = blackjax.window_adaptation(blackjax.nuts, target.logdensity)

    def one(k, x):
        run: Any = wa.run
        (state, params), info = run(k, x, num_steps=plan.tune_steps)
        n_leap = info.info.num_integration_steps.astype(jnp.float32)
        tail = n_leap[-max(plan.tune_steps // 5, 1) :]
        grads = jnp.sum(n_leap) + 1.0  # + the initial gradient
        return (params["step_size"], params["inverse_mass_matrix"]), state, grads, jnp.mean(tail)

    params, states, grads, cost = jax.vmap(one)(jax.random.split(key, x0.shape[0]), x0)
    return Tuned(params, states, grads, cost)


def _bj_nuts_step(target, params, keys, states):
    assert blackjax is not None
    kernel = blackjax.nuts.build_kernel()

    def one(k, s, eps, imm):
        s, info = kernel(k, s, target.logdensity, eps, imm)
        return s, info.num_integration_steps.astype(jnp.float32)

    return jax.vmap(one)(keys, states, *params)


def _bj_mclmc_tune(target, key, x0, plan: Plan) -> Tuned:
    assert blackjax is not None
    bj = blackjax
    kernel = bj_mclmc.build_kernel()

    def one(k, x):
        k_init, k_tune = jax.random.split(k)
        state = bj_mclmc.init(x, target.logdensity, k_init)
        state, params, n_steps = bj.mclmc_find_L_and_step_size(
            mclmc_kernel=kernel,
            num_steps=plan.sample_steps,
            state=state,
            rng_key=k_tune,
            logdensity_fn=target.logdensity,
            diagonal_preconditioning=True,
        )
        grads = 2.0 * jnp.asarray(n_steps, jnp.float32) + 1.0
        p = (params.L, params.step_size, params.inverse_mass_matrix)
        return p, state, grads, jnp.float32(2.0)

    params, states, grads, cost = jax.vmap(one)(jax.random.split(key, x0.shape[0]), x0)
    return Tuned(params, states, grads, cost)


def _bj_mclmc_step(target, params, keys, states):
    kernel = bj_mclmc.build_kernel()

    def one(k, s, L, eps, imm):
        s, _ = kernel(k, s, target.logdensity, imm, L, eps)
        return s, jnp.float32(2.0)

    return jax.vmap(one)(keys, states, *params)


def _mams_kernel():
    steps_fn = bj_mams.make_random_trajectory_length_fn(True)
    return bj_mams.build_kernel(integration_steps_fn=steps_fn)


def _bj_mams_tune(target, key, x0, plan: Plan) -> Tuned:
    assert blackjax is not None
    bj = blackjax
    kernel = _mams_kernel()

    def mclmc_kernel(
        rng_key, state, logdensity_fn, step_size, inverse_mass_matrix, integration_steps_params
    ):
        return kernel(
            rng_key,
            state,
            logdensity_fn,
            step_size,
            inverse_mass_matrix=inverse_mass_matrix,
            integration_steps_params=integration_steps_params,
        )

    def one(k, x):
        k_init, k_tune = jax.random.split(k)
        state = bj_mams.init(x, target.logdensity, k_init)
        state, params, n_steps = bj.adjusted_mclmc_find_L_and_step_size(
            mclmc_kernel=mclmc_kernel,
            logdensity_fn=target.logdensity,
            num_steps=plan.sample_steps,
            state=state,
            rng_key=k_tune,
            target=0.9,
            diagonal_preconditioning=True,
        )
        grads = 2.0 * jnp.asarray(n_steps, jnp.float32) + 1.0
        avg = params.L / params.step_size
        p = (params.step_size, params.inverse_mass_matrix, avg)
        return p, state, grads, 2.0 * jnp.asarray(avg, jnp.float32)

    params, states, grads, cost = jax.vmap(one)(jax.random.split(key, x0.shape[0]), x0)
    return Tuned(params, states, grads, cost)


def _bj_mams_step(target, params, keys, states):
    kernel = _mams_kernel()

    def one(k, s, eps, imm, avg):
        s, info = kernel(
            k, s, target.logdensity, eps, inverse_mass_matrix=imm, integration_steps_params=(avg,)
        )
        return s, 2.0 * jnp.asarray(info.num_integration_steps, jnp.float32)

    return jax.vmap(one)(keys, states, *params)


# --------------------------------------------------------------------------- idf


def _adapt(sampler, key, x0, num_steps: int, method: str | None):
    """(tuned sampler, start positions, the warm-up's gradient evaluations per chain or
    None) through `idf.adapt_run` / `idf.adapt`."""
    n = x0.shape[0]

    def cost(out):
        g = getattr(out, "num_grad_evals", None)
        return None if g is None else jnp.asarray(g, jnp.float32) / n

    if method is None:  # the window warm-up's count leaves out the initial gradient
        res = idf.adapt_run(sampler, key, x0, num_steps)
        spent = cost(res)
        return res.sampler, res.positions, None if spent is None else spent + 1.0
    for fn in (getattr(idf, "adapt_run", None), idf.adapt):
        if fn is None or "method" not in inspect.signature(fn).parameters:
            continue
        out = fn(sampler, key, x0, num_steps, method=method)
        if hasattr(out, "sampler"):
            return getattr(out, "sampler"), getattr(out, "positions", x0), cost(out)
        tuned = out[0] if isinstance(out, tuple) else out
        return tuned, x0, None  # `adapt` returns no positions: the run starts from x0
    raise ValueError(f"idf.adapt takes no `method` argument: cannot tune {method!r}")


def _window_steps(plan: Plan) -> int:
    return plan.tune_steps


def _microcanonical_steps(plan: Plan) -> int:
    """The warm-up `idf.sample_tuned` gives a run of `plan.sample_steps` draws."""
    rule = getattr(_tuned, "default_warmup", None)
    return plan.tune_steps if rule is None else int(rule("mams", plan.sample_steps))


def _idf_tune(
    make: Callable[[Any], Any],
    adapt_method: str | None,
    fixed_cost: float | None,
    steps: Callable[[Plan], int] = _window_steps,
):
    def tune(target, key, x0, plan: Plan) -> Tuned:
        sampler, pos, spent = _adapt(make(target), key, x0, steps(plan), adapt_method)
        k_init, k_probe = jax.random.split(jax.random.fold_in(key, 1))
        n = x0.shape[0]
        states = jax.vmap(sampler.init)(pos, jax.random.split(k_init, n))
        if fixed_cost is not None:
            per_step = jnp.full((n,), fixed_cost, jnp.float32)
        else:  # one probe transition tells the cost of a step (counted as tuning)
            _, info = jax.vmap(sampler.step)(jax.random.split(k_probe, n), states)
            per_step = jnp.broadcast_to(info_grads(info, sampler), (n,))
        probe = 0.0 if fixed_cost is not None else per_step
        if spent is None:  # no count from the tuner: its steps at the tuned cost
            spent = per_step * steps(plan) + 1.0
        return Tuned(sampler, states, spent + probe, per_step)

    return tune


def _idf_step(fixed_cost: float | None):
    def step(target, sampler, keys, states):
        states, info = jax.vmap(sampler.step)(keys, states)
        n = keys.shape[0]
        if fixed_cost is not None:
            return states, jnp.full((n,), fixed_cost, jnp.float32)
        return states, jnp.broadcast_to(info_grads(info, sampler), (n,))

    return step


def _idf_method(name, make, adapt_method, fixed_cost, note, steps=_window_steps) -> Method:
    tune = _idf_tune(make, adapt_method, fixed_cost, steps)
    return Method(name, "idf", tune, _idf_step(fixed_cost), _positions, note)


def available_methods() -> dict[str, Method]:
    """Every method this installation can run, BlackJAX peers first."""
    out: dict[str, Method] = {}
    if blackjax is not None:
        out["blackjax_nuts"] = Method(
            "blackjax_nuts",
            "blackjax",
            _bj_nuts_tune,
            _bj_nuts_step,
            _positions,
            "window adaptation, diag mass, target 0.8",
        )
        out["blackjax_mclmc"] = Method(
            "blackjax_mclmc",
            "blackjax",
            _bj_mclmc_tune,
            _bj_mclmc_step,
            _positions,
            "mclmc_find_L_and_step_size, diag precond",
        )
        out["blackjax_mams"] = Method(
            "blackjax_mams",
            "blackjax",
            _bj_mams_tune,
            _bj_mams_step,
            _positions,
            "adjusted_mclmc_find_L_and_step_size, target 0.9",
        )
    out["idf_mala"] = _idf_method(
        "idf_mala", lambda t: idf.mala(t.energy, 0.1), None, 1.0, "idf.adapt (step size)"
    )
    out["idf_hmc"] = _idf_method(
        "idf_hmc", lambda t: idf.hmc(t.energy, 0.1, 10), None, 10.0, "idf.adapt, 10 leapfrog steps"
    )
    if hasattr(idf, "nuts"):
        out["idf_nuts"] = _idf_method(
            "idf_nuts", lambda t: _idf("nuts")(t.energy, 0.1), None, None, "idf.adapt (window)"
        )
    if hasattr(idf, "mclmc"):
        out["idf_mclmc"] = _idf_method(
            "idf_mclmc",
            lambda t: _idf("mclmc")(t.energy, *_microcanonical_start(t)),
            "mclmc",
            None,
            "idf.adapt(method='mclmc'), sample_tuned's warm-up length",
            _microcanonical_steps,
        )
    if hasattr(idf, "mams"):
        out["idf_mams"] = _idf_method(
            "idf_mams",
            lambda t: _idf("mams")(t.energy, *_microcanonical_start(t)),
            "mams",
            None,
            "idf.adapt(method='mams'), sample_tuned's warm-up length",
            _microcanonical_steps,
        )
    return out
