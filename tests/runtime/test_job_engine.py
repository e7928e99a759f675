"""The job engine behind the service: jobs in worker processes, never on the event loop.

One real server (uvicorn in a thread, loopback sockets) with one worker and a queue of two
is shared by the module, since a worker's start-up (JAX import) costs seconds. Checked:
health probes answer in milliseconds while a long sampling request runs; a job over its
wall-time or memory budget is stopped, reported (`timeout`, `out_of_memory`) and its
worker replaced; DELETE and a client disconnect cancel; a full queue answers 429 with
Retry-After; the job table survives a restart.
"""

from __future__ import annotations

import socket
import threading
import time

import _engine_helpers  # noqa: F401 - registers testing.sleepy / testing.hog
import httpx
import pytest
import uvicorn
from _engine_helpers import HOG, SLEEPY
from _runtime_helpers import API_KEY, NAME

from idf_jax.runtime.service import Limits, ServiceConfig, create_app
from idf_jax.runtime.service.engine import JobStore

# a real server and worker processes: ~1 min on a busy 2-core machine
pytestmark = pytest.mark.slow

AUTH = {"Authorization": f"Bearer {API_KEY}"}
SMALL = dict(capsule=NAME, params={"dim": 2}, chains=2, steps=20, step_size=0.5)


def _config(state_dir) -> ServiceConfig:
    return ServiceConfig(
        api_keys=(API_KEY,),
        nvp_model_path=None,
        eil=False,
        state_dir=str(state_dir),
        max_concurrent_jobs=1,
        job_queue_size=2,
        job_wall_s=120.0,
        job_memory_mb=1024.0,
        limits=Limits(max_chains=512, max_steps=200_000, max_dimensions=256),
        prewarm_workers=True,
    )


class _Server:
    def __init__(self, config: ServiceConfig):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.app = create_app(config)
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.state_dir = config.state_dir
        self.client: httpx.Client  # set by the fixture

    def __enter__(self):
        self.thread.start()
        t_end = time.monotonic() + 60
        while time.monotonic() < t_end:
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError("server did not start")

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=60)


def _engine(srv: _Server):
    return srv.app.state.runtime["engine"]


def _wait_status(client, job_id, statuses, timeout=120.0):
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        body = client.get(f"/v1/jobs/{job_id}").json()
        if body["status"] in statuses:
            return body
        time.sleep(0.1)
    raise TimeoutError(f"job {job_id} still {body['status']}")


def _wait_worker(srv, timeout=120.0):
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if _engine(srv).worker_pids()[0] is not None:
            return _engine(srv).worker_pids()[0]
        time.sleep(0.1)
    raise TimeoutError("no worker")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    state = tmp_path_factory.mktemp("state")
    with _Server(_config(state)) as srv:
        _wait_worker(srv)
        with httpx.Client(base_url=srv.url, headers=AUTH, timeout=120) as c:
            srv.client = c
            yield srv


def test_health_answers_in_ms_while_a_long_sample_request_runs(server):
    c = server.client
    assert c.post("/v1/sample", json=SMALL).status_code == 200  # compiled once, warm
    long = dict(SMALL, params={"dim": 64}, chains=128, steps=60_000, thin=100)
    out: dict = {}

    def run():
        out["r"] = c.post("/v1/sample", json=long)

    t = threading.Thread(target=run)
    t.start()
    lat = []
    with httpx.Client(base_url=server.url, timeout=5) as probe:
        while t.is_alive() and len(lat) < 400:
            for path in ("/healthz", "/readyz"):
                t0 = time.perf_counter()
                r = probe.get(path)
                lat.append(time.perf_counter() - t0)
                assert r.status_code == 200
            time.sleep(0.02)
    t.join(timeout=300)
    assert out["r"].status_code == 200, out["r"].text
    assert out["r"].json()["summary"]["draws"] == 600
    assert len(lat) >= 20, "the job ended before the probes could measure anything"
    print("slowest probes (index, s):", sorted(enumerate(lat), key=lambda x: -x[1])[:5], len(lat))
    lat.sort()
    # milliseconds, not the job's duration; generous for a shared 2-core machine
    p50, p95 = lat[len(lat) // 2], lat[int(len(lat) * 0.95)]
    assert p50 < 0.05 and p95 < 0.1 and lat[-1] < 2.0, (p50, p95, lat[-1])


def test_time_budget_stops_the_job_and_replaces_the_worker(server):
    c = server.client
    pid = _wait_worker(server)
    r = c.post(
        "/v1/jobs",
        json={
            "kind": "sample",
            "payload": dict(SMALL, capsule=SLEEPY, params={}),
            "budgets": {"wall_s": 1.5},
        },
    )
    assert r.status_code == 202, r.text
    body = _wait_status(c, r.json()["id"], {"timeout", "done", "failed"})
    assert body["status"] == "timeout" and body["error"]["field"] == "budgets.wall_s"
    assert body["finished"] - body["started"] < 10
    assert _wait_worker(server) != pid  # replaced
    assert c.post("/v1/sample", json=SMALL).status_code == 200  # and working
    # over the service's own budget: 413 naming it
    r = c.post("/v1/jobs", json={"kind": "sample", "payload": SMALL, "budgets": {"wall_s": 1e6}})
    assert r.status_code == 413 and r.json()["detail"][0]["loc"][-1] == "budgets.wall_s"


def test_memory_budget_stops_the_job_and_replaces_the_worker(server):
    c = server.client
    pid = _wait_worker(server)
    job = dict(SMALL, capsule=HOG, params={"mb": 240, "seconds": 30})
    r = c.post("/v1/jobs", json={"kind": "sample", "payload": job, "budgets": {"memory_mb": 100}})
    body = _wait_status(c, r.json()["id"], {"out_of_memory", "done", "failed", "timeout"})
    assert body["status"] == "out_of_memory", body
    assert body["error"]["field"] == "budgets.memory_mb"
    assert _wait_worker(server) != pid
    assert _engine(server).stats()["replaced"] >= 1


def test_cancel_with_delete_and_by_disconnecting(server):
    c = server.client
    _wait_worker(server)
    r = c.post(
        "/v1/jobs", json={"kind": "sample", "payload": dict(SMALL, capsule=SLEEPY, params={})}
    )
    job_id = r.json()["id"]
    _wait_status(c, job_id, {"running"})
    queued = c.post("/v1/jobs", json={"kind": "sample", "payload": SMALL}).json()["id"]
    d = c.delete(f"/v1/jobs/{queued}").json()  # a queued job: cancelled at once
    assert d == {"id": queued, "cancelled": True, "status": "cancelled"}
    t0 = time.monotonic()
    d = c.delete(f"/v1/jobs/{job_id}").json()
    assert d["cancelled"] and d["status"] == "cancelled" and time.monotonic() - t0 < 15
    assert c.delete(f"/v1/jobs/{job_id}").json()["cancelled"] is False  # already finished
    assert c.get("/v1/jobs/" + "0" * 32).status_code == 404

    # a synchronous request whose client goes away: its job is cancelled
    _wait_worker(server)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            server.url + "/v1/sample",
            json=dict(SMALL, capsule=SLEEPY, params={}),
            headers=AUTH,
            timeout=2,
        )
    newest = c.get("/v1/jobs", params={"limit": 1}).json()[0]
    body = _wait_status(c, newest["id"], {"cancelled", "done", "failed", "timeout"}, timeout=30)
    assert body["status"] == "cancelled"


