"""Append-only, hash-chained, Ed25519-signed proof ledger in SQLite.

Each record ``r_i`` stores ``seq``, ``kind`` ('prediction' or 'proof'),
``prediction_id``, a canonical-JSON ``payload``, ``created`` and

    prev_hash_i = hash_{i-1}            (64 zeros for the first record)
    hash_i      = SHA256(canonical_json(seq, kind, prediction_id, payload, created, prev_hash_i))
    sig_i       = Ed25519(key, "record:" hash_i)

A one-row ``head`` table holds ``(count, last hash, Ed25519(key, "head:count:hash"))`` and
is updated in the same transaction as the record, so deleting records at the tail is
detected too. What the file alone cannot show — a file truncated to 0 bytes, wiped, or
rolled back to an older copy, head row and all — a signed anchor kept elsewhere does:
``verify(anchor=...)`` (`idf_jax.eil.anchor`) reports a ledger with fewer records than the
anchor, or a different record at the anchor's position. SQLite triggers refuse UPDATE and
DELETE on the table; ``verify`` re-derives every hash and signature, so edits made by
going around the triggers (another tool, a raw file edit) are still found.

Anyone with the public key verifies offline: `verify_ledger_file(path, public_key,
anchor=...)` opens the file read-only and needs no secret (``idf ledger verify FILE
--public-key PEM --anchor ANCHOR``).

Crash safety: a record and the head move together in one ``BEGIN IMMEDIATE ...
COMMIT`` transaction on a WAL database with ``synchronous=FULL``; a writer killed at
any point leaves either both or neither.

Key: ``Ledger(path, key=...)`` or the environment variable ``IDF_EIL_LEDGER_KEY``, an
Ed25519 private key (`idf_jax.eil.keys`: PEM or a 32-byte hex seed). ``allow_dev_key=True``
uses the public development key — for tests and demos only; such ledgers prove nothing to
a third party. With neither, a ``ValueError`` is raised: there is no silent default.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ._canonical import canonical_json
from .anchor import check_anchor, make_anchor
from .keys import (
    DEV_SEED,
    KEY_ENV,
    PrivateKeyLike,
    PublicKeyLike,
    fingerprint,
    is_dev_key,
    load_public_key,
    resolve_signing_key,
    sign,
    signature_ok,
)
from .store import connect

__all__ = [
    "Ledger",
    "LedgerRecord",
    "VerifyResult",
    "DEV_KEY",
    "KEY_ENV",
    "canonical_json",
    "verify_ledger_file",
]

DEV_KEY = DEV_SEED
"""The seed of the public development key (`idf_jax.eil.keys.DEV_SEED`)."""
GENESIS = "0" * 64
_COLUMNS = "seq, kind, prediction_id, payload, created, prev_hash, hash, signature"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('prediction', 'proof')),
    prediction_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    created REAL NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    signature TEXT NOT NULL,
    UNIQUE (kind, prediction_id)
);
CREATE TABLE IF NOT EXISTS ledger_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    count INTEGER NOT NULL,
    hash TEXT NOT NULL,
    signature TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS ledger_no_update BEFORE UPDATE ON ledger
BEGIN SELECT RAISE(ABORT, 'ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS ledger_no_delete BEFORE DELETE ON ledger
BEGIN SELECT RAISE(ABORT, 'ledger is append-only'); END;
"""


