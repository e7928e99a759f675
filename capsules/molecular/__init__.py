"""Molecular capsules: Lennard-Jones clusters and covalent molecules under MMFF94.

- `lennard_jones_cluster(n, epsilon, sigma)`: LJ_n in reduced units, hand-derived force.
- `from_smiles(smiles)`, `from_formula(formula)`: MMFF94 (RDKit parameters, JAX energy).
- `MolecularDiffusionCapsule().generate_equilibrium_structure(formula_or_smiles, T)`.
"""

from ._lj import LJ_GLOBAL_MINIMA as LJ_GLOBAL_MINIMA
from ._lj import lennard_jones_cluster as lennard_jones_cluster
from ._lj import lj_energy as lj_energy
from ._lj import lj_energy_autodiff as lj_energy_autodiff
from ._molecule import Molecule as Molecule
