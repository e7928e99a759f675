"""`idf serve`: the HTTP/WebSocket service under uvicorn.

State (EIL database, signing key, anchors, jobs) lives in the state directory
(`--state-dir`, else `IDF_STATE_DIR`, else `service.state_dir`, else ~/.local/state/idf-jax;
`idf_jax.runtime.state`) and survives restarts. `--dev` signs a separate development ledger
with the public development key, and says so in the log.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

from ._common import load_yaml

__all__ = ["serve"]


def serve(
    host: str = typer.Option("127.0.0.1", help="interface to bind"),
    port: int = typer.Option(8000, min=1, max=65535),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="project config.yaml (service section)", show_default="none"
    ),
    state_dir: Path | None = typer.Option(
        None,
        "--state-dir",
        help="folder of the EIL database, keys, anchors and jobs (kept across restarts)",
        show_default="$IDF_STATE_DIR, else service.state_dir, else ~/.local/state/idf-jax",
    ),
    dev: bool = typer.Option(
        False,
        "--dev",
        help="development: sign a separate EIL ledger with the PUBLIC development key",
        show_default="off",
    ),
    insecure_no_auth: bool = typer.Option(
        False, help="accept requests without an API key (development)"
    ),
    log_level: str = typer.Option("info"),
    graceful_timeout: int = typer.Option(
        30, min=1, help="seconds to finish in-flight requests on shutdown"
    ),
    grpc_port: int | None = typer.Option(
        None,
        min=0,
        max=65535,
        help="also serve gRPC (KServe v2, idf.v1.Sampling) on this port",
        show_default="config service.grpc_port, else no gRPC",
    ),
    kafka_bootstrap: str | None = typer.Option(
        None,
        help="HOST:PORT of a Kafka broker: ingest EIL telemetry from --kafka-topic",
        show_default="config service.kafka_bootstrap, else no Kafka",
    ),
    kafka_topic: str | None = typer.Option(
        None,
        help="telemetry topic (dead letters: TOPIC.dlq)",
        show_default="config service.kafka_topic",
    ),
    kafka_group: str | None = typer.Option(
        None,
        help="Kafka consumer group",
        show_default="config service.kafka_group, else idf-eil",
    ),
):
    """Start the HTTP/WebSocket service (uvicorn). API keys: IDF_API_KEYS or service.api_keys
    (at least 32 characters; weak keys are refused with the reason).

    Example: IDF_API_KEYS=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')
    idf serve --config config.yaml --port 8000 --state-dir /var/lib/idf
    (add --grpc-port 50051 for gRPC, --kafka-bootstrap HOST:PORT --kafka-topic TOPIC to
    ingest telemetry from Kafka)
    """
    import dataclasses
    import logging

    import uvicorn

    from ..service import create_app, load_config
    from ..service.redact import install_redaction

    idf_log = logging.getLogger("idf_jax")
    if not any(isinstance(h, _StderrHandler) for h in idf_log.handlers):  # once per process
        handler = _StderrHandler()
        handler.addFilter(install_redaction())  # the same filter, secrets added below
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        idf_log.addHandler(handler)
    idf_log.setLevel(log_level.upper())
    cfg = load_yaml(config)
    service_cfg = dict(cfg.get("service", {}) or {})
    if insecure_no_auth:
        service_cfg["auth_disabled"] = True
    service_cfg.setdefault("prewarm_workers", True)  # job workers start with the server
    if grpc_port is not None:
        service_cfg["grpc_port"], service_cfg["grpc_host"] = grpc_port, host
    for key, value in (
        ("kafka_bootstrap", kafka_bootstrap),
        ("kafka_topic", kafka_topic),
        ("kafka_group", kafka_group),
    ):
        if value is not None:
            service_cfg[key] = value
    conf = load_config(service_cfg)
    if state_dir is not None:
        conf = dataclasses.replace(conf, state_dir=str(state_dir))
    if dev:
        conf = dataclasses.replace(conf, dev=True)
    server_config = uvicorn.Config(
        create_app(conf),
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=graceful_timeout,
        ws="websockets-sansio" if _has("websockets") else "auto",
    )
    install_redaction(conf.api_keys)  # after uvicorn set up its loggers: keys never logged
    uvicorn.Server(server_config).run()


class _StderrHandler(logging.StreamHandler):
    """A stream handler that writes to the current `sys.stderr` (not the one at creation:
    a replaced or closed stream, as under test capture, is never written to)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _has(mod: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(mod) is not None
