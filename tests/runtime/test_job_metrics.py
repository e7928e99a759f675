"""Prometheus metrics of the job engine: queue and worker gauges read at scrape time,
finished jobs counted by kind and status, pruned jobs counted."""

from __future__ import annotations

import time

from _runtime_helpers import API_KEY, NAME
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from idf_jax.runtime.service import ServiceConfig, create_app
from idf_jax.runtime.service.metrics import Metrics


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


class _FakeEngine:
    def __init__(self):
        self.values = {"queued": 3, "running": 2, "workers_alive": 1, "workers": 2}

    def stats(self):
        return dict(self.values, replaced=0)


def test_job_gauges_are_read_from_the_engine_when_scraped():
    m = Metrics()
    s = _samples(m.render().decode())
    assert s[("idf_jobs_queued", ())] == 0.0 and s[("idf_job_workers_alive", ())] == 0.0
    engine = _FakeEngine()
    m.bind_engine(lambda: engine)
    s = _samples(m.render().decode())
    assert s[("idf_jobs_queued", ())] == 3.0 and s[("idf_jobs_running", ())] == 2.0
    assert s[("idf_job_workers_alive", ())] == 1.0 and s[("idf_job_workers", ())] == 2.0
    engine.values["queued"] = 0
    assert _samples(m.render().decode())[("idf_jobs_queued", ())] == 0.0  # live, not cached
    m.job_finished("train", "timeout")
    m.job_finished("train", "timeout")
    s = _samples(m.render().decode())
    assert s[("idf_jobs_finished_total", (("kind", "train"), ("status", "timeout")))] == 2.0


def test_metrics_route_shows_the_queue_and_finished_jobs(tmp_path):
    cfg = ServiceConfig(
        api_keys=(API_KEY,),
        nvp_model_path=None,
        eil=False,
        state_dir=str(tmp_path),
        max_concurrent_jobs=1,
    )
    auth = {"Authorization": f"Bearer {API_KEY}"}
    app = create_app(cfg)
    with TestClient(app) as c:
        s = _samples(c.get("/metrics", headers=auth).text)
        assert s[("idf_job_workers", ())] == 1.0 and s[("idf_jobs_queued", ())] == 0.0
        assert s[("idf_jobs_running", ())] == 0.0
        engine = app.state.runtime["engine"]
        job = dict(capsule=NAME, params={"dim": 2}, chains=2, steps=10)
        first = engine.submit("sample", job)  # the slot takes it and starts a worker...
        second = engine.submit("sample", job)  # ...while this one waits in the queue
        t_end = time.monotonic() + 10
        while engine.stats()["queued"] != 1:
            assert time.monotonic() < t_end
            time.sleep(0.01)
        s = _samples(c.get("/metrics", headers=auth).text)
        assert s[("idf_jobs_queued", ())] == 1.0
        assert engine.cancel(second) and engine.cancel(first)
        assert engine.wait_sync(first, 60).status == "cancelled"
        s = _samples(c.get("/metrics", headers=auth).text)
        key = ("idf_jobs_finished_total", (("kind", "sample"), ("status", "cancelled")))
        assert s[key] == 2.0 and s[("idf_jobs_queued", ())] == 0.0
        assert s[("idf_jobs_pruned_total", ())] == 0.0
