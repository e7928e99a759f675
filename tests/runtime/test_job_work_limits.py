"""The service's work limit counts gradient evaluations: HMC's leapfrog steps up front, a
"mams" job's tuned trajectory once its warm-up is done (before any draw)."""

from __future__ import annotations

import _runtime_helpers  # noqa: F401 - registers testing.gaussian
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _runtime_helpers import NAME

import idf_jax as idf
from idf_jax._checks import ArgumentError
from idf_jax.run.tuned import _mean_grads_per_transition
from idf_jax.runtime.service.config import Limits
from idf_jax.runtime.service.jobs import JobError, SampleJob, check_limits, run_sample


def test_hmc_work_counts_its_leapfrog_steps():
    limits = Limits(max_work=100_000)
    mala_job = SampleJob(capsule=NAME, sampler="mala", chains=10, steps=1000)
    check_limits(mala_job, 4, limits)  # 40,000 gradient evaluations x dimensions
    hmc_job = SampleJob(capsule=NAME, sampler="hmc", chains=10, steps=1000, num_integration_steps=5)
    with pytest.raises(JobError) as e:
        check_limits(hmc_job, 4, limits)  # 200,000
    assert e.value.field == "num_integration_steps" and e.value.status == 413
    assert "200000" in e.value.message


def test_mean_grads_per_transition_matches_what_the_sampler_spends():
    e = lambda x: 0.5 * jnp.sum(x**2)  # noqa: E731
    s = idf.mams(e, 0.3, 3.0)  # mean 10 steps, 2 gradients each (McLachlan)
    assert _mean_grads_per_transition(s) == pytest.approx(20.0, rel=1e-6)
    x0 = jnp.zeros((512, 3))
    trace = idf.sample(s, jax.random.key(0), x0, 40)
    spent = float(np.mean(np.asarray(trace.stats["num_grad_evals"])))
    assert spent == pytest.approx(20.0, rel=0.05)  # 20,480 jittered trajectory lengths
    assert _mean_grads_per_transition(idf.mams(e, 0.3, 3.0, jitter=False)) == 20.0
    assert _mean_grads_per_transition(idf.hmc(e, 0.1, 7)) == 7.0
    assert _mean_grads_per_transition(idf.mala(e, 0.1)) == 1.0


def test_sample_tuned_refuses_draws_over_max_grad_evals_before_drawing():
    e = lambda x: 0.5 * jnp.sum(x**2)  # noqa: E731
    x0 = jnp.zeros((8, 4))
    kw = dict(method="mams", num_warmup=200)
    ok = idf.sample_tuned(e, jax.random.key(1), x0, 50, max_grad_evals=10**9, **kw)
    spent = float(np.sum(np.asarray(ok.stats["sampling_grad_evals"])))
    assert spent > 8 * 50  # MAMS takes several gradients per transition
    with pytest.raises(ArgumentError) as err:
        idf.sample_tuned(e, jax.random.key(1), x0, 50, max_grad_evals=8 * 50, **kw)
    assert err.value.argument == "max_grad_evals" and "draw fewer" in str(err.value)
    with pytest.raises(ArgumentError) as err:
        idf.sample_tuned(e, jax.random.key(1), x0, 50, method="nuts", max_grad_evals=10**6)
    assert err.value.argument == "max_grad_evals"
    with pytest.raises(ArgumentError) as err:
        idf.sample_tuned(e, jax.random.key(1), x0, 50, max_grad_evals=0, **kw)
    assert err.value.argument == "max_grad_evals"


def test_a_mams_job_over_the_work_limit_is_a_413_naming_steps():
    job = SampleJob(capsule=NAME, params={"dim": 4}, sampler="mams", chains=8, steps=400)
    # 8 chains x 400 steps x 4 dimensions = 12,800 passes the up-front check, but the
    # tuned trajectories take several gradients per transition
    limits = Limits(max_work=20_000)
    with pytest.raises(JobError) as e:
        run_sample(job, limits=limits)
    assert e.value.field == "steps" and e.value.status == 413
    assert "gradient evaluations per transition" in e.value.message
    trace, _ = run_sample(job, limits=Limits(max_work=10**9))
    assert np.all(np.isfinite(np.asarray(trace.energies)))
