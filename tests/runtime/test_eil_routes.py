"""The EIL routes (sense, act, prove, ledger/verify), the decision stream and shutdown."""

from __future__ import annotations

import time

import pytest
from _runtime_helpers import API_KEY
from fastapi.testclient import TestClient

import idf_jax.eil  # noqa: E402,F401  (a broken import must fail, not skip)
from idf_jax.runtime.service import ServiceConfig, create_app

AUTH = {"Authorization": f"Bearer {API_KEY}"}
READING = {"source": "datacenter-01", "metrics": {"cpu": 0.85, "power": 920, "temp": 76}}
LEDGER_KEY = bytes(range(100, 132)).hex()  # a fixed Ed25519 seed (tests only)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    db = tmp_path_factory.mktemp("eil") / "eil.sqlite"
    cfg = ServiceConfig(
        api_keys=(API_KEY,),
        nvp_model_path=None,
        eil={"db_path": str(db), "ledger_key": LEDGER_KEY},
    )
    return create_app(cfg), db


def test_blueprint_loop_over_http(app):
    application, db = app
    t0 = time.time() - 7200.0  # a past reading: its prediction's horizon has passed
    with TestClient(application) as client:
        r = client.post("/v1/eil/sense", json=dict(READING, timestamp=t0), headers=AUTH)
        assert r.status_code == 200, r.text
        assert r.json()["result"]["energy"] > 0
        r = client.post(
            "/v1/eil/act",
            json={"goal": "minimize_energy", "constraints": {"uptime": 0.999}},
            headers=AUTH,
        )
        assert r.status_code == 200, r.text
        action = r.json()
        assert {"type", "energy_savings", "prediction_id", "predicted_state"} <= set(action)
        proof = {
            "prediction_id": action["prediction_id"],
            "actual_state": {"energy": action["predicted_state"]["energy"]},
        }
        r = client.post("/v1/eil/prove", json=proof, headers=AUTH)
        assert r.status_code == 200 and r.json()["status"] == "pending"  # not measured yet
        pred = action["predicted_state"]
        outcome = {
            "source": "datacenter-01",
            "timestamp": t0 + 900.0,
            "metrics": {"cpu": 0.85, "power": pred["energy"] / 900.0, "temp": pred["temp"]},
        }
        assert client.post("/v1/eil/sense", json=outcome, headers=AUTH).status_code == 200
        r = client.post("/v1/eil/prove", json=proof, headers=AUTH)
        assert r.status_code == 200, r.text
        first = r.json()
        assert first["valid"] is True and first["pft_amount"] > 0  # the prediction itself
        again = client.post("/v1/eil/prove", json=proof, headers=AUTH).json()
        assert again["duplicate"] is True and again["pft_amount"] == 0.0  # nothing new minted
        r = client.post(
            "/v1/eil/prove",
            json={"prediction_id": "nope", "actual_state": {"energy": 1.0}},
            headers=AUTH,
        )
        assert r.status_code == 404
        v = client.get("/v1/ledger/verify", headers=AUTH).json()
        assert v["ok"] is True and v["count"] >= 2 and not v["errors"]
        text = client.get("/metrics", headers=AUTH).text
        assert f'idf_eil_decisions_total{{type="{action["type"]}"}} 1.0' in text
        # neither the pending answer nor the duplicate is a new proof
        assert 'idf_eil_proofs_total{valid="true"} 1.0' in text
        assert f"idf_eil_pft_minted_total {first['pft_amount']}" in text
    # the lifespan closed the EIL: the database is consistent and reopens with the same chain
    from idf_jax.eil import EILOptimizer

    eil = EILOptimizer(str(db), ledger_key=LEDGER_KEY)
    assert eil.verify_ledger()["ok"] is True
    eil.close()


@pytest.mark.parametrize(
    "body, field",
    [
        ({"source": "nowhere", "metrics": {"cpu": 0.5}}, "metrics"),
        ({"source": "datacenter-01", "metrics": {"cpu": 7.0}}, "metrics"),
        ({"source": "datacenter-01", "metrics": {"voltage": 1.0}}, "metrics"),
        ({"source": "datacenter-01", "metrics": {}}, "metrics"),
    ],
)
def test_bad_readings_are_422(app, body, field):
    application, _ = app
    with TestClient(application) as client:
        r = client.post("/v1/eil/sense", json=body, headers=AUTH)
    assert r.status_code == 422, r.text
    assert field in r.json()["detail"][0]["loc"]


def test_decisions_stream_to_subscribers(app):
    application, _ = app
    with TestClient(application) as client:
        client.post("/v1/eil/sense", json=READING, headers=AUTH)
        with client.websocket_connect("/v1/stream", headers=AUTH) as ws:
            ws.send_json({"type": "subscribe"})
            assert ws.receive_json()["type"] == "subscribed"
            r = client.post("/v1/eil/act", json={"goal": "minimize_energy"}, headers=AUTH)
            assert r.status_code == 200
            msg = ws.receive_json()
            assert msg["type"] == "decision"
            assert msg["decision"]["prediction_id"] == r.json()["prediction_id"]
            ws.send_json({"type": "act", "goal": "minimize_energy"})
            own = ws.receive_json()
            assert own["type"] == "decision" and own["decision"]["prediction_id"]
            ws.send_json({"type": "act", "goal": "make_coffee"})
            err = ws.receive_json()
            assert err["type"] == "error" and err["status"] == 422
