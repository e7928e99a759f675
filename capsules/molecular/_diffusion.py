"""The blueprint's `MolecularDiffusionCapsule`: anneal + relax a molecule to its
lowest-energy structure found, under MMFF94."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import idf_jax as idf

from ._covalent import from_smiles, resolve
from ._molecule import Molecule
from ._relax import relax

__all__ = ["MolecularDiffusionCapsule", "KB_KCAL_MOL_K"]

KB_KCAL_MOL_K = 0.0019872043
"""Boltzmann constant in kcal/(mol K) (CODATA 2018 R / 4184)."""


class MolecularDiffusionCapsule:
    """Generate low-energy molecular structures by annealed Langevin sampling + L-BFGS.

    `generate_equilibrium_structure(formula_or_smiles, temperature=300)`:
    1. resolves a formula (unambiguous ones only) or a SMILES, builds the MMFF94 capsule;
    2. embeds `num_chains` ETKDG conformers;
    3. anneals every chain with MALA (`idf.mala` driven by `idf.sample`) through
       temperatures k_B T_s, T_s geometric from `hot_factor * temperature` down to
       `temperature` over `num_stages` stages of `steps_per_stage` steps;
    4. relaxes every chain's final state (and its starting conformer) with L-BFGS and
       returns the lowest-energy minimum as a `Molecule` (angstrom, kcal/mol).
    All of it runs in float64.
    """

    def __init__(
        self,
        num_chains: int = 8,
        num_stages: int = 3,
        steps_per_stage: int = 200,
        hot_factor: float = 4.0,
        step_size: float = 2e-4,
        relax_steps: int = 2000,
        seed: int = 0,
    ):
        for name, v in (
            ("num_chains", num_chains),
            ("num_stages", num_stages),
            ("steps_per_stage", steps_per_stage),
            ("relax_steps", relax_steps),
        ):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not hot_factor >= 1.0:
            raise ValueError(f"hot_factor must be >= 1, got {hot_factor!r}")
        if not step_size > 0:
            raise ValueError(f"step_size must be positive (A^2 mol/kcal), got {step_size!r}")
        self.num_chains = num_chains
        self.num_stages = num_stages
        self.steps_per_stage = steps_per_stage
        self.hot_factor = float(hot_factor)
        self.step_size = float(step_size)
        self.relax_steps = relax_steps
        self.seed = seed
        self.last_run: dict = {}

    def generate_equilibrium_structure(
        self, formula_or_smiles: str, temperature: float = 300.0, *, key=None
    ) -> Molecule:
        """Lowest-energy structure found for a formula or SMILES at `temperature` (K)."""
        if not np.isfinite(temperature) or temperature <= 0:
            raise ValueError(f"temperature must be positive (kelvin), got {temperature!r}")
        smiles = resolve(formula_or_smiles)
        cap = from_smiles(smiles)
        key = jax.random.key(self.seed) if key is None else key
        k_init, k_run = jax.random.split(key)
        kt_final = KB_KCAL_MOL_K * float(temperature)
        kts = kt_final * self.hot_factor ** np.linspace(1.0, 0.0, self.num_stages)
        with jax.enable_x64(True):
            x0 = jnp.asarray(cap.init(k_init, self.num_chains), jnp.float64)
            x = x0
            stage_energies = []
            for s, kt in enumerate(kts):
                sampler = idf.mala(cap.energy_fn, step_size=self.step_size, temperature=kt)
                trace = idf.sample(
                    sampler,
                    jax.random.fold_in(k_run, s),
                    x,
                    self.steps_per_stage,
                    thin=self.steps_per_stage,
                )
                x = trace.final_state.position
                stage_energies.append(np.asarray(trace.energies[:, -1]))
                acc = np.asarray(trace.stats["acceptance_rate"])
            res = relax(cap.energy_fn, jnp.concatenate([x, x0]), max_steps=self.relax_steps)
            e = np.asarray(res.energy)
            e = np.where(np.isfinite(e), e, np.inf)
            best = int(np.argmin(e))
            mol = cap.decode(np.asarray(res.position[best]))
        self.last_run = {
            "smiles": smiles,
            "temperatures_kcal_mol": kts.tolist(),
            "stage_final_energies": [s.tolist() for s in stage_energies],
            "final_acceptance_rate": acc.tolist(),
            "relaxed_energies": e.tolist(),
            "relaxed_grad_norm": np.asarray(res.grad_norm).tolist(),
            "best_index": best,
        }
        return mol
