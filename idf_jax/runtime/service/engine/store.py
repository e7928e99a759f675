"""The job table: one SQLite file in the state directory (`jobs.sqlite3`).

A row per job: id, kind, status, progress, created / started / finished (Unix seconds),
the request payload, the budgets, the result (JSON; a file under `results/` when larger
than `inline_limit` bytes) and the error. Rows survive restarts; a job that was queued or
running when its process stopped (same host, process gone) is marked `failed`
("interrupted") on open; jobs of a live process sharing the file are left alone.
Finished jobs are pruned by `prune(max_age_s, max_rows)` (their result files with them);
the engine calls it at start and periodically. Thread-safe: one connection, a lock, WAL
journal.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Literal

from ...._io import atomic_write_bytes, jsonable

__all__ = ["FINISHED", "JobRecord", "JobStatus", "JobStore"]

JobStatus = Literal["queued", "running", "done", "failed", "cancelled", "timeout", "out_of_memory"]
FINISHED: frozenset[str] = frozenset({"done", "failed", "cancelled", "timeout", "out_of_memory"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    payload TEXT NOT NULL,
    budgets TEXT NOT NULL,
    result TEXT,
    result_path TEXT,
    error TEXT,
    owner TEXT
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished);
"""


@dataclasses.dataclass(frozen=True)
class JobRecord:
    """A job as stored. `result` is the finished job's JSON result (None until done);
    `error` is {"field", "message", "status"} for a job that did not finish."""

    id: str
    kind: str
    status: JobStatus
    progress: float
    created: float
    started: float | None
    finished: float | None
    payload: dict[str, Any]
    budgets: dict[str, Any]
    result: Any = None
    error: dict[str, Any] | None = None

    @property
    def finished_ok(self) -> bool:
        return self.status == "done"

    def public(self, *, with_result: bool = True) -> dict[str, Any]:
        """The JSON answer of GET /v1/jobs/{id}."""
        out = {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "progress": self.progress,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "budgets": self.budgets,
            "error": self.error,
        }
        if with_result:
            out["result"] = self.result
        return out


class JobStore:
    """The SQLite job table at `path` (see the module)."""

    def __init__(self, path: str | Path, *, inline_limit: int = 1_000_000):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.results_dir = self.path.parent / "results"
        self.inline_limit = inline_limit
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{_started(os.getpid())}"
        with self._lock:
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            rows = self._db.execute(
                "SELECT id, owner FROM jobs WHERE status IN ('queued', 'running')"
            ).fetchall()
            err = json.dumps(
                {
                    "field": "job",
                    "message": "interrupted: the service stopped before the job finished",
                    "status": 503,
                }
            )
            for jid, owner in rows:
                if _gone(owner):
                    self._db.execute(
                        "UPDATE jobs SET status='failed', finished=?, error=? WHERE id=?",
                        (time.time(), err, jid),
                    )

    def insert(
        self, job_id: str, kind: str, payload: dict[str, Any], budgets: dict[str, Any]
    ) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs (id, kind, status, created, payload, budgets, owner) "
                "VALUES (?, ?, 'queued', ?, ?, ?, ?)",
                (job_id, kind, time.time(), json.dumps(payload), json.dumps(budgets), self.owner),
            )

    def mark_running(self, job_id: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET status='running', started=? WHERE id=?", (time.time(), job_id)
            )

    def set_progress(self, job_id: str, progress: float) -> None:
        with self._lock:
            self._db.execute("UPDATE jobs SET progress=? WHERE id=?", (float(progress), job_id))

    def finish(
        self,
        job_id: str,
        status: JobStatus,
        *,
        result: Any = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        """Record a job's end: its status, result (done) or error (otherwise)."""
        text = path = None
        if result is not None:
            text = json.dumps(jsonable(result), allow_nan=False)
            if len(text) > self.inline_limit:
                p = self.results_dir / f"{job_id}.json"
                atomic_write_bytes(p, text.encode(), mode=0o600)
                text, path = None, str(p)
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET status=?, finished=?, progress=CASE WHEN ?='done' THEN 1.0 "
                "ELSE progress END, result=?, result_path=?, error=? WHERE id=?",
                (
                    status,
                    time.time(),
                    status,
                    text,
                    path,
                    json.dumps(error) if error is not None else None,
                    job_id,
                ),
            )

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, kind, status, progress, created, started, finished, payload, "
                "budgets, result, result_path, error FROM jobs WHERE id=?",
                (job_id,),
            ).fetchone()
        return None if row is None else _record(row)

    def list(self, *, limit: int = 100, status: str | None = None) -> list[JobRecord]:
        """The newest `limit` jobs (optionally of one status), without loading large results."""
        q = (
            "SELECT id, kind, status, progress, created, started, finished, payload, budgets, "
            "NULL, NULL, error FROM jobs"
        )
        args: tuple[Any, ...] = ()
        if status is not None:
            q += " WHERE status=?"
            args = (status,)
        q += " ORDER BY created DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(q, (*args, int(limit))).fetchall()
        return [_record(r) for r in rows]

    def prune(self, max_age_s: float | None, max_rows: int | None) -> int:
        """Delete finished jobs that finished over `max_age_s` seconds ago, then the oldest
        finished jobs beyond the newest `max_rows` (None: no such bound), with their result
        files; queued and running jobs are never pruned. Returns the jobs deleted."""
        finished = tuple(sorted(FINISHED))
        marks = ",".join("?" * len(finished))
        doomed: list[tuple[str, str | None]] = []
        with self._lock:
            if max_age_s is not None:
                doomed += self._db.execute(
                    f"SELECT id, result_path FROM jobs WHERE status IN ({marks}) AND finished < ?",
                    (*finished, time.time() - max_age_s),
                ).fetchall()
            if max_rows is not None:
                gone = {jid for jid, _ in doomed}
                rows = self._db.execute(
                    f"SELECT id, result_path FROM jobs WHERE status IN ({marks}) "
                    "ORDER BY finished DESC, created DESC LIMIT -1 OFFSET ?",
                    (*finished, int(max_rows)),
                ).fetchall()
                doomed += [r for r in rows if r[0] not in gone]
            if doomed:
                self._db.executemany("DELETE FROM jobs WHERE id=?", [(jid,) for jid, _ in doomed])
        for _, path in doomed:
            if path:
                try:
                    Path(path).unlink()
                except OSError:
                    pass
        return len(doomed)

    def count(self) -> int:
        """Jobs in the table."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _started(pid: int) -> str:
    """The start time of process `pid` (clock ticks since boot; "" when unknown), so that
    a reused pid (a restarted container) is not taken for the process that owned a job."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return ""


def _gone(owner: str | None) -> bool:
    """True when the process that owned a job (host:pid:start) no longer runs on this host."""
    parts = (owner or "").rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return True
    host, pid, start = parts[0], int(parts[1]), parts[2]
    if host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _started(pid) != start


def _record(row: tuple) -> JobRecord:
    (jid, kind, status, progress, created, started, finished, payload, budgets, res, rpath, err) = (
        row
    )
    if rpath:
        try:
            result = json.loads(Path(rpath).read_text())
        except (OSError, ValueError):
            result = None
    else:
        result = json.loads(res) if res is not None else None
    return JobRecord(
        id=jid,
        kind=kind,
        status=status,
        progress=progress,
        created=created,
        started=started,
        finished=finished,
        payload=json.loads(payload),
        budgets=json.loads(budgets),
        result=result,
        error=json.loads(err) if err else None,
    )
