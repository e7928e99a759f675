"""No key in any log line: a real uvicorn server, keys in headers and `?api_key=` on the
WebSocket, every log line captured (uvicorn's own handlers and the records themselves)."""

from __future__ import annotations

import copy
import logging
import socket
import threading
import time

import httpx
import pytest
import uvicorn
from _runtime_helpers import API_KEY
from websockets.sync.client import connect

from idf_jax.runtime.service import ServiceConfig, create_app
from idf_jax.runtime.service.redact import REDACTED, install_redaction, redact

LEDGER_KEY = bytes(range(40, 72)).hex()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))


def test_redact_patterns():
    line = '127.0.0.1 - "WebSocket /v1/stream?x=1&api_key=abc123&y=2" [accepted]'
    assert (
        redact(line) == f'127.0.0.1 - "WebSocket /v1/stream?x=1&api_key={REDACTED}&y=2" [accepted]'
    )
    assert redact("Authorization: Bearer s3cr3t.tok") == f"Authorization: Bearer {REDACTED}"
    assert redact("my key is hunter2-hunter2", ["hunter2-hunter2"]) == f"my key is {REDACTED}"


def _file_log_config(path):
    """uvicorn's own logging configuration, its handlers writing to `path`."""
    conf = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    for h in conf["handlers"].values():
        h.pop("stream", None)
        h.update({"class": "logging.FileHandler", "filename": str(path)})
    return conf


def test_no_key_in_any_log_line(tmp_path):
    cfg = ServiceConfig(
        api_keys=(API_KEY,),
        nvp_model_path=None,
        state_dir=str(tmp_path / "state"),
        eil={"db_path": str(tmp_path / "eil.sqlite"), "ledger_key": LEDGER_KEY},
    )
    app = create_app(cfg)
    port = _free_port()
    log_file = tmp_path / "uvicorn.log"
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="debug",
        ws="websockets-sansio",
        log_config=_file_log_config(log_file),
    )
    install_redaction(cfg.api_keys)  # as `idf serve` does, after uvicorn set up its loggers
    capture = _Capture()
    capture.setFormatter(logging.Formatter("%(name)s %(message)s"))
    names = ("uvicorn", "uvicorn.error", "uvicorn.access", "idf_jax")
    for name in names:
        logging.getLogger(name).addHandler(capture)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("server did not start")
            time.sleep(0.1)
        # keys in every place a client may put them, accepted and refused
        assert (
            httpx.get(
                base + "/v1/capsules", headers={"Authorization": f"Bearer {API_KEY}"}
            ).status_code
            == 200
        )
        assert httpx.get(base + "/v1/capsules", headers={"X-API-Key": API_KEY}).status_code == 200
        assert httpx.get(base + f"/v1/capsules?api_key={API_KEY}").status_code == 401
        assert httpx.get(base + f"/v1/ledger/verify?token={LEDGER_KEY}").status_code == 401
        with connect(f"ws://127.0.0.1:{port}/v1/stream?api_key={API_KEY}") as ws:
            ws.send('{"type": "subscribe"}')
            assert "subscribed" in ws.recv(timeout=10)
        wrong = "W" + API_KEY[1:]
        with pytest.raises(Exception):
            with connect(f"ws://127.0.0.1:{port}/v1/stream?api_key={wrong}") as ws:
                ws.recv(timeout=10)
        time.sleep(0.3)  # let the access lines land
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        for name in names:
            logger = logging.getLogger(name)
            for h in list(logger.handlers):  # uvicorn's file handlers too
                logger.removeHandler(h)
                h.close()
    logged = "\n".join(capture.lines)
    written = log_file.read_text()
    assert "/v1/stream" in logged and REDACTED in logged  # the WebSocket lines were written...
    assert "/v1/stream" in written and '"GET /v1/capsules' in written
    for text in (logged, written):  # ...and no key is in any of them
        assert API_KEY not in text
        assert wrong not in text
        assert LEDGER_KEY not in text
