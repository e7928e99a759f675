"""Pure ASGI middlewares of the service: body limit, authentication, HTTP metrics.

Outermost first: `HTTPMetrics` (every answer is counted, 401 and 413 included), `Auth`
(401 before the body is read or validated, so an unauthenticated client learns nothing
from validation errors), `BodyLimit` (413 for a body over the limit, declared or streamed).
"""

from __future__ import annotations

import json
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import PUBLIC_PATHS, Authenticator, send_unauthorized
from .metrics import Metrics

__all__ = ["Auth", "BodyLimit", "HTTPMetrics"]


class _BodyTooLarge(Exception):
    pass


class BodyLimit:
    """413 for HTTP bodies over `limit` bytes: by Content-Length, or counted as they stream."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for k, v in scope.get("headers", ()):
            if k == b"content-length":
                try:
                    n = int(v)
                except ValueError:
                    n = -1
                if n < 0 or n > self.limit:
                    return await self._reject(send, n)
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    raise _BodyTooLarge()
            return msg

        async def tracking_send(msg: Message) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._reject(send, seen)

    async def _reject(self, send: Send, n: int) -> None:
        body = json.dumps(
            {
                "detail": [
                    {
                        "loc": ["body"],
                        "type": "limit_exceeded",
                        "msg": f"request body of {n} bytes is over the limit of {self.limit} bytes",
                    }
                ]
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class Auth:
    """401 for HTTP requests to a protected path without an accepted key."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator):
        self.app, self.authenticator = app, authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("path") in PUBLIC_PATHS
            or self.authenticator.authenticate(scope)
        ):
            return await self.app(scope, receive, send)
        await send_unauthorized(send)


class HTTPMetrics:
    """Request counts and latencies by route template, and the requests in flight."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = 500
        t0 = time.perf_counter()

        async def send_wrapper(msg: Message) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = msg["status"]
            await send(msg)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.in_flight.dec()
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(label, scope.get("method", ""), str(status)).inc()
            self.metrics.latency.labels(label).observe(time.perf_counter() - t0)
