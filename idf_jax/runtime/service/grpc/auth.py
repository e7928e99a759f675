"""API keys on gRPC: `authorization: Bearer KEY` (or `x-api-key: KEY`) metadata on every
call but the health and reflection services, checked by the service's `Authenticator`
(the same keys, the same constant-time comparison as HTTP)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc

from ..auth import HINT, Authenticator

__all__ = ["PUBLIC_PREFIXES", "KeyInterceptor", "metadata_key"]

PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
"""Methods served without a key (health checks, server reflection)."""


def metadata_key(metadata: Sequence[tuple[str, Any]] | None) -> str | None:
    """The key a call presents: the first `authorization: Bearer <key>`, else `x-api-key`."""
    bearer = header = None
    seen_authorization = False
    for name, value in metadata or ():
        if not isinstance(value, str):
            continue
        if name == "authorization" and not seen_authorization:
            seen_authorization = True
            if value[:7].lower() == "bearer ":
                bearer = value[7:].strip()
        elif name == "x-api-key" and header is None:
            header = value.strip()
    return bearer or header or None


class KeyInterceptor(grpc.aio.ServerInterceptor):
    """Answers `UNAUTHENTICATED` to a call without an accepted key (public methods pass)."""

    def __init__(self, authenticator: Authenticator):
        self.authenticator = authenticator

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = getattr(handler_call_details, "method", "") or ""
        handler = await continuation(handler_call_details)
        if handler is None or method.startswith(PUBLIC_PREFIXES):
            return handler
        meta = getattr(handler_call_details, "invocation_metadata", None)
        if self.authenticator.check(metadata_key(meta)):
            return handler
        return _refusal(handler)


async def _refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, HINT)


def _refusal(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same kind as `handler` that answers UNAUTHENTICATED."""
    kw = dict(
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(_refuse, **kw)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(_refuse, **kw)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(_refuse, **kw)
    return grpc.unary_unary_rpc_method_handler(_refuse, **kw)
