"""Signed anchors of the proof ledger: (record count, head hash, time), signed with Ed25519.

An anchor is a small JSON document,

    {"format": "idf-eil-anchor/v1", "count": N, "head_hash": H, "time": T,
     "public_key_sha256": F, "signature": S}

where ``S`` signs the canonical JSON of the other fields with the ledger's key. Kept
anywhere outside the ledger (another machine, a ticket, a transparency log), it lets a
verifier detect what the ledger alone cannot: a file truncated (to 0 bytes too), wiped,
or rolled back to an older copy has fewer than ``N`` records, or a different record ``N``.
`idf_jax.eil.ledger.Ledger.verify(anchor=...)` and `verify_ledger_file` do that check.

`write_anchor(folder, anchor)` stores ``anchor-<count>.json`` and ``latest.json`` there
(atomically); `latest_anchor(folder)` reads the newest back.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .._io import atomic_write_json
from ._canonical import canonical_json
from .keys import fingerprint, sign, signature_ok

__all__ = ["FORMAT", "check_anchor", "latest_anchor", "load_anchor", "make_anchor", "write_anchor"]

FORMAT = "idf-eil-anchor/v1"
_FIELDS = ("format", "count", "head_hash", "time", "public_key_sha256")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _body(anchor: Mapping[str, Any]) -> bytes:
    return canonical_json({k: anchor[k] for k in _FIELDS}).encode()


def make_anchor(
    key: Ed25519PrivateKey, count: int, head_hash: str, *, now: float | None = None
) -> dict[str, Any]:
    """A signed anchor of a ledger holding `count` records ending with `head_hash`."""
    anchor: dict[str, Any] = {
        "format": FORMAT,
        "count": int(count),
        "head_hash": str(head_hash),
        "time": float(time.time() if now is None else now),
        "public_key_sha256": fingerprint(key),
    }
    anchor["signature"] = sign(key, "anchor", _body(anchor))
    return anchor


def check_anchor(anchor: Mapping[str, Any], public_key: Ed25519PublicKey) -> tuple[int, str]:
    """(count, head_hash) of an anchor signed by `public_key`; ValueError saying what is
    wrong (a missing field, another key's anchor, a bad signature) otherwise."""
    if not isinstance(anchor, Mapping):
        raise ValueError(f"anchor must be a JSON object, got {type(anchor).__name__}")
    missing = [k for k in (*_FIELDS, "signature") if k not in anchor]
    if missing:
        raise ValueError(f"anchor lacks fields {missing}")
    if anchor["format"] != FORMAT:
        raise ValueError(f"anchor format is {anchor['format']!r}, expected {FORMAT!r}")
    count, head = anchor["count"], anchor["head_hash"]
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"anchor count must be an integer >= 0, got {count!r}")
    if not isinstance(head, str) or not _HEX64.match(head):
        raise ValueError("anchor head_hash must be 64 lowercase hex characters")
    if not isinstance(anchor["time"], int | float) or isinstance(anchor["time"], bool):
        raise ValueError("anchor time must be a number (seconds since the epoch)")
    if anchor["public_key_sha256"] != fingerprint(public_key):
        theirs, ours = str(anchor["public_key_sha256"])[:12], fingerprint(public_key)[:12]
        raise ValueError(
            f"anchor was signed by another key (public_key_sha256 {theirs}..., this key {ours}...)"
        )
    sig = anchor["signature"]
    if not isinstance(sig, str) or not signature_ok(public_key, "anchor", _body(anchor), sig):
        raise ValueError("anchor signature does not verify: the anchor was altered or forged")
    return count, head


def load_anchor(source: str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
    """An anchor from a mapping, JSON text, or the path of a JSON file."""
    if isinstance(source, Mapping):
        return dict(source)
    text = str(source)
    if not text.lstrip().startswith("{"):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"anchor file {text!r} does not exist")
        text = path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"anchor is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ValueError("anchor must be a JSON object")
    return data


def write_anchor(
    folder: str | os.PathLike, anchor: Mapping[str, Any], *, history: bool = True
) -> Path:
    """Store `anchor` as ``latest.json`` in `folder`, and (`history`) as
    ``anchor-<count>.json``; returns the path written last."""
    folder = Path(folder)
    if not folder.exists():
        folder.mkdir(mode=0o700, parents=True)
    path = folder / "latest.json"
    if history:
        path = folder / f"anchor-{int(anchor['count']):012d}.json"
        atomic_write_json(path, dict(anchor))
    atomic_write_json(folder / "latest.json", dict(anchor))
    return path


def latest_anchor(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The anchor in ``folder/latest.json``, or None when there is none yet."""
    path = Path(folder) / "latest.json"
    return load_anchor(path) if path.is_file() else None
