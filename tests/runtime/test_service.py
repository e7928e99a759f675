"""The HTTP/WebSocket service through FastAPI's TestClient (in-process ASGI, no sockets)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from _runtime_helpers import API_KEY, NAME
from fastapi.testclient import TestClient

from idf_jax.runtime.service import Limits, MicroBatcher, ServiceConfig, create_app, load_config

AUTH = {"Authorization": f"Bearer {API_KEY}"}
# One job shape shared by the tests, so the sampler compiles once (the service caches it).
JOB = dict(
    capsule=NAME,
    params={"dim": 4},
    sampler="mala",
    chains=16,
    steps=300,
    burn_in=100,
    thin=2,
    step_size=0.8,
    temperature=2.0,
)


@pytest.fixture(scope="module")
def client():
    cfg = ServiceConfig(
        api_keys=(API_KEY,),
        nvp_model_path=None,
        limits=Limits(
            max_chains=64,
            max_steps=2000,
            max_dimensions=64,
            max_body_bytes=20_000,
            max_draws_returned=50_000,
        ),
    )
    with TestClient(create_app(cfg)) as c:
        yield c


def test_health_needs_no_key_but_everything_else_does(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["ready"] is True
    for method, path in [
        ("get", "/metrics"),
        ("get", "/v1/capsules"),
        ("post", "/v1/sample"),
        ("post", "/v1/nvp/predict"),
        ("post", "/v1/eil/sense"),
        ("get", "/v1/ledger/verify"),
    ]:
        r = getattr(client, method)(path)
        assert r.status_code == 401, (path, r.status_code)
        r = getattr(client, method)(path, headers={"Authorization": "Bearer wrong-key-xxxxxxxx"})
        assert r.status_code == 401, path


def test_capsules_lists_registered(client):
    r = client.get("/v1/capsules", headers=AUTH)
    assert r.status_code == 200
    names = {c["name"]: c for c in r.json()}
    assert NAME in names
    assert names[NAME]["parameters"] == {"dim": "2", "sigma": "1.0"}


def test_sample_matches_boltzmann_moments(client):
    # Gaussian, dim 4, T = 2: <E> = dim T / 2 = 4, Var(E) = dim T^2 / 2 = 8.
    body = dict(JOB, seed=3, return_positions="all")
    r = client.post("/v1/sample", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    out = r.json()
    s = out["summary"]
    assert s["chains"] == 16 and s["draws"] == 100
    # Standard error of the mean energy: sd(E) / sqrt(ESS), sd(E) = sqrt(8); allow 5 SE.
    assert s["energy_ess"] > 300
    assert abs(s["energy_mean"] - 4.0) < 5 * np.sqrt(8.0 / s["energy_ess"])
    assert 0.4 < s["acceptance_rate"] <= 1.0
    x = np.asarray(out["positions"]["x"])
    assert x.shape == (16, 100, 4)
    # Var(x_i) = T sigma^2 = 2; the sample variance of ~ESS*4 near-independent normals has
    # relative sd sqrt(2 / n); allow 5 sd.
    n = 4 * s["energy_ess"]
    assert abs(x.var() - 2.0) < 5 * 2.0 * np.sqrt(2.0 / n)
    e = np.asarray(out["energies"])
    np.testing.assert_allclose(e, 0.5 * (x**2).sum(-1), rtol=1e-4, atol=1e-4)


def test_same_job_same_numbers(client):
    body = dict(JOB, seed=11, return_positions="final")
    a = client.post("/v1/sample", json=body, headers=AUTH).json()
    b = client.post("/v1/sample", json=body, headers=AUTH).json()
    assert a["positions"] == b["positions"]
    assert np.asarray(a["positions"]["x"]).shape == (16, 4)


@pytest.mark.parametrize(
    "change, status, field",
    [
        ({"chains": 65}, 413, "chains"),
        ({"steps": 2001}, 413, "steps"),
        ({"params": {"dim": 65}}, 413, "params"),
        ({"params": {"dim": 100000}}, 413, "params.dim"),
        ({"chains": 0}, 422, "chains"),
        ({"step_size": -1.0}, 422, "step_size"),
        ({"thin": 3, "steps": 100}, 422, "thin"),
        ({"burn_in": 100, "steps": 100}, 422, "burn_in"),
        ({"sampler": "gibbs"}, 422, "sampler"),
        ({"capsule": "no.such"}, 422, "capsule"),
        ({"params": {"dim": -2}}, 422, "params"),
        ({"params": {"bogus": 1}}, 422, "params"),
        ({"params": {"dim": "two"}}, 422, "params"),
        ({"unknown_field": 1}, 422, "unknown_field"),
    ],
)
def test_sample_bad_input_names_the_field(client, change, status, field):
    body = dict(capsule=NAME, chains=2, steps=10, step_size=0.1)
    body.update(change)
    r = client.post("/v1/sample", json=body, headers=AUTH)
    assert r.status_code == status, r.text
    locs = [".".join(str(p) for p in d["loc"]) for d in r.json()["detail"]]
    assert any(field in loc for loc in locs), locs


def test_non_finite_and_malformed_bodies_are_422(client):
    raw = '{"capsule": "' + NAME + '", "step_size": NaN}'
    r = client.post("/v1/sample", content=raw, headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 422 and "step_size" in r.text
    r = client.post(
        "/v1/sample", content="{not json", headers={**AUTH, "content-type": "application/json"}
    )
    assert r.status_code == 422
    r = client.post("/v1/sample", json=[1, 2], headers=AUTH)
    assert r.status_code == 422


def test_body_limit_413(client):
    big = {"capsule": NAME, "params": {"dim": 2, "pad": "x" * 30_000}}
    r = client.post("/v1/sample", json=big, headers=AUTH)
    assert r.status_code == 413
    assert "body" in r.json()["detail"][0]["loc"]


def test_components_not_configured_answer_503(client):
    r = client.post("/v1/nvp/predict", json={"history": [{"cpu": 0.5}]}, headers=AUTH)
    assert r.status_code == 503
    r = client.post("/v1/nvp/predict", json={}, headers=AUTH)
    assert r.status_code == 422


def test_metrics_count_requests_and_samples(client):
    client.post("/v1/sample", json=JOB, headers=AUTH)
    text = client.get("/metrics", headers=AUTH).text
    assert 'idf_http_requests_total{method="POST",route="/v1/sample",status="200"}' in text
    assert "idf_http_request_duration_seconds_bucket" in text
    line = [l for l in text.splitlines() if l.startswith('idf_samples_drawn_total{kind="sample"}')]
    assert line and float(line[0].split()[-1]) >= 16 * 100


def test_websocket_streams_progress_then_result(client):
    with client.websocket_connect("/v1/stream", headers=AUTH) as ws:
        ws.send_json(dict(JOB, type="sample"))
        msgs = []
        for _ in range(200):  # bounded: progress messages, then one result
            m = ws.receive_json()
            msgs.append(m)
            if m["type"] in ("result", "error"):
                break
        assert msgs[-1]["type"] == "result", msgs[-1]
        progress = [m["steps_done"] for m in msgs if m["type"] == "progress"]
        assert progress and progress[-1] == 300 and progress == sorted(progress)
        ws.send_json({"type": "nonsense"})
        assert ws.receive_json()["status"] == 422
        ws.send_json(dict(type="sample", capsule=NAME, chains=1000))
        err = ws.receive_json()
        assert err["type"] == "error" and err["status"] == 413 and "chains" in err["detail"]


def test_websocket_rejects_without_key(client):
    from starlette.websockets import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect) as e:
        with client.websocket_connect("/v1/stream") as ws:
            ws.receive_json()
    assert e.value.code == 1008


def test_config_from_env_and_unknown_keys():
    k1, k2 = "k1-" + "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1", "k2-" + "zY8xW6vU4tS2rQ0pO8nM6lK4jI2hG0"
    cfg = load_config({"limits": {"max_chains": 8}}, env={"IDF_API_KEYS": f"{k1}, {k2}"})
    assert cfg.api_keys == (k1, k2) and cfg.limits.max_chains == 8
    with pytest.raises(ValueError, match="unknown service config keys"):
        load_config({"api_key": "x"}, env={})
    with pytest.raises(ValueError, match="no API keys"):
        load_config({}, env={})
    with pytest.raises(ValueError, match="max_steps"):
        load_config({"limits": {"max_steps": 0}}, env={"IDF_API_KEYS": k1})


def test_micro_batcher_gathers_concurrent_items():
    calls = []

    def fn(items):
        calls.append(len(items))
        if any(i < 0 for i in items):
            raise ValueError("negative item")
        return [2 * i for i in items]

    async def main():
        b = MicroBatcher(fn, max_size=8, max_wait_s=0.05)
        results = await asyncio.gather(*(b.submit(i) for i in range(20)))
        bad = await asyncio.gather(b.submit(5), b.submit(-1), return_exceptions=True)
        await b.close()
        return results, bad

    results, bad = asyncio.run(main())
    assert results == [2 * i for i in range(20)]
    # 20 items, batches of at most 8 padded to a power of two: 8 + 8 + 4 (padded)
    assert calls[:3] == [8, 8, 4]
    assert bad[0] == 10 and isinstance(bad[1], ValueError)


def test_equilibrium_finds_the_minimum(client):
    import idf_jax.thermo.anneal  # noqa: F401  (a broken import must fail, not skip)

    body = dict(capsule=NAME, params={"dim": 3, "sigma": 2.0}, chains=4, steps=200, seed=0)
    r = client.post("/v1/equilibrium", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    s = r.json()["summary"]
    # E = |x|^2 / (2 sigma^2): the unique minimum is E = 0 at x = 0; the final relaxation
    # (a gradient method on a convex quadratic) converges there from any start.
    assert 0.0 <= s["best_energy"] < 1e-6
    assert np.abs(np.asarray(s["best_position"]["x"])).max() < 1e-2
    assert len(s["energy_per_chain"]) == 4
    r = client.post("/v1/equilibrium", json=dict(body, chains=65), headers=AUTH)
    assert r.status_code == 413 and r.json()["detail"][0]["loc"] == ["body", "chains"]


HISTORY = [
    {"cpu": 0.75, "power": 850.0, "temp": 72.0},
    {"cpu": 0.78, "power": 865.0, "temp": 73.0},
    {"cpu": 0.81, "power": 880.0, "temp": 74.0},
]


@pytest.fixture(scope="module")
def nvp_client():
    import idf_jax.nvp as nvp

    # batches of up to 16 (16 client threads below): five warm-up compilations, not seven
    cfg = ServiceConfig(
        api_keys=(API_KEY,), nvp_model_path="default", batch_max_wait_ms=50.0, batch_max_size=16
    )
    with TestClient(create_app(cfg)) as c:
        yield c, nvp.NVPPredictor()


def test_nvp_predict_matches_the_library(nvp_client):
    client, predictor = nvp_client
    r = client.post("/v1/nvp/predict", json={"history": HISTORY}, headers=AUTH)
    assert r.status_code == 200, r.text
    got, want = r.json()["prediction"], predictor.predict_next(telemetry_history=HISTORY)
    for ch in ("cpu", "power", "temp", "confidence"):
        assert got[ch] == pytest.approx(want[ch], rel=1e-5)
    assert got["energy_valid"] == want["energy_valid"]
    assert got["interval"]["power"] == pytest.approx(list(want["interval"]["power"]), rel=1e-5)
    r = client.post("/v1/nvp/predict", json={"histories": [HISTORY, HISTORY[:2]]}, headers=AUTH)
    assert r.status_code == 200 and len(r.json()["predictions"]) == 2


@pytest.mark.parametrize(
    "history, needle",
    [
        ([{"cpu": 0.5, "power": 800.0}], "missing"),
        ([{"cpu": 0.5, "power": 800.0, "temp": 70.0, "fan": 1.0}], "fan"),
        ([{"cpu": 0.5, "power": 800.0, "temp": 70.0}], "at least"),
    ],
)
def test_nvp_bad_history_is_422_naming_the_problem(nvp_client, history, needle):
    client, _ = nvp_client
    r = client.post("/v1/nvp/predict", json={"history": history}, headers=AUTH)
    assert r.status_code == 422 and needle in r.text


def test_nvp_concurrent_requests_are_micro_batched(nvp_client):
    import concurrent.futures

    client, predictor = nvp_client

    def metric(name):
        text = client.get("/metrics", headers=AUTH).text
        return sum(float(l.split()[-1]) for l in text.splitlines() if l.startswith(name + " "))

    calls0, items0 = metric("idf_nvp_batch_size_count"), metric("idf_nvp_batch_size_sum")
    hist = [dict(h, cpu=h["cpu"] + 0.001 * k) for k, h in enumerate(HISTORY)]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        rs = list(
            pool.map(
                lambda i: client.post("/v1/nvp/predict", json={"history": hist}, headers=AUTH),
                range(48),
            )
        )
    assert all(r.status_code == 200 for r in rs)
    calls, items = (
        metric("idf_nvp_batch_size_count") - calls0,
        metric("idf_nvp_batch_size_sum") - items0,
    )
    assert items == 48
    assert calls < 48  # requests shared vmapped calls
    want = predictor.predict_next(telemetry_history=hist)["power"]
    assert all(r.json()["prediction"]["power"] == pytest.approx(want, rel=1e-5) for r in rs)


def test_nvp_fast_path_agrees_with_the_validated_route(nvp_client):
    """A canonical `{"history": [...]}` takes the hot path; the same series sent as
    `histories` goes through FastAPI and pydantic: same numbers. Anything the hot path does
    not accept unchanged is answered by the validated route (same errors, same metrics)."""
    client, _ = nvp_client
    app = client.app
    seen = []
    fallback = app.fast_predict.fallback

    async def spy(scope, receive, send):
        seen.append(scope["path"])
        return await fallback(scope, receive, send)

    app.fast_predict.fallback = spy
    try:
        fast = client.post("/v1/nvp/predict", json={"history": HISTORY}, headers=AUTH)
        assert fast.status_code == 200 and seen == []
        slow = client.post("/v1/nvp/predict", json={"histories": [HISTORY]}, headers=AUTH)
        assert slow.status_code == 200 and len(seen) == 1
        assert fast.json()["prediction"] == slow.json()["predictions"][0]
        assert fast.headers["content-type"] == "application/json"
        json_ct = dict(AUTH, **{"content-type": "application/json"})
        cases = [
            ({"history": [dict(h, cpu=True) for h in HISTORY]}, None, AUTH, 422, "cpu"),
            ({"history": HISTORY, "extra": 1}, None, AUTH, 422, "extra"),
            ({"history": HISTORY[:1]}, None, AUTH, 422, "at least"),
            (None, b'{"history":[{"cpu":NaN,"power":1,"temp":2}]}', json_ct, 422, "finite"),
            ({"history": HISTORY}, None, {"Authorization": "Bearer wrong-key-123"}, 401, "API"),
        ]
        for body, raw, headers, status, needle in cases:
            seen.clear()
            if raw is None:
                r = client.post("/v1/nvp/predict", json=body, headers=headers)
            else:
                r = client.post("/v1/nvp/predict", content=raw, headers=headers)
            assert r.status_code == status and needle in r.text, (body, r.text)
            assert seen == ["/v1/nvp/predict"]  # answered by the full stack
    finally:
        app.fast_predict.fallback = fallback
    text = client.get("/metrics", headers=AUTH).text
    assert 'route="/v1/nvp/predict",status="200"' in text.replace('method="POST",', "")
