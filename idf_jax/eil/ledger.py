"""Append-only, hash-chained, HMAC-signed proof ledger in SQLite.

Each record ``r_i`` stores ``seq``, ``kind`` ('prediction' or 'proof'),
``prediction_id``, a canonical-JSON ``payload``, ``created`` and

    prev_hash_i = hash_{i-1}            (64 zeros for the first record)
    hash_i      = SHA256(canonical_json(seq, kind, prediction_id, payload, created, prev_hash_i))
    sig_i       = HMAC-SHA256(key, hash_i)

A one-row ``head`` table holds ``(count, last hash, HMAC(key, "count:hash"))`` and is
updated in the same transaction as the record, so deleting records at the tail is
detected too (short of replaying an old head row, which only an external anchor —
``verify_ledger(expected_head=...)`` — can rule out). SQLite triggers refuse UPDATE
and DELETE on the table; ``verify`` re-derives every hash and signature, so edits
made by going around the triggers (another tool, a raw file edit) are still found.

Crash safety: a record and the head move together in one ``BEGIN IMMEDIATE ...
COMMIT`` transaction on a WAL database with ``synchronous=FULL``; a writer killed at
any point leaves either both or neither.

Key: ``Ledger(path, key=...)`` or the environment variable ``IDF_EIL_LEDGER_KEY``
(hex or text). ``allow_dev_key=True`` uses the public constant ``DEV_KEY`` — for tests
and demos only; such ledgers prove nothing to a third party. With neither, a
``ValueError`` is raised: there is no silent default.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from .store import connect

__all__ = ["Ledger", "LedgerRecord", "VerifyResult", "DEV_KEY", "KEY_ENV", "canonical_json"]

KEY_ENV = "IDF_EIL_LEDGER_KEY"
DEV_KEY = b"idf-eil-INSECURE-development-key"
GENESIS = "0" * 64

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


def canonical_json(obj: Any) -> str:
    """Deterministic JSON: sorted keys, no spaces, finite floats only."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _resolve_key(key: bytes | str | None, allow_dev_key: bool) -> bytes:
    if key is None:
        env = os.environ.get(KEY_ENV)
        if env:
            key = env
    if key is None:
        if allow_dev_key:
            return DEV_KEY
        raise ValueError(
            f"no ledger signing key: pass key=..., set ${KEY_ENV}, or pass "
            "allow_dev_key=True for an insecure development ledger"
        )
    if isinstance(key, str):
        try:
            key = bytes.fromhex(key) if len(key) % 2 == 0 and len(key) >= 32 else key.encode()
        except ValueError:
            key = key.encode()
    if not isinstance(key, bytes) or len(key) < 16:
        raise ValueError("ledger key must be at least 16 bytes")
    return key


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

    def __init__(self, path: str, key: bytes | str | None = None, *, allow_dev_key: bool = False):
        self.path = path
        self._key = _resolve_key(key, allow_dev_key)
        self.is_dev_key = self._key == DEV_KEY
        self._lock = threading.Lock()
        self._conn = connect(path)
        self._conn.executescript(_SCHEMA)

    # -- signing ------------------------------------------------------------------
    def _sign(self, message: str) -> str:
        return hmac.new(self._key, message.encode(), hashlib.sha256).hexdigest()

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
                sig = self._sign(h)
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
                    (seq, h, self._sign(f"{seq}:{h}")),
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
                "SELECT seq, kind, prediction_id, payload, created, prev_hash, hash, signature"
                " FROM ledger WHERE kind = ? AND prediction_id = ?",
                (kind, prediction_id),
            ).fetchone()
        if row is None:
            return None
        return LedgerRecord(row[0], row[1], row[2], json.loads(row[3]), *row[4:])

    def records(self) -> list[LedgerRecord]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, kind, prediction_id, payload, created, prev_hash, hash, signature"
                " FROM ledger ORDER BY seq"
            ).fetchall()
        return [LedgerRecord(r[0], r[1], r[2], json.loads(r[3]), *r[4:]) for r in rows]

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0]

    def head(self) -> tuple[int, str]:
        """(count, hash of the last record): publish it elsewhere as an external anchor."""
        with self._lock:
            row = self._conn.execute("SELECT count, hash FROM ledger_head WHERE id = 1").fetchone()
        return (0, GENESIS) if row is None else (int(row[0]), row[1])

    # -- verification -------------------------------------------------------------
    def verify(self, expected_head: tuple[int, str] | None = None) -> VerifyResult:
        """Re-derive the chain; report every edited, reordered, inserted or deleted record."""
        errors: list[str] = []
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, kind, prediction_id, payload, created, prev_hash, hash, signature"
                " FROM ledger ORDER BY seq"
            ).fetchall()
            head = self._conn.execute(
                "SELECT count, hash, signature FROM ledger_head WHERE id = 1"
            ).fetchone()
        prev = GENESIS
        for i, (seq, kind, pid, payload, created, prev_hash, h, sig) in enumerate(rows, start=1):
            if seq != i:
                errors.append(f"record at position {i} has seq {seq}: records deleted or inserted")
            if prev_hash != prev:
                errors.append(f"record {seq}: prev_hash does not match the previous record")
            expect = _record_hash(seq, kind, pid, payload, created, prev_hash)
            if expect != h:
                errors.append(f"record {seq}: content does not match its hash (edited)")
            if not hmac.compare_digest(self._sign(h), sig):
                errors.append(f"record {seq}: bad signature")
            prev = h
        n = len(rows)
        if head is None:
            if n:
                errors.append("ledger head is missing")
        else:
            hc, hh, hs = head
            if not hmac.compare_digest(self._sign(f"{hc}:{hh}"), hs):
                errors.append("ledger head has a bad signature")
            if hc != n or hh != prev:
                errors.append(
                    f"ledger head says {hc} records ending {hh[:12]}, found {n} ending "
                    f"{prev[:12]}: records deleted at the tail or head rolled back"
                )
        if expected_head is not None:
            ec, eh = expected_head
            if n < ec:
                errors.append(f"expected at least {ec} records (external anchor), found {n}")
            elif ec > 0 and rows[ec - 1][6] != eh:
                errors.append(f"record {ec} does not match the external anchor hash")
        return VerifyResult(not errors, n, prev, tuple(errors))

    def close(self):
        with self._lock:
            self._conn.close()
