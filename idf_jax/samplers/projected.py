"""Projected Langevin: MALA whose proposals are mapped onto a feasible set.

x' = P(x - eta grad E(x) + sqrt(2 eta T) xi), accepted with the MALA probability computed
as if P were the identity. This is the right tool for *optimisation on manifolds*
(annealing on a sphere, a simplex, a box): every state is feasible and low energies are
found. It is **not** an exact sampler of exp(-E/T) restricted to the set: the projection
changes the proposal density and the Metropolis ratio does not correct for it (exact
constrained sampling needs e.g. RATTLE-type constrained HMC). One gradient per step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from jaxtyping import Array, PRNGKeyArray

from .._custom_types import FloatScalar
from ._base import EnergyFn, PyTree, Sampler, as_energy, as_param, check_positive
from .langevin import LangevinState, build_mala_kernel, langevin_init

__all__ = ["ProjectedLangevin", "projected_langevin"]


class ProjectedLangevin(Sampler):
    """Projected MALA as a PyTree (see `projected_langevin`)."""

    energy_fn: EnergyFn
    project: Callable[[PyTree], PyTree]
    step_size: Array
    temperature: Array
    is_adjusted: ClassVar[bool] = True

    def init(self, position: PyTree, key: PRNGKeyArray | None = None) -> LangevinState:
        del key
        return langevin_init(self.energy_fn, self.project(position))

    def step(self, key: PRNGKeyArray, state: LangevinState):
        kernel = build_mala_kernel(self.energy_fn, self.project)
        return kernel(key, state, self.step_size, self.temperature)


def projected_langevin(
    energy_fn: EnergyFn,
    project: Callable[[PyTree], PyTree],
    step_size: FloatScalar,
    temperature: FloatScalar = 1.0,
) -> ProjectedLangevin:
    """Projected MALA for optimisation on a feasible set (not an exact sampler; see module).

    Args:
        energy_fn: E(x) -> scalar.
        project: an exact map x -> P(x) onto the feasible set (idempotent).
        step_size: eta > 0.
        temperature: T > 0.
    """
    check_positive("step_size", step_size)
    check_positive("temperature", temperature)
    return ProjectedLangevin(
        as_energy(energy_fn),
        as_energy(project, "project"),
        as_param(step_size),
        as_param(temperature),
    )
