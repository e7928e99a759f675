"""`Molecule`: what the molecular capsules decode to (elements, positions in angstrom,
energy), with XYZ output and conversion to an ASE `Atoms`."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from idf_jax._io import atomic_write_bytes

__all__ = ["Molecule"]


@dataclasses.dataclass(frozen=True)
class Molecule:
    """A decoded structure.

    Attributes:
        elements: element symbols, length n.
        positions: (n, 3) float64 coordinates, angstrom for covalent molecules
            (reduced units sigma for Lennard-Jones clusters, as `comment` says).
        energy: the capsule energy at `positions` (kcal/mol for MMFF94, eps for LJ).
        smiles: the SMILES the molecule was built from ('' when none).
        comment: free text written to the XYZ comment line.
    """

    elements: tuple[str, ...]
    positions: np.ndarray
    energy: float
    smiles: str = ""
    comment: str = ""

    def __post_init__(self):
        pos = np.asarray(self.positions, dtype=np.float64)
        elements = tuple(str(e) for e in self.elements)
        if pos.ndim != 2 or pos.shape[1] != 3 or pos.shape[0] != len(elements):
            raise ValueError(
                f"positions must be shaped ({len(elements)}, 3) to match elements, got {pos.shape}"
            )
        object.__setattr__(self, "positions", pos)
        object.__setattr__(self, "elements", elements)
        object.__setattr__(self, "energy", float(self.energy))

    @property
    def num_atoms(self) -> int:
        return len(self.elements)

    @property
    def formula(self) -> str:
        """Hill formula (C first, H second, then alphabetical; alphabetical without C)."""
        counts: dict[str, int] = {}
        for e in self.elements:
            counts[e] = counts.get(e, 0) + 1
        order = sorted(counts)
        if "C" in counts:
            order = (
                ["C"] + (["H"] if "H" in counts else []) + [e for e in order if e not in ("C", "H")]
            )
        return "".join(f"{e}{counts[e] if counts[e] > 1 else ''}" for e in order)

    def to_xyz(self) -> str:
        """XYZ text: atom count, a comment line (energy, SMILES), one line per atom."""
        head = f"energy={self.energy:.6f}"
        if self.smiles:
            head += f" smiles={self.smiles}"
        if self.comment:
            head += f" {self.comment}"
        lines = [str(self.num_atoms), head.replace("\n", " ")]
        lines += [
            f"{e:<2s} {x:15.8f} {y:15.8f} {z:15.8f}"
            for e, (x, y, z) in zip(self.elements, self.positions)
        ]
        return "\n".join(lines) + "\n"

    def write_xyz(self, path: str | os.PathLike) -> None:
        """Write `to_xyz()` to path atomically (a temporary file renamed into place)."""
        atomic_write_bytes(path, self.to_xyz().encode())

    def to_ase(self):
        """An `ase.Atoms` (needs the `molecular` extra); energy stored in atoms.info."""
        try:
            import ase
        except ImportError as e:  # pragma: no cover - ase is in the molecular extra
            raise ImportError("to_ase() needs ASE: pip install 'idf-jax[molecular]'") from e
        atoms = ase.Atoms(symbols=list(self.elements), positions=self.positions)
        atoms.info["energy"] = self.energy
        if self.smiles:
            atoms.info["smiles"] = self.smiles
        return atoms