@dataclass(frozen=True)
class LedgerRecord:
    seq: int
    kind: str
    prediction_id: str
    payload: dict
    created: float
    prev_hash: str
    hash: str
    signature: str


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of `Ledger.verify`: ok, number of records, and every problem found."""

    ok: bool
    count: int
    head_hash: str
    errors: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.ok


def _record_hash(seq, kind, prediction_id, payload_json, created, prev_hash) -> str:
    body = canonical_json(
        {
            "seq": seq,
            "kind": kind,
            "prediction_id": prediction_id,
            "payload": payload_json,
            "created": repr(float(created)),
            "prev_hash": prev_hash,
        }
    )
    return hashlib.sha256(body.encode()).hexdigest()


class Ledger:
    """The append-only proof ledger (see module docstring)."""

    def __init__(
        self, path: str, key: PrivateKeyLike | None = None, *, allow_dev_key: bool = False
    ):
        self.path = path
        self._key = resolve_signing_key(key, allow_dev_key)
        self.public_key: Ed25519PublicKey = self._key.public_key()
        self.is_dev_key = is_dev_key(self._key)
        self.key_fingerprint = fingerprint(self._key)
        self._lock = threading.Lock()
        self._conn = connect(path)
        self._conn.executescript(_SCHEMA)

    # -- writing ------------------------------------------------------------------
    def append(self, kind: str, prediction_id: str, payload: dict) -> LedgerRecord | None:
        """Append one record; return it, or None if (kind, prediction_id) already exists."""
        if kind not in ("prediction", "proof"):
            raise ValueError(f"kind must be 'prediction' or 'proof', got {kind!r}")
        if not isinstance(prediction_id, str) or not prediction_id:
            raise ValueError("prediction_id must be a non-empty string")
        payload_json = canonical_json(payload)
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                dup = conn.execute(
                    "SELECT 1 FROM ledger WHERE kind = ? AND prediction_id = ?",
                    (kind, prediction_id),
                ).fetchone()
                if dup:
                    conn.execute("ROLLBACK")
                    return None
                row = conn.execute("SELECT count, hash FROM ledger_head WHERE id = 1").fetchone()
                count, prev = row if row else (0, GENESIS)
                seq = count + 1
                created = time.time()
                h = _record_hash(seq, kind, prediction_id, payload_json, created, prev)
                sig = sign(self._key, "record", h.encode())
                conn.execute(
                    "INSERT INTO ledger (seq, kind, prediction_id, payload, created, prev_hash,"
                    " hash, signature) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (seq, kind, prediction_id, payload_json, created, prev, h, sig),
                )
                self._between_insert_and_head()
                conn.execute(
                    "INSERT INTO ledger_head (id, count, hash, signature) VALUES (1, ?, ?, ?)"
                    " ON CONFLICT(id) DO UPDATE SET count = excluded.count,"
                    " hash = excluded.hash, signature = excluded.signature",
                    (seq, h, sign(self._key, "head", f"{seq}:{h}".encode())),
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        return LedgerRecord(seq, kind, prediction_id, payload, created, prev, h, sig)

    def _between_insert_and_head(self):
        """Hook for crash tests (a writer killed inside the transaction); no-op."""

    # -- reading ------------------------------------------------------------------
    def get(self, kind: str, prediction_id: str) -> LedgerRecord | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM ledger WHERE kind = ? AND prediction_id = ?",
                (kind, prediction_id),
            ).fetchone()
        if row is None:
            return None
        return LedgerRecord(row[0], row[1], row[2], json.loads(row[3]), *row[4:])

    def records(self) -> list[LedgerRecord]:
        with self._lock:
            rows = self._conn.execute(f"SELECT {_COLUMNS} FROM ledger ORDER BY seq").fetchall()
        return [LedgerRecord(r[0], r[1], r[2], json.loads(r[3]), *r[4:]) for r in rows]

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0]

    def head(self) -> tuple[int, str]:
        """(count, hash of the last record): publish it elsewhere as an external anchor."""
        with self._lock:
            row = self._conn.execute("SELECT count, hash FROM ledger_head WHERE id = 1").fetchone()
        return (0, GENESIS) if row is None else (int(row[0]), row[1])

    def anchor(self, *, now: float | None = None) -> dict[str, Any]:
        """A signed anchor of the current head (`idf_jax.eil.anchor`): publish it."""
        count, head = self.head()
        return make_anchor(self._key, count, head, now=now)

    # -- verification -------------------------------------------------------------
    def verify(
        self,
        expected_head: tuple[int, str] | None = None,
        *,
        anchor: Mapping[str, Any] | None = None,
    ) -> VerifyResult:
        """Re-derive the chain; report every edited, reordered, inserted or deleted record,
        and (given a signed `anchor` or an `expected_head` (count, hash)) a ledger that is
        shorter than, or differs from, what was anchored."""
        with self._lock:
            rows = self._conn.execute(f"SELECT {_COLUMNS} FROM ledger ORDER BY seq").fetchall()
            head = self._conn.execute(
                "SELECT count, hash, signature FROM ledger_head WHERE id = 1"
            ).fetchone()
        return check_rows(rows, head, self.public_key, expected_head=expected_head, anchor=anchor)

    def close(self):
        with self._lock:
            self._conn.close()


def check_rows(
    rows: Sequence[tuple],
    head: tuple | None,
    public_key: Ed25519PublicKey,
    *,
    expected_head: tuple[int, str] | None = None,
    anchor: Mapping[str, Any] | None = None,
    errors: list[str] | None = None,
) -> VerifyResult:
    """Verify ledger rows (``seq .. signature``, in seq order) and the head row with
    `public_key` only, against an optional anchor / expected head (see `Ledger.verify`)."""
    errors = [] if errors is None else errors
    prev = GENESIS
    for i, (seq, kind, pid, payload, created, prev_hash, h, sig) in enumerate(rows, start=1):
        if seq != i:
            errors.append(f"record at position {i} has seq {seq}: records deleted or inserted")
        if prev_hash != prev:
            errors.append(f"record {seq}: prev_hash does not match the previous record")
        if _record_hash(seq, kind, pid, payload, created, prev_hash) != h:
            errors.append(f"record {seq}: content does not match its hash (edited)")
        if not signature_ok(public_key, "record", str(h).encode(), str(sig)):
            errors.append(f"record {seq}: bad signature (edited, or signed by another key)")
        prev = h
    n = len(rows)
    if head is None:
        if n:
            errors.append("ledger head is missing")
    else:
        hc, hh, hs = head
        if not signature_ok(public_key, "head", f"{hc}:{hh}".encode(), str(hs)):
            errors.append("ledger head has a bad signature")
        if hc != n or hh != prev:
            errors.append(
                f"ledger head says {hc} records ending {str(hh)[:12]}, found {n} ending "
                f"{prev[:12]}: records deleted at the tail or head rolled back"
            )
    marks: list[tuple[str, int, str]] = []
    if expected_head is not None:
        marks.append(("external anchor", int(expected_head[0]), str(expected_head[1])))
    if anchor is not None:
        try:
            ac, ah = check_anchor(anchor, public_key)
        except ValueError as e:
            errors.append(f"anchor refused: {e}")
        else:
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(anchor["time"])))
            marks.append((f"anchor of {when}", ac, ah))
    for what, ec, eh in marks:
        if n < ec:
            errors.append(
                f"ledger has {n} records, the {what} signed {ec}: records removed "
                "(truncated, wiped or rolled back to an older copy)"
            )
        elif ec > 0 and rows[ec - 1][6] != eh:
            errors.append(
                f"record {ec} does not match the {what}'s head hash: the ledger was rewritten "
                "or rolled back"
            )
        elif ec == 0 and eh != GENESIS:
            errors.append(f"the {what} has count 0 but a non-genesis head hash")
    return VerifyResult(not errors, n, prev, tuple(errors))


def verify_ledger_file(
    path: str | os.PathLike,
    public_key: PublicKeyLike,
    *,
    anchor: Mapping[str, Any] | None = None,
) -> VerifyResult:
    """Verify the ledger in the SQLite file `path` offline, with the public key only.

    Opened read-only; a missing file, a 0-byte file or one holding no ledger is reported
    as an error (with an anchor, also as records removed), never as an empty, valid ledger.
    """
    pub = load_public_key(public_key)
    path = Path(path)
    errors: list[str] = []
    rows: list[tuple] = []
    head = None
    if not path.is_file():
        errors.append(f"ledger file {str(path)!r} does not exist (deleted or wiped)")
    else:
        size = path.stat().st_size
        try:
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            try:
                rows = conn.execute(f"SELECT {_COLUMNS} FROM ledger ORDER BY seq").fetchall()
                head = conn.execute(
                    "SELECT count, hash, signature FROM ledger_head WHERE id = 1"
                ).fetchone()
            finally:
                conn.close()
        except sqlite3.DatabaseError as e:
            what = (
                "is empty (0 bytes: truncated or wiped)" if size == 0 else f"holds no ledger ({e})"
            )
            errors.append(f"ledger file {str(path)!r} {what}")
    return check_rows(rows, head, pub, anchor=anchor, errors=errors)
