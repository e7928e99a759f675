"""The hot path of POST /v1/nvp/predict, in front of the FastAPI stack.

`FastPredict` is one pure-ASGI function: it authenticates (`Authenticator.authenticate`,
the same check the middleware would make, and whose answer the middleware then reuses),
reads the body, parses a canonical request with orjson and a hand check
(`NVPService.parse_fast`), submits it to the micro-batcher and writes the prediction bytes,
counting it in /metrics as `middleware.HTTPMetrics` does.

Anything else (a missing or wrong key, no or a too-large Content-Length, another content
type, a body that is not exactly a valid `{"history": [...]}`, no model loaded) goes, body
replayed, to the full FastAPI stack (`fallback`): its middlewares, pydantic validation and
the route answer it, so every error (401, 413, 422 naming the field, 503) is the one the
route gives. The route also stays the OpenAPI description of this path.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .batching import BatcherClosed
from .context import ServiceContext
from .errors import error_body

__all__ = ["PREDICT_PATH", "FastPredict", "ServiceApp"]

log = logging.getLogger("idf_jax.runtime.service")

PREDICT_PATH = "/v1/nvp/predict"


class FastPredict:
    """POST /v1/nvp/predict without FastAPI, for canonical requests (see the module)."""

    def __init__(self, ctx: ServiceContext, fallback: ASGIApp):
        self.ctx = ctx
        self.limit = ctx.config.limits.max_body_bytes
        self.fallback = fallback
        self._requests: dict[int, Any] = {}  # status -> counter child
        self._latency = ctx.metrics.latency.labels(PREDICT_PATH)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        t0 = time.perf_counter()
        nvp = self.ctx.state["nvp"]
        length = ctype = None
        for k, v in scope["headers"]:
            if k == b"content-length":
                length = v
            elif k == b"content-type":
                ctype = v
        if (
            nvp is None
            or not self.ctx.authenticator.authenticate(scope)
            or length is None
            or not length.isdigit()
            or int(length) > self.limit
            or ctype is None
            or ctype.split(b";", 1)[0].strip().lower() != b"application/json"
        ):
            return await self.fallback(scope, receive, send)
        msg = await receive()
        msgs = [msg]
        body = msg.get("body", b"")
        while msg["type"] == "http.request" and msg.get("more_body", False):
            msg = await receive()
            msgs.append(msg)
            body += msg.get("body", b"")
        x = None
        if msg["type"] == "http.request" and len(body) <= self.limit:
            try:
                x = nvp.parse_fast(body)
            except Exception:  # noqa: BLE001 - any doubt: the validated route decides
                x = None
        if x is None:
            return await self.fallback(scope, replay(msgs, receive), send)

        metrics = self.ctx.metrics
        metrics.in_flight.inc()
        status = 500
        try:
            ctype = b"application/json"
            try:
                pred = await nvp.submit(x)
                status, out = 200, b'{"prediction":' + pred + b"}"
            except BatcherClosed as e:
                status, out = 503, error_body("history", str(e), "unavailable")
            except ValueError as e:
                status, out = 422, error_body("history", str(e), "value_error")
            except Exception:
                log.exception("NVP prediction failed")
                status, out, ctype = 500, b"Internal Server Error", b"text/plain; charset=utf-8"
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-length", str(len(out)).encode()),
                        (b"content-type", ctype),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": out})
        finally:
            metrics.in_flight.dec()
            child = self._requests.get(status)
            if child is None:
                child = self._requests[status] = metrics.requests.labels(
                    PREDICT_PATH, "POST", str(status)
                )
            child.inc()
            self._latency.observe(time.perf_counter() - t0)


def replay(msgs: list[Message], receive: Receive) -> Receive:
    """A `receive` that gives `msgs` again, then the real ones."""
    pending = list(msgs)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


class ServiceApp(FastAPI):
    """FastAPI, with POST /v1/nvp/predict first offered to its fast path (`fast_predict`)."""

    fast_predict: FastPredict | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.fast_predict is not None
            and scope["type"] == "http"
            and scope["path"] == PREDICT_PATH
            and scope["method"] == "POST"
            and not scope.get("root_path")
            and not self.root_path
        ):
            return await self.fast_predict(scope, receive, send)
        return await super().__call__(scope, receive, send)

    def enable_fast_predict(self, ctx: ServiceContext) -> None:
        """Serve POST /v1/nvp/predict through `FastPredict`, falling back to this app."""

        async def full_stack(scope: Scope, receive: Receive, send: Send) -> None:
            await FastAPI.__call__(self, scope, receive, send)

        self.fast_predict = FastPredict(ctx, full_stack)
