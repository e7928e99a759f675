"""The blueprint's `MolecularDiffusionCapsule`: anneal and relax molecules to the
lowest-energy structures found under MMFF94, many molecules x conformers per compiled
call (`_conformers`)."""

from __future__ import annotations

import time

import jax
import numpy as np

from idf_jax._checks import as_key

from ._conformers import relax_conformers
from ._covalent import embed_conformers, resolve
from ._energy import bucket_for, merge_buckets
from ._mmff import mmff_parameters, parse_smiles
from ._molecule import Molecule

__all__ = ["MolecularDiffusionCapsule", "KB_KCAL_MOL_K"]

KB_KCAL_MOL_K = 0.0019872043
"""Boltzmann constant in kcal/(mol K) (CODATA 2018 R / 4184)."""


class MolecularDiffusionCapsule:
    """Generate low-energy molecular structures by annealed Langevin sampling + L-BFGS.

    `generate_equilibrium_structures(formulas_or_smiles, num_conformers, temperature)`:
    1. resolves every formula (unambiguous ones only) or SMILES and types it (MMFF94);
    2. embeds `num_conformers` ETKDG conformers per molecule (RDKit);
    3. anneals every conformer with MALA (`idf.mala`) for `num_steps` steps at k_B T,
       T geometric from `hot_factor * temperature` down to `temperature` (k_B in
       kcal/mol/K, so energies stay in kcal/mol), each chain's step size (initially
       `step_size`) steered to 0.57 acceptance, keeping the lowest-energy state visited
       (`num_steps=0`: no annealing, the relaxation starts from the ETKDG conformers);
    4. relaxes every conformer with batched L-BFGS for at most `relax_steps`
       iterations to |grad E| < `gtol` kcal/mol/A (default 1e-5: bond lengths within
       ~1e-8 A of the minimum; a conformer stops earlier where float64 rounding stalls
       the line search) and returns, per molecule, the lowest-energy minimum as a
       `Molecule` (angstrom, kcal/mol).
    Everything runs in float64. All molecules of a call share one padded size bucket,
    so a call compiles (annealing and the L-BFGS loop) only for a bucket and conformer
    count it has not seen; `generate_equilibrium_structure` is the one-molecule case.
    """

    def __init__(
        self,
        num_chains: int = 8,
        num_steps: int = 600,
        hot_factor: float = 4.0,
        step_size: float | None = 2e-4,
        relax_steps: int = 2000,
        seed: int = 0,
        gtol: float = 1e-5,
    ):
        for name, v, low in (
            ("num_chains", num_chains, 1),
            ("num_steps", num_steps, 0),
            ("relax_steps", relax_steps, 1),
        ):
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                kind = "a positive" if low else "a non-negative"
                raise ValueError(f"{name} must be {kind} integer, got {v!r}")
        if not hot_factor >= 1.0:
            raise ValueError(f"hot_factor must be >= 1, got {hot_factor!r}")
        if not gtol > 0:
            raise ValueError(f"gtol must be positive (kcal/mol/A), got {gtol!r}")
        if step_size is not None and not step_size > 0:
            raise ValueError(f"step_size must be positive (A^2 mol/kcal), got {step_size!r}")
        self.num_chains = num_chains
        self.num_steps = num_steps
        self.hot_factor = float(hot_factor)
        self.step_size = 2e-4 if step_size is None else float(step_size)
        self.relax_steps = relax_steps
        self.seed = seed
        self.gtol = float(gtol)
        self.last_run: dict = {}

    def generate_equilibrium_structure(
        self, formula_or_smiles: str, temperature: float = 300.0, *, key=None
    ) -> Molecule:
        """Lowest-energy structure found for a formula or SMILES at `temperature` (K)
        from `num_chains` conformers; `last_run` describes the run."""
        (mol,) = self.generate_equilibrium_structures(
            [formula_or_smiles], temperature=temperature, key=key
        )
        run = self.last_run
        self.last_run = {
            **run["molecules"][0],
            **{k: v for k, v in run.items() if k != "molecules"},
        }
        return mol

    def generate_equilibrium_structures(
        self,
        formulas_or_smiles: list[str],
        *,
        num_conformers: int | None = None,
        temperature: float = 300.0,
        key=None,
    ) -> list[Molecule]:
        """The lowest-energy structure found for every formula or SMILES, in order.

        num_conformers: ETKDG conformers (chains) per molecule (default `num_chains`).
        temperature: final annealing temperature in kelvin. key: PRNG key (default
        `jax.random.key(seed)`). `last_run["molecules"][i]` holds molecule i's
        conformer energies, gradient norms and acceptance rates.
        """
        if isinstance(formulas_or_smiles, str) or not formulas_or_smiles:
            raise ValueError("formulas_or_smiles must be a non-empty list of strings")
        num = self.num_chains if num_conformers is None else num_conformers
        if isinstance(num, bool) or not isinstance(num, int) or num < 1:
            raise ValueError(f"num_conformers must be a positive integer, got {num!r}")
        if not np.isfinite(temperature) or temperature <= 0:
            raise ValueError(f"temperature must be positive (kelvin), got {temperature!r}")
        key = jax.random.key(self.seed) if key is None else as_key(key)
        t0 = time.perf_counter()
        smiles = [resolve(q) for q in formulas_or_smiles]
        mols = [parse_smiles(s) for s in smiles]
        params = [mmff_parameters(m) for m in mols]
        params = [type(p)(**{**p.__dict__, "smiles": s}) for p, s in zip(params, smiles)]
        # ETKDG seeds from the key's bits, on the host (no device work before the run)
        rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())
        seeds = rng.integers(0, 2**31 - 1, size=len(mols))
        confs = [embed_conformers(m, num, int(s)) for m, s in zip(mols, seeds)]
        kt_final = KB_KCAL_MOL_K * float(temperature)
        temps = None
        if self.num_steps:
            temps = np.geomspace(self.hot_factor * kt_final, kt_final, self.num_steps)
        timings: dict = {"prepare": time.perf_counter() - t0}
        sets = relax_conformers(
            params,
            confs,
            key=key,
            temperatures=temps,
            step_size=self.step_size,
            relax_steps=self.relax_steps,
            gtol=self.gtol,
            timings=timings,
        )
        out, runs = [], []
        for p, cs in zip(params, sets):
            e = np.where(np.isfinite(cs.energies), cs.energies, np.inf)
            best = int(np.argmin(e))
            out.append(
                Molecule(
                    p.elements,
                    cs.positions[best],
                    float(cs.energies[best]),
                    smiles=p.smiles,
                    comment=f"MMFF94 kcal/mol {p.variant}",
                )
            )
            runs.append(
                {
                    "smiles": p.smiles,
                    "annealed_energies": cs.annealed_energies.tolist(),
                    "relaxed_energies": e.tolist(),
                    "relaxed_grad_norm": cs.grad_norms.tolist(),
                    "acceptance_rate": cs.acceptance_rate.tolist(),
                    "best_index": best,
                }
            )
        self.last_run = {
            "molecules": runs,
            "temperature_kcal_mol": [self.hot_factor * kt_final, kt_final],
            "bucket": merge_buckets([bucket_for(p) for p in params])._asdict(),
            "seconds": timings,
        }
        return out
