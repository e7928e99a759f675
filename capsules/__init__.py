"""Domain capsules: energies as pure closures (`capsules.<domain>.<name>(**params) -> Capsule`).

Capsules know nothing of samplers; samplers know nothing of domains.
"""

from __future__ import annotations

import importlib

from ._base import Capsule as Capsule
from ._base import CapsuleInfo as CapsuleInfo
from ._base import register as register

DOMAINS = ("molecular", "plasma", "biomedical", "lattice", "enterprise", "market", "creative")


def _load_all() -> None:
    for domain in DOMAINS:
        try:
            importlib.import_module(f"{__name__}.{domain}")
        except ModuleNotFoundError as e:  # a domain module not written yet
            if e.name != f"{__name__}.{domain}":
                raise


def registry() -> dict[str, CapsuleInfo]:
    """All registered capsules by name."""
    from ._base import _REGISTRY

    _load_all()
    return dict(sorted(_REGISTRY.items()))


def available() -> dict[str, str]:
    """{name: one-line description} of every capsule."""
    return {name: info.description for name, info in registry().items()}


def make(name: str, **params) -> Capsule:
    """Build a capsule by registry name, e.g. make("molecular.lennard_jones_cluster", n=13)."""
    reg = registry()
    if name not in reg:
        raise ValueError(f"unknown capsule {name!r}; known capsules: {', '.join(reg) or 'none'}")
    return reg[name].factory(**params)
