"""adapt: dual-averaging step size and diagonal inverse mass over all chains."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import idf_jax as idf
from idf_jax.adaptation import _windows

SD = jnp.array([0.1, 1.0, 10.0, 3.0])


def gaussian(x):
    return 0.5 * jnp.sum((x / SD) ** 2)


def test_hmc_mass_matches_variances_and_acceptance_hits_target():
    x0 = jax.random.normal(jax.random.key(0), (64, 4))
    res = idf.adapt_run(
        lambda step_size, inverse_mass=None: idf.hmc(
            gaussian, step_size, 10, inverse_mass=inverse_mass
        ),
        jax.random.key(1),
        x0,
        400,
    )
    assert res.target_acceptance == pytest.approx(0.8)
    # The inverse mass estimates Var(x_i) = SD_i^2 from ~64 chains x ~300 steps
    # (correlated draws: effective sample ~ 1e3 or more, so sd of the ratio < ~10%).
    ratio = np.asarray(res.params["inverse_mass"]) / np.asarray(SD) ** 2
    np.testing.assert_allclose(ratio, 1.0, atol=0.3)
    # Acceptance over the final phase: within dual averaging's jitter of 0.8.
    assert abs(float(res.acceptance_rate) - 0.8) < 0.1
    # The returned sampler is built at those parameters and runs under sample().
    trace = idf.sample(res.sampler, jax.random.key(2), res.positions, 100)
    assert abs(float(jnp.mean(trace.stats["acceptance_rate"])) - 0.8) < 0.1


def test_mala_default_target_and_factory_convention():
    # MALA on a Gaussian: acceptance depends on eta / sd_min^2; the smallest scale (0.1)
    # limits eta to O(sd_min^2 d^(-1/3)) ~ 1e-2, far below the wide directions' 100.
    x0 = jax.random.normal(jax.random.key(0), (32, 4)) * SD[None, :]
    res = idf.adapt_run(lambda step_size: idf.mala(gaussian, step_size), jax.random.key(1), x0, 300)
    assert set(res.params) == {"step_size"}
    assert res.target_acceptance == pytest.approx(0.574)
    assert abs(float(res.acceptance_rate) - 0.574) < 0.1
    assert 1e-3 < res.params["step_size"] < 0.05


def test_unadjusted_sampler_is_refused_and_mass_only_mode():
    x0 = jax.random.normal(jax.random.key(0), (16, 4))
    with pytest.raises(ValueError, match="unadjusted"):
        idf.adapt(lambda step_size: idf.ula(gaussian, step_size), jax.random.key(1), x0, 50)
    # Mass only: step size kept, inverse mass adapted through the `mass` of BAOAB.
    res = idf.adapt_run(
        lambda step_size, inverse_mass=None: idf.underdamped_langevin(
            gaussian,
            step_size,
            1.0,
            mass=1.0 if inverse_mass is None else jax.tree.map(lambda m: 1.0 / m, inverse_mass),
        ),
        jax.random.key(1),
        x0,
        200,
        adapt_step_size=False,
        initial_step_size=0.05,
    )
    assert res.params["step_size"] == pytest.approx(0.05)
    assert res.params["inverse_mass"].shape == (4,)


def test_windows_layout_and_memory_constant():
    collect, end = _windows(1000)
    assert not collect[:150].any() and not collect[900:].any()
    assert collect[150:900].all()
    assert end.sum() >= 3 and end[899]
    c2, e2 = _windows(10)
    assert not c2.any() and not e2.any()


def test_bad_arguments():
    x0 = jnp.zeros((4, 2))
    with pytest.raises(ValueError, match="num_steps"):
        idf.adapt(lambda step_size: idf.mala(gaussian, step_size), jax.random.key(0), x0, 5)
    with pytest.raises(ValueError, match="target_acceptance"):
        idf.adapt(
            lambda step_size: idf.mala(lambda x: jnp.sum(x**2), step_size),
            jax.random.key(0),
            x0,
            20,
            1.5,
        )
    with pytest.raises(ValueError, match="inverse_mass"):
        idf.adapt(
            lambda step_size: idf.mala(lambda x: jnp.sum(x**2), step_size),
            jax.random.key(0),
            x0,
            20,
            adapt_mass=True,
        )
    with pytest.raises(ValueError, match="Sampler"):
        idf.adapt(lambda step_size: 3, jax.random.key(0), x0, 20)
