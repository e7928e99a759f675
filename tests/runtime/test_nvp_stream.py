"""WS /v1/nvp/stream over a real server on loopback: readings sent one by one, a prediction
back for each, equal to POST /v1/nvp/predict on the same history; bad readings refused
(and the stream goes on), out-of-order timestamps refused, gaps flagged, the key required."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest
import uvicorn
from _runtime_helpers import API_KEY

from idf_jax.runtime.service import ServiceConfig, create_app

# a real server that loads and warms up the packaged NVP checkpoint: ~20-40 s when busy
pytestmark = pytest.mark.slow

AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = ServiceConfig(
        api_keys=(API_KEY,),
        nvp_model_path="default",
        eil=False,
        state_dir=str(tmp_path_factory.mktemp("state")),
        batch_max_size=8,
    )
    app = create_app(cfg)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    t_end = time.monotonic() + 180
    while True:
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < t_end, "server did not start"
        time.sleep(0.2)
    try:
        yield url, app
    finally:
        srv.should_exit = True
        thread.join(timeout=60)


def _readings(n: int):
    import jax

    from idf_jax.nvp import simulator

    obs = simulator.simulate(simulator.rack_params(), jax.random.key(5), n)
    x, names = simulator.rack_telemetry(obs)
    return [{c: float(v) for c, v in zip(names, row)} for row in x]


def _connect(url: str, headers=AUTH):
    from websockets.sync.client import connect

    return connect(
        url.replace("http", "ws") + "/v1/nvp/stream", additional_headers=headers, open_timeout=30
    )


def test_each_reading_gets_the_prediction_of_its_history(server):
    url, _ = server
    readings = _readings(40)
    predictor_window = 32
    with _connect(url) as ws:
        ws.send(json.dumps({"type": "reading", "reading": readings[0], "timestamp": 0}))
        first = json.loads(ws.recv(timeout=60))
        assert first == {"type": "waiting", "seq": 0, "series": "default", "have": 1, "need": 2}
        for i, r in enumerate(readings[1:], start=1):  # streamed without waiting for answers
            ws.send(json.dumps({"type": "reading", "reading": r, "timestamp": 300 * i}))
        answers = [json.loads(ws.recv(timeout=60)) for _ in readings[1:]]
    assert [a["seq"] for a in answers] == list(range(1, 40))  # in order, one per reading
    assert all(a["type"] == "prediction" and "gap_s" not in a for a in answers)
    with httpx.Client(base_url=url, headers=AUTH, timeout=60) as c:
        for k in (1, 20, 39):  # the same forecast as HTTP on the same (windowed) history
            hist = readings[max(0, k + 1 - predictor_window) : k + 1]
            http = c.post("/v1/nvp/predict", json={"history": hist}).json()["prediction"]
            got = answers[k - 1]["prediction"]
            assert set(got) == set(http)
            for ch in ("cpu", "power", "temp"):
                assert got[ch] == pytest.approx(http[ch], rel=1e-5, abs=1e-6)


def test_bad_readings_are_refused_and_the_stream_goes_on(server):
    url, _ = server
    r0, r1, r2 = _readings(3)
    with _connect(url) as ws:
        send = lambda m: ws.send(json.dumps(m))  # noqa: E731
        recv = lambda: json.loads(ws.recv(timeout=60))  # noqa: E731
        send({"type": "reading", "reading": {"cpu": 0.5}})
        err = recv()
        assert err["type"] == "error" and err["status"] == 422
        assert "missing ['power', 'temp']" in err["detail"]
        ws.send("not json")
        assert recv()["status"] == 422
        send({"type": "reading", "reading": dict(r0, cpu="high")})
        assert recv()["status"] == 422
        send({"type": "bogus"})
        assert recv()["status"] == 422
        send({"type": "reading", "reading": r0, "timestamp": 600, "series": "a"})
        assert recv()["type"] == "waiting"
        send({"type": "reading", "reading": r1, "timestamp": 600, "series": "a"})
        err = recv()
        assert err["status"] == 422 and "duplicate" in err["detail"]
        send({"type": "reading", "reading": r1, "timestamp": 300, "series": "a"})
        assert "older than" in recv()["detail"]
        send({"type": "reading", "reading": r1, "timestamp": 1800, "series": "a"})
        ok = recv()
        assert ok["type"] == "prediction" and ok["series"] == "a" and ok["gap_s"] == 1200.0
        send({"type": "reading", "reading": r2, "series": "b"})  # series are separate
        assert recv() == {"type": "waiting", "seq": 2, "series": "b", "have": 1, "need": 2}
        send({"type": "reset", "series": "a"})
        assert recv() == {"type": "reset", "series": "a"}
        send({"type": "reading", "reading": r2, "series": "a"})
        assert recv()["type"] == "waiting"  # history forgotten


def test_stream_needs_a_key(server):
    from websockets.exceptions import InvalidStatus

    url, _ = server
    with pytest.raises(InvalidStatus):
        with _connect(url, headers={"Authorization": "Bearer wrong-key"}) as ws:
            ws.recv(timeout=10)
