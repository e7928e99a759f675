"""Job retention: finished jobs past the retention age, or beyond the newest `max_rows`,
are pruned from the job table with their result files, at start and periodically; queued
and running jobs never are."""

from __future__ import annotations

import time

import pytest

from idf_jax.runtime.service import load_config
from idf_jax.runtime.service.engine import JobEngine, JobStatus, JobStore

DAY = 86400.0


def _job(store: JobStore, jid: str, status: JobStatus = "done", age_s: float = 0.0, result=None):
    store.insert(jid, "sample", {"capsule": "x"}, {"wall_s": 1, "memory_mb": 1})
    if status in ("queued", "running"):
        if status == "running":
            store.mark_running(jid)
    else:
        store.finish(jid, status, result=result if status == "done" else None)
    when = time.time() - age_s
    with store._lock:
        store._db.execute(
            "UPDATE jobs SET created=?, finished=CASE WHEN finished IS NULL THEN NULL ELSE ? END WHERE id=?",
            (when, when, jid),
        )


def test_prune_by_age_and_by_rows_removes_result_files(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite", inline_limit=10)
    _job(store, "old-big", age_s=8 * DAY, result={"values": list(range(100))})  # a file
    _job(store, "old-failed", "failed", age_s=9 * DAY)
    _job(store, "old-queued", "queued", age_s=30 * DAY)
    _job(store, "old-running", "running", age_s=30 * DAY)
    for i in range(5):
        _job(store, f"new-{i}", age_s=(5 - i) * 60.0, result={"i": i})
    big = tmp_path / "results" / "old-big.json"
    assert big.exists()
    assert store.prune(7 * DAY, None) == 2
    assert store.get("old-big") is None and store.get("old-failed") is None and not big.exists()
    assert store.get("old-queued") is not None and store.get("old-running") is not None
    # keep the newest 3 finished ones: new-0 and new-1 (the oldest) go
    assert store.prune(None, 3) == 2
    left = {r.id for r in store.list()}
    assert left == {"new-2", "new-3", "new-4", "old-queued", "old-running"}
    assert not list((tmp_path / "results").glob("new-0*"))
    assert store.prune(7 * DAY, 3) == 0  # nothing more to do
    store.close()


def test_engine_prunes_at_start_and_periodically(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    _job(store, "stale", age_s=2 * DAY)
    _job(store, "fresh", age_s=60.0)
    store.close()
    engine = JobEngine(tmp_path, workers=1, retention_s=DAY, max_rows=100, prune_interval_s=0.05)
    try:
        engine.start()  # no worker spawns before the first job
        assert engine.status("stale") is None and engine.status("fresh") is not None
        assert engine.pruned == 1
        _job(engine.store, "later", age_s=3 * DAY)
        t_end = time.monotonic() + 10
        while engine.status("later") is not None:
            assert time.monotonic() < t_end, "the periodic prune did not run"
            time.sleep(0.05)
        assert engine.pruned == 2 and engine.worker_pids() == [None]
    finally:
        engine.close()


def test_retention_config_keys():
    cfg = load_config(
        {"auth_disabled": True, "job_retention_days": 1.5, "job_max_rows": 50},
        env={},
    )
    assert cfg.job_retention_days == 1.5 and cfg.job_max_rows == 50
    assert cfg.job_prune_interval_s == 3600.0
    assert load_config({"auth_disabled": True}, env={}).job_retention_days == 7.0
    with pytest.raises(ValueError, match="job_retention_days"):
        load_config({"auth_disabled": True, "job_retention_days": 0}, env={})
    with pytest.raises(ValueError, match="job_max_rows"):
        load_config({"auth_disabled": True, "job_max_rows": 0}, env={})
