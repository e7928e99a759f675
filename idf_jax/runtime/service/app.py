"""The FastAPI application: REST under /v1, a WebSocket stream, health and metrics.

Routes (every one but /healthz and /readyz needs a key: `Authorization: Bearer <key>` or
`X-API-Key: <key>`; the WebSocket also takes `?api_key=<key>`, which never reaches a log line:
`redact`):

    GET  /healthz, /readyz          liveness; readiness (503 while starting or draining)
    GET  /metrics                   Prometheus text format
    GET  /v1/capsules               registered capsules with descriptions and parameters
    POST /v1/sample                 sample a capsule's Boltzmann distribution (idf.sample)
    POST /v1/equilibrium            anneal to low-energy states (idf.sample_equilibrium)
    POST /v1/jobs, GET /v1/jobs[/{id}], DELETE /v1/jobs/{id}    asynchronous jobs
    POST /v1/nvp/predict            NVP next-state forecast (micro-batched, one vmapped call)
    POST /v1/eil/sense | act | prove                            the EIL decision loop
    GET  /v1/ledger/verify[?anchor=], /anchor, /public-key      the signed proof ledger
    WS   /v1/stream                 sampling progress and EIL decisions as they happen
    WS   /v1/nvp/stream             streaming NVP predictions, one per reading sent

Errors use FastAPI's shape, `{"detail": [{"loc": ["body", FIELD], "msg": ..., "type": ...}]}`:
422 for an invalid value, 413 for a value over a configured limit (or a body too large),
401 for a missing or wrong key, 404 for an unknown prediction, 503 for a component not
configured in this instance.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from fastapi import FastAPI

from .config import ServiceConfig
from .context import ServiceContext
from .errors import install_error_handlers
from .fastpath import ServiceApp
from .lifespan import make_lifespan
from .middleware import Auth, BodyLimit, HTTPMetrics
from .redact import install_redaction
from .routes import eil, equilibrium, health, jobs, nvp, nvp_stream, sample, websocket

__all__ = ["create_app"]


def create_app(config: ServiceConfig) -> FastAPI:
    """Build the service for `config` (see `idf_jax.runtime.service.load_config`)."""
    for mod in config.capsule_modules:
        try:
            importlib.import_module(mod)
        except ImportError as e:
            raise ValueError(f"service.capsule_modules: cannot import {mod!r}: {e}") from e
    ctx = ServiceContext.from_config(config)
    ledger_key = config.eil.get("ledger_key") if isinstance(config.eil, Mapping) else None
    install_redaction([*config.api_keys, *([ledger_key] if isinstance(ledger_key, str) else [])])
    app = ServiceApp(
        title="idf-jax service",
        version="0.1.0",
        description=__doc__ or "",
        lifespan=make_lifespan(ctx),
        responses={401: {"description": "missing or invalid API key"}},
    )
    app.state.metrics = ctx.metrics
    app.state.config = config
    app.state.runtime = ctx.state
    install_error_handlers(app)
    for group in (health, sample, equilibrium, jobs, nvp, eil, websocket, nvp_stream):
        app.include_router(group.router(ctx))
    app.add_middleware(BodyLimit, limit=config.limits.max_body_bytes)
    app.add_middleware(Auth, authenticator=ctx.authenticator)
    app.add_middleware(HTTPMetrics, metrics=ctx.metrics)
    app.enable_fast_predict(ctx)
    return app
