"""The blueprint's `MolecularDiffusionCapsule`: anneal (`idf.sample_equilibrium`) and
relax a molecule to the lowest-energy structure found, under MMFF94."""

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
    3. anneals every chain with `idf.sample_equilibrium` (adaptive MALA) for
       `num_steps` steps at k_B T, T geometric from `hot_factor * temperature` down to
       `temperature` (k_B in kcal/mol/K, so energies stay in kcal/mol);
    4. relaxes every chain (FIRE inside the annealer, then a float64 L-BFGS polish of
       `relax_steps` iterations to |grad E| <= 1e-6 kcal/mol/A) and returns the
       lowest-energy minimum as a `Molecule` (angstrom, kcal/mol).
    The annealing runs in float32, the polish and the reported energy in float64.
    """

    def __init__(
        self,
        num_chains: int = 8,
        num_steps: int = 600,
        hot_factor: float = 4.0,
        step_size: float | None = 2e-4,
        relax_steps: int = 2000,
        seed: int = 0,
    ):
        for name, v in (
            ("num_chains", num_chains),
            ("num_steps", num_steps),
            ("relax_steps", relax_steps),
        ):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not hot_factor >= 1.0:
            raise ValueError(f"hot_factor must be >= 1, got {hot_factor!r}")
        if step_size is not None and not step_size > 0:
            raise ValueError(f"step_size must be positive (A^2 mol/kcal), got {step_size!r}")
        self.num_chains = num_chains
        self.num_steps = num_steps
        self.hot_factor = float(hot_factor)
        self.step_size = None if step_size is None else float(step_size)
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
        # Annealing runs in float32 (the core annealer's dtype); the final L-BFGS polish
        # runs in float64, which is what the 1e-6 kcal/mol/A gradient tolerance needs.
        x0 = jnp.asarray(cap.init(k_init, self.num_chains), jnp.float32)
        res = idf.sample_equilibrium(
            cap.energy_fn,
            k_run,
            x0,
            num_steps=self.num_steps,
            schedule=idf.schedules.geometric(self.hot_factor * kt_final, kt_final),
            step_size=self.step_size,
            relax="fire",
            relax_steps=200,
        )
        annealed = np.asarray(res.position, dtype=np.float64)
        with jax.enable_x64(True):
            pol = relax(
                cap.energy_fn,
                jnp.asarray(annealed, jnp.float64),
                max_steps=self.relax_steps,
                gtol=1e-6,
            )
            e = np.asarray(pol.energy)
            positions = np.asarray(pol.position)
            grad_norm = np.asarray(pol.grad_norm)
        e = np.where(np.isfinite(e), e, np.inf)
        best = int(np.argmin(e))
        mol = cap.decode(positions[best])
        self.last_run = {
            "smiles": smiles,
            "temperature_kcal_mol": [self.hot_factor * kt_final, kt_final],
            "annealed_energies": np.asarray(res.energy).tolist(),
            "relaxed_energies": e.tolist(),
            "relaxed_grad_norm": grad_norm.tolist(),
            "acceptance_rate": np.asarray(res.acceptance_rate).tolist(),
            "best_index": best,
        }
        return mol
