"""Jobs pick their sampler from the capsule's `state_kind`: block Gibbs for spin lattices."""

from __future__ import annotations

import numpy as np
import pytest

from capsules import lattice
from idf_jax.runtime.service.jobs import (
    EquilibriumJob,
    JobError,
    SampleJob,
    run_equilibrium,
    run_sample,
)


def test_spin_capsule_is_sampled_by_block_gibbs():
    # T = 3 (disordered, T_c ~ 2.27; short correlations): the energy per spin sits near
    # Onsager's value whatever gradient sampler the job names (integer spins have no
    # gradient); 80 draws of 256 spins, SE of the mean ~ 0.01
    job = SampleJob(
        capsule="lattice.ising",
        params={"L": 16},
        sampler="mala",
        chains=4,
        steps=400,
        burn_in=200,
        thin=10,
        temperature=3.0,
    )
    trace, cap = run_sample(job)
    assert cap.state_kind == "spins"
    assert trace.positions.dtype == np.int8 and trace.positions.shape == (4, 20, 16, 16)
    u = np.asarray(trace.energies, np.float64).mean() / 16**2
    assert abs(u - lattice.onsager_energy(3.0)) < 0.05
    assert float(np.mean(np.asarray(trace.stats["acceptance_rate"]))) == 1.0


def test_spin_capsule_errors_name_the_field():
    with pytest.raises(JobError) as e:
        run_sample(SampleJob(capsule="lattice.ising", params={"L": 5}, chains=2, steps=4))
    assert e.value.field == "params" and "even" in e.value.message
    with pytest.raises(JobError) as e:
        run_equilibrium(EquilibriumJob(capsule="lattice.ising", params={"L": 8}, chains=2))
    assert e.value.field == "capsule" and "continuous" in e.value.message
