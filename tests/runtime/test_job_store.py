"""The job engine's parts that need no worker process: the SQLite job table, budgets,
the state directory, and the checks made before a job is queued."""

from __future__ import annotations

import os

import _runtime_helpers  # noqa: F401 - registers testing.gaussian
import pytest

from idf_jax.runtime.service.config import Limits
from idf_jax.runtime.service.engine import Budgets, JobStore
from idf_jax.runtime.service.engine.tasks import check_capsule, check_params
from idf_jax.runtime.service.jobs import JobError
from idf_jax.runtime.state import state_dir


def test_job_rows_survive_reopening_and_large_results_go_to_files(tmp_path):
    path = tmp_path / "jobs" / "jobs.sqlite3"
    store = JobStore(path, inline_limit=100)
    store.insert("a1", "sample", {"capsule": "x"}, {"wall_s": 1.0, "memory_mb": 2.0})
    store.mark_running("a1")
    store.set_progress("a1", 0.5)
    store.finish("a1", "done", result={"values": list(range(100))})
    store.insert("b2", "sample", {}, {})
    store.finish("b2", "timeout", error={"field": "budgets.wall_s", "message": "m", "status": 504})
    store.close()

    again = JobStore(path, inline_limit=100)
    a = again.get("a1")
    assert a is not None and a.status == "done" and a.progress == 1.0
    assert a.result == {"values": list(range(100))}
    assert (tmp_path / "jobs" / "results" / "a1.json").is_file()  # over inline_limit
    b = again.get("b2")
    assert b is not None and b.status == "timeout" and b.error and b.error["status"] == 504
    assert [r.id for r in again.list(status="timeout")] == ["b2"]
    assert again.get("nope") is None
    assert oct(os.stat(tmp_path / "jobs" / "results" / "a1.json").st_mode & 0o777) == "0o600"


def test_a_live_owner_keeps_its_running_jobs(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    store = JobStore(path)
    store.insert("c3", "sample", {}, {})
    store.mark_running("c3")
    other = JobStore(path)  # a second engine on the same file, this process still alive
    rec = other.get("c3")
    assert rec is not None and rec.status == "running"


def test_budgets_and_checks_name_the_field():
    top = Budgets(wall_s=10, memory_mb=100)
    with pytest.raises(JobError) as e:
        Budgets(wall_s=20, memory_mb=1).capped(top)
    assert e.value.field == "budgets.wall_s" and e.value.status == 413
    with pytest.raises(JobError) as e:
        Budgets(wall_s=float("nan"), memory_mb=1)
    assert e.value.field == "budgets.wall_s" and e.value.status == 422
    with pytest.raises(JobError) as e:
        check_capsule("no.such", {})
    assert e.value.field == "capsule"
    with pytest.raises(JobError) as e:
        check_capsule("testing.gaussian", {"bogus": 1})
    assert e.value.field == "params" and "bogus" in e.value.message
    check_capsule("testing.gaussian", {"dim": 2})
    with pytest.raises(JobError) as e:
        check_params({"cov": [[1.0] * 10] * 10}, Limits(max_dimensions=50))
    assert e.value.field == "params.cov" and e.value.status == 413


def test_state_dir_order(tmp_path):
    assert state_dir(tmp_path / "a") == tmp_path / "a"
    assert state_dir(None, env={"IDF_STATE_DIR": str(tmp_path / "b")}) == tmp_path / "b"
    assert state_dir(None, env={"XDG_STATE_HOME": str(tmp_path)}) == tmp_path / "idf-jax"
    assert (tmp_path / "b").is_dir()
