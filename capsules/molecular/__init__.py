"""Molecular capsules: Lennard-Jones clusters and covalent molecules under MMFF94.

- `lennard_jones_cluster(n, epsilon, sigma)`: LJ_n in reduced units, hand-derived force;
  its energy is an `LJEnergy` module (epsilon, sigma as leaves).
- `from_smiles(smiles)`, `from_formula(formula)`: MMFF94 (RDKit parameters, JAX energy);
  the energy is an `MMFFEnergy` module: tables and topology as array leaves, padded to
  a size `Bucket`, so molecules of one bucket share compiled code.
- `MolecularDiffusionCapsule().generate_equilibrium_structures(smiles_list, ...)`: many
  molecules x conformers annealed and relaxed (batched L-BFGS) per compiled call;
  `generate_equilibrium_structure(formula_or_smiles, T)` for one.
- `relax(energy_fn, x_batch)`, `relax_each(energies, x_batch)`: batched L-BFGS
  (`idf_jax.thermo.local_min`) to |grad E| < gtol, all states in one compiled loop.
"""

from ._batch import MMFFBatch as MMFFBatch
from ._batch import batch_parameters as batch_parameters
from ._batch import mmff_energy_batch as mmff_energy_batch
from ._batch import pad_positions as pad_positions
from ._conformers import ConformerSet as ConformerSet
from ._conformers import relax_conformers as relax_conformers
from ._covalent import AMBIGUOUS_FORMULAS as AMBIGUOUS_FORMULAS
from ._covalent import FORMULA_SMILES as FORMULA_SMILES
from ._covalent import embed_conformers as embed_conformers
from ._covalent import formula_to_smiles as formula_to_smiles
from ._covalent import from_formula as from_formula
from ._covalent import from_smiles as from_smiles
from ._diffusion import KB_KCAL_MOL_K as KB_KCAL_MOL_K
from ._diffusion import MolecularDiffusionCapsule as MolecularDiffusionCapsule
from ._energy import Bucket as Bucket
from ._energy import MMFFEnergy as MMFFEnergy
from ._energy import atom_bucket as atom_bucket
from ._energy import bucket_for as bucket_for
from ._energy import exact_bucket as exact_bucket
from ._energy import merge_buckets as merge_buckets
from ._energy import mmff_energy as mmff_energy
from ._energy import mmff_terms as mmff_terms
from ._energy import stack_energies as stack_energies
from ._lj import LJ_GLOBAL_MINIMA as LJ_GLOBAL_MINIMA
from ._lj import LJEnergy as LJEnergy
from ._lj import lennard_jones_cluster as lennard_jones_cluster
from ._lj import lj_energy as lj_energy
from ._lj import lj_energy_autodiff as lj_energy_autodiff
from ._mmff import MMFFParameters as MMFFParameters
from ._mmff import mmff_parameters as mmff_parameters
from ._molecule import Molecule as Molecule
from ._relax import RelaxResult as RelaxResult
from ._relax import relax as relax
from ._relax import relax_each as relax_each