def test_cancel_takes_effect_during_a_mams_warm_up(server):
    """A "mams" job tunes in one compiled call before it draws anything (no progress yet);
    DELETE then stops it within the grace period by replacing its worker, and the next
    job runs."""
    c = server.client
    _wait_worker(server)
    tuned = dict(
        capsule=NAME,
        params={"dim": 32},
        chains=256,
        steps=60_000,
        burn_in=50_000,
        thin=100,
        sampler="mams",
    )
    job_id = c.post("/v1/jobs", json={"kind": "sample", "payload": tuned}).json()["id"]
    _wait_status(c, job_id, {"running"})
    time.sleep(1.0)
    body = c.get(f"/v1/jobs/{job_id}").json()
    assert body["status"] == "running" and body["progress"] == 0.0  # not drawing yet
    replaced = _engine(server).stats()["replaced"]
    t0 = time.monotonic()
    d = c.delete(f"/v1/jobs/{job_id}").json()
    assert d["cancelled"] and d["status"] == "cancelled" and time.monotonic() - t0 < 15
    assert _engine(server).stats()["replaced"] == replaced + 1
    after = c.post("/v1/jobs", json={"kind": "sample", "payload": SMALL}).json()["id"]
    assert _wait_status(c, after, {"done", "failed", "cancelled", "timeout"})["status"] == "done"


def test_full_queue_answers_429_with_retry_after(server):
    c = server.client
    _wait_worker(server)
    ids = [
        c.post(
            "/v1/jobs", json={"kind": "sample", "payload": dict(SMALL, capsule=SLEEPY, params={})}
        )
    ]
    _wait_status(c, ids[0].json()["id"], {"running"})
    ids += [c.post("/v1/jobs", json={"kind": "sample", "payload": SMALL}) for _ in range(2)]
    assert [r.status_code for r in ids] == [202, 202, 202]
    r = c.post("/v1/jobs", json={"kind": "sample", "payload": SMALL})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert c.post("/v1/sample", json=SMALL).status_code == 429
    for x in ids:
        c.delete(f"/v1/jobs/{x.json()['id']}")


def test_job_table_survives_a_restart(server, tmp_path):
    c = server.client
    _wait_worker(server)
    r = c.post("/v1/jobs", json={"kind": "sample", "payload": SMALL})
    done = _wait_status(c, r.json()["id"], {"done", "failed"})
    assert done["status"] == "done" and done["result"]["summary"]["chains"] == 2
    # a second service on the same state directory reads the finished job
    cfg = _config(server.state_dir)
    cfg = ServiceConfig(**{**cfg.__dict__, "prewarm_workers": False})
    with _Server(cfg) as srv2, httpx.Client(base_url=srv2.url, headers=AUTH) as c2:
        again = c2.get(f"/v1/jobs/{done['id']}").json()
    assert again["status"] == "done" and again["result"] == done["result"]
    # a job left running by a process that is gone is reported as interrupted
    store = JobStore(tmp_path / "jobs.sqlite3")
    store.insert("ab", "sample", SMALL, {"wall_s": 1, "memory_mb": 1})
    store.mark_running("ab")
    gone = store.owner.rsplit(":", 2)[0] + ":999999999:0"  # this host, no such process
    store._db.execute("UPDATE jobs SET owner=? WHERE id='ab'", (gone,))
    store.close()
    rec = JobStore(tmp_path / "jobs.sqlite3").get("ab")
    assert rec is not None and rec.status == "failed"
    assert rec.error is not None and "interrupted" in rec.error["message"]
