"""The blueprint facade: EnergyDiffusionEngine and engine.sample_equilibrium."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from idf_jax import engine as engine_mod
from idf_jax.blueprint.engine import ConstraintViolation, EnergyDiffusionEngine, sample_equilibrium


def bowl(x):
    return 0.5 * jnp.sum(x**2)


def test_blueprint_core_api_example(capsys):
    # The blueprint's "Core IDF API" example, only the import line changed and energy_fn supplied.
    ede = EnergyDiffusionEngine(domain="cyber", dimensions=256, energy_fn=bowl)

    # Define initial state and goal
    initial_state = np.random.randn(256)
    constraints = {"energy_max": 1000.0, "entropy_min": 50.0}

    # Sample equilibrium configuration
    equilibrium = sample_equilibrium(
        engine=ede, initial_state=initial_state, constraints=constraints, temperature=1.0
    )

    print(f"Final energy: {ede.compute_energy(equilibrium)}")
    print(f"Final entropy: {ede.compute_entropy(equilibrium)}")
    out = capsys.readouterr().out
    assert "Final energy:" in out and "Final entropy:" in out
    # Known answers for exp(-|x|^2 / 2) in d = 256 at T = 1: <E> = d/2 = 128 with
    # sd(mean over n chains) = sqrt(d/2)/sqrt(n) ~ 0.5; S = (d/2) ln(2 pi e) = 363.2 nats.
    energies = np.asarray(ede.compute_energy(equilibrium))
    assert equilibrium.shape[1:] == (256,) and energies.shape == (equilibrium.shape[0],)
    assert abs(energies.mean() - 128.0) < 6.0
    assert float(ede.compute_entropy(equilibrium)) == pytest.approx(
        128 * np.log(2 * np.pi * np.e), abs=15.0
    )


def test_zero_temperature_returns_lowest_energy_state():
    def tilted(x):
        return jnp.sum((x**2 - 1.0) ** 2 + 0.3 * x)

    # All chains start in the wrong (local) well at x = +1; the schedule starts at a
    # temperature judged from the initial energy, so give it a few crossings' time.
    ede = EnergyDiffusionEngine(energy_fn=tilted, dimensions=1)
    best = ede.sample_equilibrium(np.ones(1), num_steps=1500, key=3)
    assert best.shape == (1,)
    roots = np.roots([4.0, 0.0, -4.0, 0.3]).real
    x_star = roots[np.argmin((roots**2 - 1) ** 2 + 0.3 * roots)]
    np.testing.assert_allclose(np.asarray(best), x_star, atol=2e-3)


def test_energy_gradient_batching_and_conservation():
    ede = EnergyDiffusionEngine(energy_fn=bowl, dimensions=4)
    x = jnp.arange(4.0)
    assert float(ede.compute_energy(x)) == pytest.approx(7.0)
    np.testing.assert_allclose(np.asarray(ede.compute_gradient(x)), np.arange(4.0))
    xb = jnp.stack([x, 2 * x])
    np.testing.assert_allclose(np.asarray(ede.compute_energy(xb)), [7.0, 28.0])
    assert ede.compute_gradient(xb).shape == (2, 4)
    np.testing.assert_array_equal(
        np.asarray(ede.validate_conservation(jnp.array([0.001, -0.02, 0.5]))), [True, False, False]
    )
    assert bool(ede.validate_conservation(0.05, tolerance=0.1))
    with pytest.raises(ValueError, match="ensemble"):
        ede.compute_entropy(x)
    with pytest.raises(ValueError, match="neither"):
        ede.compute_energy(jnp.zeros((2, 2, 4)))
    # Gaussian ensemble with known entropy: N(0, diag(s^2)) -> sum ln(s sqrt(2 pi e)).
    s = jnp.array([0.5, 1.0, 2.0, 3.0])
    xs = jax.random.normal(jax.random.key(0), (4000, 4)) * s
    exact = float(jnp.sum(jnp.log(s * jnp.sqrt(2 * jnp.pi * jnp.e))))
    assert float(ede.compute_entropy(xs)) == pytest.approx(exact, abs=0.1)
    assert float(ede.compute_entropy(xs[:6], estimator="knn")) == float(ede.compute_entropy(xs[:6]))


def test_unknown_domain_and_constraint_names():
    with pytest.raises(ValueError, match="known domains"):
        EnergyDiffusionEngine(domain="cyber", dimensions=256)
    ede = EnergyDiffusionEngine(energy_fn=bowl, dimensions=2)
    with pytest.raises(ValueError, match="known names"):
        sample_equilibrium(engine=ede, initial_state=np.zeros(2), constraints={"uptime": 0.999})
    with pytest.raises(ValueError, match="temperature > 0"):
        sample_equilibrium(engine=ede, initial_state=np.zeros(2), constraints={"entropy_min": 1.0})
    with pytest.raises(ValueError, match="engine"):
        sample_equilibrium(engine="ede", initial_state=np.zeros(2))


def test_entropy_min_violation_is_reported():
    ede = EnergyDiffusionEngine(energy_fn=bowl, dimensions=2)
    # At T = 0.01 the ensemble has S = ln(2 pi e 0.01) ~ -1.77 nats: entropy_min = 5 fails.
    with pytest.raises(ConstraintViolation, match="entropy"):
        sample_equilibrium(
            engine=ede,
            initial_state=np.zeros(2),
            constraints={"entropy_min": 5.0},
            temperature=0.01,
            num_steps=200,
        )


def test_domain_lookup_through_registry():
    import capsules
    from capsules import _base

    name = "zz_testdomain.quadratic"

    @capsules.register(name, "quadratic bowl for the engine test")
    def quadratic(dimensions: int = 3):
        return capsules.Capsule(
            name=name,
            energy_fn=lambda x: jnp.sum((x - 1.0) ** 2),
            init=lambda key, n: jax.random.normal(key, (n, dimensions)),
            decode=lambda x: {"x": np.asarray(x).tolist()},
            params={"dimensions": dimensions},
        )

    try:
        ede = EnergyDiffusionEngine(domain="zz_testdomain", dimensions=5)
        assert ede.capsule.params == {"dimensions": 5}
        best = ede.sample_equilibrium(np.zeros(5), num_steps=100)
        np.testing.assert_allclose(np.asarray(best), 1.0, atol=1e-3)
    finally:
        _base._REGISTRY.pop(name, None)


def test_diffusion_delegation():
    import idf_jax.thermo.diffusion  # noqa: F401  (a broken import must fail, not skip)
    from idf_jax import diffusion

    ede = EnergyDiffusionEngine(energy_fn=bowl, dimensions=3)
    x0 = jnp.ones(3)
    key = jax.random.key(0)
    np.testing.assert_allclose(
        np.asarray(ede.forward_diffuse(x0, 0.5, key)),
        np.asarray(diffusion.forward_diffuse(diffusion.VPSDE(), x0, 0.5, key)),
    )
    # Deterministic reverse step with score -grad E = -x: the probability-flow Euler step.
    sde = diffusion.VPSDE()
    got = ede.reverse_denoise(x0, 0.5, 0.01)
    ref = diffusion.reverse_denoise(sde, lambda x, t: -x, x0, 0.5, 0.01)
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-6)


def test_module_exports():
    assert set(engine_mod.DICT_CONSTRAINTS) >= {"energy_max", "entropy_min", "box"}
