"""Canonical JSON (private): the one byte form that the ledger hashes and signs."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["canonical_json"]


def canonical_json(obj: Any) -> str:
    """Deterministic JSON: sorted keys, no spaces, finite floats only."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
