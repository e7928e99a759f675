"""API keys: one parser, one constant-time check, run once per request.

A request presents its key as `Authorization: Bearer <key>` or `X-API-Key: <key>`; a
WebSocket may instead pass `?api_key=<key>` (browsers cannot set headers on one). The HTTP
middleware, the NVP fast path, the WebSocket stream and the routes' dependency all call
`Authenticator.authenticate(scope)`, which parses and checks the key the first time and
keeps the answer in the ASGI scope, so a request handed from one to the next is never
checked twice.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Sequence
from urllib.parse import parse_qsl

from fastapi import HTTPException, Request
from fastapi.openapi.models import APIKey, APIKeyIn
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.openapi.models import SecurityBase as SecurityModel
from fastapi.security.base import SecurityBase
from starlette.types import Scope, Send

__all__ = [
    "HINT",
    "PUBLIC_PATHS",
    "Authenticator",
    "RequireKey",
    "request_api_key",
    "security_dependencies",
    "send_unauthorized",
]

HINT = "missing or invalid API key (Authorization: Bearer <key>, or X-API-Key: <key>)"
"""The message of every 401 answer."""

PUBLIC_PATHS = frozenset(
    ("/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")
)
"""Paths served without a key (liveness, readiness, the API description)."""

_SCOPE_KEY = "idf.authenticated"  # where `authenticate` keeps its answer in the scope


def request_api_key(scope: Scope) -> str | None:
    """The API key a request presents, or None.

    The first `Authorization` header if it is `Bearer <key>`; else the first `X-API-Key`
    header; else, for a WebSocket only, the (last) `api_key` query parameter.
    """
    bearer = header_key = None
    seen_authorization = False
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            if not seen_authorization:
                seen_authorization = True
                raw = value.decode("latin-1")
                if raw[:7].lower() == "bearer ":
                    bearer = raw[7:].strip()
        elif name == b"x-api-key" and header_key is None:
            header_key = value.decode("latin-1").strip()
    key = bearer or header_key
    if not key and scope.get("type") == "websocket":
        query = scope.get("query_string", b"").decode("latin-1")
        for name, value in parse_qsl(query, keep_blank_values=True):
            if name == "api_key":
                key = value
    return key or None


class Authenticator:
    """The service's accepted keys, compared in constant time.

    Args:
        api_keys: the accepted keys.
        disabled: accept every request (local development only).
    """

    def __init__(self, api_keys: Sequence[str], *, disabled: bool = False):
        self._keys = [k.encode() for k in api_keys]
        self.disabled = disabled

    def check(self, key: str | None) -> bool:
        """Whether `key` is one of the accepted keys (always true when disabled)."""
        if self.disabled:
            return True
        if not key:
            return False
        given = key.encode()
        ok = False
        for k in self._keys:  # always compare against every key: time does not reveal which
            ok |= hmac.compare_digest(given, k)
        return ok

    def authenticate(self, scope: Scope) -> bool:
        """Whether the request of `scope` presents an accepted key; checked once per scope."""
        ok = scope.get(_SCOPE_KEY)
        if ok is None:
            ok = scope[_SCOPE_KEY] = self.check(request_api_key(scope))
        return bool(ok)


async def send_unauthorized(send: Send) -> None:
    """Answer an HTTP request with 401 and `{"detail": HINT}`."""
    body = json.dumps({"detail": HINT}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b"Bearer"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequireKey(SecurityBase):
    """The protected routes' dependency: names an accepted way of giving the key in the
    OpenAPI description, and answers 401 for a request `Authenticator.authenticate` refuses
    (the middleware's answer, kept in the scope: not a second check)."""

    def __init__(self, authenticator: Authenticator, model: SecurityModel, scheme_name: str):
        self.authenticator = authenticator
        self.model = model
        self.scheme_name = scheme_name

    async def __call__(self, request: Request) -> None:
        if not self.authenticator.authenticate(request.scope):
            raise HTTPException(401, HINT, headers={"WWW-Authenticate": "Bearer"})


def security_dependencies(authenticator: Authenticator) -> list[RequireKey]:
    """The dependencies of a protected route: `Authorization: Bearer` or `X-API-Key`."""
    return [
        RequireKey(authenticator, HTTPBearerModel(), "HTTPBearer"),
        RequireKey(
            authenticator,
            APIKey.model_validate({"in": APIKeyIn.header, "name": "X-API-Key"}),
            "APIKeyHeader",
        ),
    ]
