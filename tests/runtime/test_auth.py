"""API keys: the one parser, the one check, and that a request is checked once."""

from __future__ import annotations

import pytest
from _runtime_helpers import API_KEY
from fastapi.testclient import TestClient

from idf_jax.runtime.service import ServiceConfig, create_app
from idf_jax.runtime.service.auth import Authenticator, request_api_key


def _scope(headers=(), query=b"", kind="http"):
    return {
        "type": kind,
        "headers": [(k.encode(), v.encode()) for k, v in headers],
        "query_string": query,
    }


@pytest.mark.parametrize(
    "headers, query, kind, want",
    [
        ([("authorization", f"Bearer {API_KEY}")], b"", "http", API_KEY),
        ([("authorization", f"bearer  {API_KEY} ")], b"", "http", API_KEY),
        ([("x-api-key", API_KEY)], b"", "http", API_KEY),
        ([("authorization", "Bearer first"), ("x-api-key", "second")], b"", "http", "first"),
        ([("authorization", "Basic abc"), ("x-api-key", API_KEY)], b"", "http", API_KEY),
        ([("authorization", "Bearer a"), ("authorization", "Bearer b")], b"", "http", "a"),
        ([], f"api_key={API_KEY}".encode(), "websocket", API_KEY),
        ([], f"api_key={API_KEY}".encode(), "http", None),  # the query is for WebSockets only
        ([("authorization", "Bearer hdr")], b"api_key=query", "websocket", "hdr"),
        ([("authorization", "Bearer ")], b"", "http", None),
        ([], b"", "http", None),
    ],
)
def test_request_api_key(headers, query, kind, want):
    assert request_api_key(_scope(headers, query, kind)) == want


def test_check_is_constant_time_over_all_keys_and_memoised():
    auth = Authenticator(["aaaaaaaa1", "bbbbbbbb2"])
    assert auth.check("bbbbbbbb2") and not auth.check("cccccccc3") and not auth.check(None)
    assert Authenticator([], disabled=True).check(None)
    calls = []
    real = auth.check
    auth.check = lambda key: calls.append(key) or real(key)
    scope = _scope([("x-api-key", "aaaaaaaa1")])
    assert auth.authenticate(scope) and auth.authenticate(scope)
    assert calls == ["aaaaaaaa1"]  # the second call reuses the first answer


@pytest.fixture(scope="module")
def client():
    cfg = ServiceConfig(api_keys=(API_KEY,), nvp_model_path=None, eil=False)
    with TestClient(create_app(cfg)) as c:
        yield c


def test_every_way_of_giving_the_key(client):
    assert client.get("/v1/capsules", headers={"X-API-Key": API_KEY}).status_code == 200
    assert client.get("/v1/capsules", headers={"X-API-Key": "wrong-key-xxxx"}).status_code == 401
    with client.websocket_connect(f"/v1/stream?api_key={API_KEY}") as ws:
        ws.send_json({"type": "nonsense"})
        assert ws.receive_json()["status"] == 422


def test_one_check_per_request(client, monkeypatch):
    auth = Authenticator.check
    calls = []

    def counting(self, key):
        calls.append(key)
        return auth(self, key)

    monkeypatch.setattr(Authenticator, "check", counting)
    for path in ("/v1/capsules", "/metrics"):
        calls.clear()
        assert client.get(path, headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 200
        assert calls == [API_KEY], path
    calls.clear()
    r = client.post("/v1/nvp/predict", json={"history": []}, headers={"X-API-Key": "nope"})
    assert r.status_code == 401 and calls == ["nope"]
