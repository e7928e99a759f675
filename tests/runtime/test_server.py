"""The service as a real process on loopback: `idf serve`, WebSocket, `idf monitor`, SIGTERM.

Bounded: every wait has a deadline, and the server process is killed in `finally`.
"""

from __future__ import annotations

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
from _runtime_helpers import API_KEY, NAME

from idf_jax.runtime.cli import main

# A real server process (start-up, compiles, SIGTERM): about 30 s unloaded, more on a busy machine.
pytestmark = pytest.mark.slow

AUTH = {"Authorization": f"Bearer {API_KEY}"}
TESTS = Path(__file__).parent
ROOT = TESTS.parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc, deadline_s: float = 180.0):
    t_end = time.monotonic() + deadline_s
    while time.monotonic() < t_end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early: {proc.log_path.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise TimeoutError("server did not become ready")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = _free_port()
    cfg = tmp_path_factory.mktemp("srv") / "config.yaml"
    cfg.write_text(
        json.dumps(
            {
                "service": {
                    "capsule_modules": ["_runtime_helpers"],
                    "limits": {"max_chains": 64, "max_steps": 5000},
                }
            }
        )
    )
    env = dict(
        os.environ,
        IDF_API_KEYS=API_KEY,
        PYTHONPATH=os.pathsep.join([str(ROOT), str(TESTS), os.environ.get("PYTHONPATH", "")]),
    )
    log = cfg.parent / "server.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "idf_jax.runtime.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--config",
                str(cfg),
                "--graceful-timeout",
                "60",
            ],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            text=True,
        )
    proc.log_path = log
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def test_websocket_over_loopback(server):
    from websockets.sync.client import connect

    url, _ = server
    job = dict(type="sample", capsule=NAME, chains=4, steps=200, step_size=0.5)
    with connect(
        url.replace("http", "ws") + "/v1/stream", additional_headers=AUTH, open_timeout=30
    ) as ws:
        ws.send(json.dumps(job))
        kinds = []
        for _ in range(500):
            m = json.loads(ws.recv(timeout=180))
            kinds.append(m["type"])
            if m["type"] in ("result", "error"):
                break
    assert kinds[-1] == "result" and "progress" in kinds


def test_monitor_reads_live_metrics(server, capsys):
    url, _ = server
    httpx.post(
        url + "/v1/sample",
        json=dict(capsule=NAME, chains=2, steps=10, step_size=0.5),
        headers=AUTH,
        timeout=180,
    )
    rc = main(
        [
            "monitor",
            "--url",
            url,
            "--api-key",
            API_KEY,
            "--dashboard",
            "http",
            "--iterations",
            "2",
            "--interval",
            "0.1",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "/v1/sample" in out
    rc = main(["monitor", "--url", url, "--api-key", "wrong-key-xxxxxxxx", "--iterations", "1"])
    assert rc == 1 and "refused the API key" in capsys.readouterr().err


def test_sigterm_finishes_in_flight_requests(server):
    url, proc = server
    result = {}

    def slow_request():
        # a new job shape: compiles, so it is still running when SIGTERM arrives
        body = dict(capsule=NAME, params={"dim": 3}, chains=8, steps=3000, thin=3, step_size=0.3)
        r = httpx.post(url + "/v1/sample", json=body, headers=AUTH, timeout=300)
        result["status"], result["body"] = r.status_code, r.json()

    t = threading.Thread(target=slow_request)
    t.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the server holds the request
        text = httpx.get(url + "/metrics", headers=AUTH, timeout=5).text
        inflight = [l for l in text.splitlines() if l.startswith("idf_http_requests_in_flight ")]
        if inflight and float(inflight[0].split()[1]) >= 2:  # the slow one + this scrape
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    t.join(timeout=300)
    assert not t.is_alive()
    assert result["status"] == 200 and result["body"]["summary"]["draws"] == 1000
    # uvicorn re-raises the captured SIGTERM after its graceful shutdown: exit by that signal
    assert proc.wait(timeout=120) in (0, -signal.SIGTERM)
    log = proc.log_path.read_text()
    assert "Shutting down" in log and "Application shutdown complete" in log
    assert "idf service stopped" in log
