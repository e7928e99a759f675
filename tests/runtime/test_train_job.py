"""The `train` job kind: an NVP trained in a worker as `idf train` does, its checkpoint
written atomically under the state directory, with progress, cancellation and the request
checks (data inside the state directory, rows with the model's channels)."""

from __future__ import annotations

import numpy as np
import pytest
from _runtime_helpers import API_KEY
from fastapi.testclient import TestClient

from idf_jax.runtime.service import ServiceConfig, create_app
from idf_jax.runtime.service.engine import Budgets, JobEngine
from idf_jax.runtime.service.engine.train_task import check_train
from idf_jax.runtime.service.jobs import JobError

TINY = {
    "channels": ["cpu", "power"],
    "window": 6,
    "d_model": 8,
    "num_heads": 2,
    "num_layers": 1,
    "epochs": 2,
    "batch_size": 16,
    "units": {"cpu": "fraction", "power": "kW"},
}


def _rows(n=160, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    cpu = 0.5 + 0.3 * np.sin(2 * np.pi * t / 24) + 0.02 * rng.standard_normal(n)
    return [
        {"timestamp": 900 * i, "cpu": round(float(c), 5), "power": round(300 + 600 * float(c), 3)}
        for i, c in enumerate(cpu)
    ]


def _csv(path, rows):
    lines = ["timestamp,cpu,power"] + [f"{r['timestamp']},{r['cpu']},{r['power']}" for r in rows]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"nvp": TINY}, "data"),  # neither data nor rows
        ({"nvp": TINY, "data": "x.csv", "rows": _rows(4)}, "data"),  # both
        ({"nvp": TINY, "data": "../outside.csv"}, "data"),
        ({"nvp": TINY, "data": "missing.csv"}, "data"),
        ({"nvp": dict(TINY, checkpoint="/etc/x"), "rows": _rows(4)}, "nvp.checkpoint"),
        ({"nvp": dict(TINY, bogus=1), "rows": _rows(4)}, "nvp"),
        ({"nvp": dict(TINY, channels=[]), "rows": _rows(4)}, "nvp.channels"),
        ({"nvp": dict(TINY, channels=["cpu", "fan"]), "rows": _rows(4)}, "rows"),
        ({"nvp": TINY, "rows": [{"cpu": 1, "power": 2}, {"cpu": 1}]}, "rows.1"),
        ({"nvp": TINY, "rows": [{"cpu": "high", "power": 2}] * 2}, "rows.0.cpu"),
        ({"nvp": TINY, "rows": _rows(4), "name": "../evil"}, "name"),
    ],
)
def test_bad_train_requests_name_the_field(tmp_path, payload, field):
    with pytest.raises(JobError) as e:
        check_train(payload, tmp_path)
    assert e.value.field == field, e.value


def test_train_route_validates_before_queueing(tmp_path):
    cfg = ServiceConfig(
        api_keys=(API_KEY,), nvp_model_path=None, eil=False, state_dir=str(tmp_path)
    )
    auth = {"Authorization": f"Bearer {API_KEY}"}
    with TestClient(create_app(cfg)) as c:
        r = c.post(
            "/v1/jobs",
            json={"kind": "train", "payload": {"nvp": TINY, "data": "../x.csv"}},
            headers=auth,
        )
        assert r.status_code == 422 and "outside the state directory" in r.text
        r = c.post("/v1/jobs", json={"kind": "train", "payload": {"rows": []}}, headers=auth)
        assert r.status_code == 422 and "payload.nvp" in r.text
        assert c.app.state.runtime["engine"].worker_pids() == [None, None]  # nothing ran


# a worker process (JAX import) and a small training: ~30-60 s on a busy 2-core machine
@pytest.mark.slow
def test_train_job_writes_a_loadable_checkpoint_with_progress(tmp_path):
    import idf_jax.nvp as nvp

    (tmp_path / "data").mkdir()
    _csv(tmp_path / "data" / "s0.csv", _rows(seed=0))
    _csv(tmp_path / "data" / "s1.csv", _rows(seed=1))
    engine = JobEngine(tmp_path, workers=1, budgets=Budgets(wall_s=300, memory_mb=2048))
    try:
        events = []
        job = engine.submit("train", {"nvp": TINY, "data": "data", "name": "rack"})
        engine.subscribe(job, events.append)
        rec = engine.wait_sync(job, timeout=300)
        assert rec.status == "done", rec.error
        res = rec.result
        ckpt = tmp_path / "models" / "rack.ckpt"
        assert res["checkpoint"] == str(ckpt) and ckpt.exists()
        assert res["series"] == 2 and res["epochs_run"] == 2 and res["interval_s"] == 900.0
        assert not list((tmp_path / "models" / ".partial").iterdir())  # no leftovers
        progress = [e for e in events if e["type"] == "progress"]
        assert progress and progress[-1]["steps_done"] == progress[-1]["num_steps"]
        assert rec.progress == 1.0
        p = nvp.NVPPredictor(model_path=str(ckpt))
        pred = p.predict_next(telemetry_history=[{"cpu": 0.5, "power": 600.0}] * 4)
        assert np.isfinite(pred["power"]) and p.series.units["power"] == "kW"

        # rows given inline: the same checks as a CSV (here: out of order is refused)
        rows = _rows()
        rows[1], rows[2] = rows[2], rows[1]
        rec = engine.wait_sync(engine.submit("train", {"nvp": TINY, "rows": rows}), timeout=120)
        assert rec.status == "failed" and rec.error["field"] == "rows"
        assert "out of order" in rec.error["message"]

        # a cancelled training stops and leaves the previous checkpoint as it was
        before = ckpt.read_bytes()
        long = dict(TINY, epochs=10_000, patience=10_000)
        job = engine.submit("train", {"nvp": long, "rows": _rows(), "name": "rack"})
        t_end = __import__("time").monotonic() + 120
        while engine.status(job).status != "running" or engine.status(job).progress == 0:
            assert __import__("time").monotonic() < t_end
            __import__("time").sleep(0.1)
        assert engine.cancel(job)
        rec = engine.wait_sync(job, timeout=60)
        assert rec.status == "cancelled" and ckpt.read_bytes() == before
    finally:
        engine.close()
