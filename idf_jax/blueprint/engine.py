"""The blueprint's object-style facade: `EnergyDiffusionEngine` and `sample_equilibrium`.

A thin layer over the functional API for people who start from the blueprint:

    from idf_jax.blueprint.engine import EnergyDiffusionEngine, sample_equilibrium

    ede = EnergyDiffusionEngine(domain="cyber", dimensions=256, energy_fn=my_energy)
    equilibrium = sample_equilibrium(engine=ede, initial_state=np.random.randn(256),
                                     constraints={"energy_max": 1000.0, "entropy_min": 50.0},
                                     temperature=1.0)
    ede.compute_energy(equilibrium), ede.compute_entropy(equilibrium)

`sample_equilibrium` with `temperature > 0` returns an equilibrium *ensemble* at that
temperature (chains, ...) (annealed down from a hot start, then exact MALA at T); with
`temperature=None` or 0 it anneals to zero temperature, relaxes, and returns the single
lowest-energy state found. Entropy is a property of an ensemble, so `compute_entropy`
takes a batch of states and `entropy_min` needs temperature > 0.

The core never imports `capsules` at module import: a `domain` is looked up lazily in
`capsules.registry()` when no `energy_fn` is given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from ..samplers._base import check_positive, check_positive_int
from ..thermo import constraints as _constraints
from ..thermo.anneal import default_start_temperature
from ..thermo.anneal import sample_equilibrium as _sample_equilibrium

__all__ = ["EnergyDiffusionEngine", "sample_equilibrium", "ConstraintViolation", "DICT_CONSTRAINTS"]

PyTree = Any

#: Names accepted in the blueprint's dict constraints.
DICT_CONSTRAINTS = {
    **_constraints.KNOWN_NAMES,
    "entropy_min": "ensemble entropy (nats) >= value; checked on the returned ensemble "
    "(needs temperature > 0)",
}


class ConstraintViolation(RuntimeError):
    """The sampled result does not satisfy a requested constraint (e.g. entropy_min)."""


def _lookup_domain(domain: str, dimensions: int | None, params: dict | None):
    import capsules  # lazy: the core must not import capsules at module import

    reg = capsules.registry()
    domains = sorted({name.split(".", 1)[0] for name in reg})
    if domain in reg:
        name = domain
    else:
        names = [n for n in reg if n.split(".", 1)[0] == domain]
        if not names:
            raise ValueError(
                f"no capsule for domain {domain!r}; known domains: {domains or 'none registered'} "
                f"(capsules: {sorted(reg) or 'none'}). Pass energy_fn=... to use your own energy."
            )
        if len(names) > 1:
            raise ValueError(
                f"domain {domain!r} has several capsules {sorted(names)}; pass one full name "
                "as domain=..."
            )
        name = names[0]
    info = reg[name]
    kwargs = dict(params or {})
    if dimensions is not None:
        for key in ("dimensions", "dim", "n_dims", "d"):
            if key in info.parameters and key not in kwargs:
                kwargs[key] = dimensions
                break
    return info.factory(**kwargs)


class EnergyDiffusionEngine:
    """Energy field + diffusion dynamics over one energy E(x), as in the blueprint.

    Args:
        energy_fn: E(x) -> scalar for one state. When omitted, `domain` names a capsule
            (a domain with exactly one capsule, or a full name "domain.capsule").
        domain: a label, or the capsule to look up in `capsules.registry()`.
        dimensions: size of a flat state (optional; passed to the capsule when it
            takes a `dimensions`/`dim` parameter; used to tell one state from a batch).
        temperature: default temperature T (energy units) for sampling and scores.
        tolerance: |dE| tolerance of `validate_conservation` (energy units).
        capsule_params: keyword arguments for the capsule factory.
    """

    def __init__(
        self,
        energy_fn: Callable[[PyTree], Array] | None = None,
        domain: str | None = None,
        dimensions: int | None = None,
        *,
        temperature: float = 1.0,
        tolerance: float = 0.01,
        capsule_params: dict | None = None,
    ):
        if dimensions is not None:
            dimensions = check_positive_int("dimensions", dimensions)
        check_positive("temperature", temperature)
        check_positive("tolerance", tolerance)
        self.domain = domain
        self.dimensions = dimensions
        self.temperature = float(temperature)
        self.tolerance = float(tolerance)
        self.capsule = None
        if energy_fn is None:
            if domain is None:
                raise ValueError("EnergyDiffusionEngine needs energy_fn=... or domain=...")
            self.capsule = _lookup_domain(domain, dimensions, capsule_params)
            energy_fn = self.capsule.energy_fn
        elif not callable(energy_fn):
            raise ValueError(f"energy_fn must be callable, got {type(energy_fn).__name__}")
        self.energy_fn = energy_fn
        self._example = None
        if self.capsule is not None:
            self._example = jax.tree.map(lambda l: l[0], self.capsule.init(jax.random.key(0), 1))
        elif dimensions is not None:
            self._example = jnp.zeros((dimensions,), jnp.float32)
        self._energy = jax.jit(energy_fn)
        self._energies = jax.jit(jax.vmap(energy_fn))
        self._grad = jax.jit(jax.grad(energy_fn))
        self._grads = jax.jit(jax.vmap(jax.grad(energy_fn)))

    # ---------------------------------------------------------------- helpers

    def _as_state(self, state):
        return jax.tree.map(lambda l: jnp.asarray(l, jnp.result_type(float)), state)

    def _is_batch(self, state) -> bool:
        leaves = jax.tree.leaves(state)
        if self._example is not None:
            ex = jax.tree.leaves(self._example)
            if len(ex) != len(leaves):
                raise ValueError("state does not have the structure of this engine's states")
            extra = {np.ndim(a) - np.ndim(b) for a, b in zip(leaves, ex)}
            if extra == {0}:
                return False
            if extra == {1}:
                return True
            raise ValueError(
                f"state leaves of shapes {[np.shape(a) for a in leaves]} match neither one "
                f"state {[np.shape(b) for b in ex]} nor a batch of them"
            )
        out = jax.eval_shape(self.energy_fn, state)
        return np.ndim(out) != 0

    # ---------------------------------------------------------------- energy field

    def compute_energy(self, state: PyTree) -> Float[Array, "*batch"]:
        """E(x) for one state (a scalar) or a batch with a leading axis ((n,))."""
        state = self._as_state(state)
        return self._energies(state) if self._is_batch(state) else self._energy(state)

    def compute_gradient(self, state: PyTree) -> PyTree:
        """grad E(x), shaped like `state` (one state or a batch)."""
        state = self._as_state(state)
        return self._grads(state) if self._is_batch(state) else self._grad(state)

    def compute_entropy(self, states: PyTree, estimator: str = "auto") -> Float[Array, ""]:
        """Differential entropy (nats) of the ensemble `states` (n, ...), flattened to (n, d).

        estimator: 'gaussian' (entropy of the fitted Gaussian, bias-corrected; exact for
        Gaussian ensembles, an upper bound otherwise; needs n > d), 'knn'
        (Kozachenko-Leonenko, k = 3), or 'auto' (gaussian when n > 2 d, else knn).
        Uses `idf_jax.thermo.metrics`.
        """
        from ..thermo import metrics as thermo

        states = self._as_state(states)
        if not self._is_batch(states):
            raise ValueError(
                "entropy is a property of an ensemble: pass a batch of states (n, ...), "
                "e.g. the result of sample_equilibrium(..., temperature=T > 0)"
            )
        leaves = jax.tree.leaves(states)
        n = leaves[0].shape[0]
        flat = jnp.concatenate([l.reshape(n, -1) for l in leaves], axis=1)
        d = flat.shape[1]
        if estimator == "auto":
            estimator = "gaussian" if n > 2 * d else "knn"
        if estimator == "gaussian":
            return thermo.gaussian_entropy(flat)
        if estimator == "knn":
            return thermo.knn_entropy(flat)
        raise ValueError(f"estimator must be 'auto', 'gaussian' or 'knn', got {estimator!r}")

    def validate_conservation(self, delta_e, tolerance: float | None = None) -> Bool[Array, "..."]:
        """|delta_e| < tolerance, elementwise.

        Energy conservation is a law of Hamiltonian (NVE) dynamics: use it on HMC /
        leapfrog energy errors (`info.energy_error`). Langevin dynamics exchanges
        energy with a heat bath; its dE is not a conservation error.
        """
        tol = self.tolerance if tolerance is None else float(tolerance)
        check_positive("tolerance", tol)
        d = jnp.asarray(delta_e)
        if not jnp.issubdtype(d.dtype, jnp.number):
            raise ValueError(f"delta_e must be numeric, got {d.dtype}")
        return jnp.abs(d) < tol

    # ---------------------------------------------------------------- diffusion dynamics

    def score(self, x, t=None, temperature: float | None = None):
        """-grad E(x) / T: the score of exp(-E/T) (the t -> 0 limit of a diffusion's score)."""
        temp = self.temperature if temperature is None else float(temperature)
        return -jax.grad(self.energy_fn)(x) / temp

    def forward_diffuse(self, x0, t, key: PRNGKeyArray, sde=None):
        """x_t ~ p_t(x | x0) in closed form (`idf_jax.thermo.diffusion.forward_diffuse`); VP SDE
        by default."""
        from ..thermo import diffusion

        return diffusion.forward_diffuse(sde or diffusion.VPSDE(), x0, t, key)

    def reverse_denoise(self, xt, t, dt, key: PRNGKeyArray | None = None, sde=None, score_fn=None):
        """One reverse-time step t -> t - dt (`idf_jax.thermo.diffusion.reverse_denoise`).

        The default score is -grad E / T, the exact score of the noise-free Boltzmann
        density; at t > 0 the noised marginal's score differs (train one with
        `idf_jax.thermo.diffusion.dsm_loss` and pass it as score_fn for generative use).
        Without a key the step is the deterministic probability-flow (energy-descent)
        step, as in the blueprint.
        """
        from ..thermo import diffusion

        fn = score_fn if score_fn is not None else (lambda x, _t: self.score(x))
        return diffusion.reverse_denoise(sde or diffusion.VPSDE(), fn, xt, t, dt, key)

    # ---------------------------------------------------------------- equilibrium

    def sample_equilibrium(self, initial_state, constraints=None, temperature=None, **kwargs):
        """`sample_equilibrium(engine=self, ...)`; see the module function."""
        return sample_equilibrium(
            engine=self,
            initial_state=initial_state,
            constraints=constraints,
            temperature=temperature,
            **kwargs,
        )


def sample_equilibrium(
    engine: EnergyDiffusionEngine,
    initial_state: PyTree,
    constraints: dict | list | None = None,
    temperature: float | None = None,
    *,
    key: PRNGKeyArray | int = 0,
    num_chains: int | None = None,
    num_steps: int = 2000,
    return_result: bool = False,
):
    """The blueprint's function form over `idf.sample_equilibrium`.

    Args:
        engine: an `EnergyDiffusionEngine`.
        initial_state: one state (every chain starts there) or a batch (n, ...).
        constraints: a dict with names in `DICT_CONSTRAINTS` ('energy_max', 'entropy_min',
            'box', 'lower', 'upper'; unknown names are a ValueError) or
            `idf_jax.thermo.constraints` objects.
        temperature: None or 0: anneal to T -> 0, relax, return the lowest-energy state
            (shaped like one state). T > 0: anneal from a hot start down to T over the
            first half of `num_steps`, then run exact MALA at T (step size from the
            annealing) for the second half; return the ensemble (chains, ...).
        key: PRNG key or int seed.
        num_chains: chains when `initial_state` is one state (default: 32 at T = 0;
            max(64, 2 d + 2) at T > 0 so the Gaussian entropy estimate is defined).
        num_steps: total steps.
        return_result: also return the `EquilibriumResult` of the annealing stage.

    Raises:
        ValueError: bad arguments, unknown constraint names, inconsistent shapes.
        ConstraintViolation: the ensemble's entropy is below `entropy_min`, or no state
            satisfies `energy_max`.
    """
    if not isinstance(engine, EnergyDiffusionEngine):
        raise ValueError(f"engine must be an EnergyDiffusionEngine, got {type(engine).__name__}")
    num_steps = check_positive_int("num_steps", num_steps)
    if num_steps < 4:
        raise ValueError(f"num_steps must be >= 4, got {num_steps}")
    entropy_min = None
    if isinstance(constraints, dict):
        unknown = sorted(set(constraints) - set(DICT_CONSTRAINTS))
        if unknown:
            raise ValueError(
                f"unknown constraint name(s) {unknown}; known names: {sorted(DICT_CONSTRAINTS)}"
            )
        spec = dict(constraints)
        if "entropy_min" in spec:
            entropy_min = float(spec.pop("entropy_min"))
            if not np.isfinite(entropy_min):
                raise ValueError(f"entropy_min must be finite, got {entropy_min}")
        cs = _constraints.parse(spec)
    else:
        cs = _constraints.parse(constraints)
    hot = temperature is not None and float(temperature) > 0
    if temperature is not None:
        if not np.isfinite(float(temperature)) or float(temperature) < 0:
            raise ValueError(f"temperature must be None or >= 0, got {temperature!r}")
    if entropy_min is not None and not hot:
        raise ValueError("entropy_min is a property of an ensemble: it needs temperature > 0")

    state = engine._as_state(initial_state)
    if engine._is_batch(state):
        x0 = state
    else:
        leaves = jax.tree.leaves(state)
        d = sum(int(np.prod(np.shape(l))) for l in leaves)
        n = num_chains if num_chains is not None else (max(64, 2 * d + 2) if hot else 32)
        n = check_positive_int("num_chains", n)
        x0 = jax.tree.map(lambda l: jnp.broadcast_to(l, (n, *l.shape)), state)
    key = jax.random.key(key) if isinstance(key, int) else key
    k_anneal, k_hold = jax.random.split(key)
    project = engine.capsule.project if engine.capsule is not None else None
    if engine.capsule is not None and engine.capsule.constraints:
        cs = tuple(engine.capsule.constraints) + tuple(cs)

    if not hot:
        res = _sample_equilibrium(
            engine.energy_fn, k_anneal, x0, num_steps=num_steps, constraints=cs, project=project
        )
        out = res.best_position
    else:
        import idf_jax as idf

        assert temperature is not None  # `hot` implies a temperature was given
        temp = float(temperature)
        if project is not None or _constraints.has_projection(cs):
            raise ValueError(
                "temperature > 0 with projection constraints is not supported (MALA at T has no "
                "projection); use penalty mode, e.g. Box(..., mode='penalty')"
            )
        e0 = np.asarray(engine._energies(x0))
        d = sum(int(np.prod(l.shape[1:])) for l in jax.tree.leaves(x0))
        t_hot = max(default_start_temperature(e0, d), temp)
        half = num_steps // 2
        ratio = temp / t_hot

        def schedule(i):
            s = jnp.clip(i / max(half - 1, 1), 0.0, 1.0)
            return t_hot * ratio**s

        res = _sample_equilibrium(
            engine.energy_fn,
            k_anneal,
            x0,
            num_steps=half,
            constraints=cs,
            schedule=schedule,
            relax=False,
            prerelax_steps=0,
        )
        penalised = _constraints.apply_constraints(engine.energy_fn, cs)
        step = float(jnp.median(res.step_size))
        trace = idf.sample(
            idf.mala(penalised, step, temperature=temp),
            k_hold,
            res.final_position,
            num_steps - half,
            thin=num_steps - half,
        )
        out = jax.tree.map(lambda l: l[:, -1], trace.positions)

    energies = engine._energies(out) if hot else engine._energy(out)
    em = [c for c in cs if isinstance(c, _constraints.EnergyMax)]
    if em and not bool(jnp.any(energies <= min(float(c.value) for c in em))):
        raise ConstraintViolation(
            f"no state reached energy <= energy_max ({min(float(c.value) for c in em)}); "
            f"lowest energy {float(jnp.min(energies))}"
        )
    if entropy_min is not None:
        s = float(engine.compute_entropy(out))
        if not s >= entropy_min:
            raise ConstraintViolation(
                f"ensemble entropy {s:.4g} nats is below entropy_min={entropy_min} at "
                f"T={temperature}; raise the temperature"
            )
    return (out, res) if return_result else out
