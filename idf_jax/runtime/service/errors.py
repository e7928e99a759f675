"""Error answers in FastAPI's shape, `{"detail": [{"loc": [...], "msg": ..., "type": ...}]}`.

422 for an invalid value, 413 for a value over a configured limit, 404 for something not
found, 429 (with Retry-After) when the job queue is full, 503 for a component not
configured in this instance, 504 / 507 for a job stopped over its wall-time / memory
budget; the WebSocket stream sends the same as `{"type": "error", "status", "detail"}` messages.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from ..._io import jsonable
from .jobs import JobError

__all__ = [
    "error_body",
    "error_response",
    "install_error_handlers",
    "job_error_response",
    "ws_error",
    "ws_validation_error",
]


def error_response(status: int, field: str, msg: str, kind: str = "value_error") -> JSONResponse:
    """A JSON error answer naming the body field `field`."""
    return JSONResponse(
        status_code=status, content={"detail": [{"loc": ["body", field], "msg": msg, "type": kind}]}
    )


def error_body(field: str, msg: str, kind: str) -> bytes:
    """The bytes of `error_response`'s body (for pure-ASGI answers)."""
    return orjson.dumps({"detail": [{"loc": ["body", field], "msg": msg, "type": kind}]})


def job_error_response(e: JobError) -> JSONResponse:
    """A `JobError` as its answer: the status and field it carries."""
    kind = {
        404: "not_found",
        413: "limit_exceeded",
        429: "queue_full",
        499: "cancelled",
        503: "unavailable",
        504: "timeout",
        507: "out_of_memory",
    }.get(e.status, "value_error")
    response = error_response(e.status, e.field, e.message, kind)
    retry_after = getattr(e, "retry_after", None)
    if retry_after is not None:
        response.headers["Retry-After"] = str(int(retry_after))
    return response


def ws_error(status: int, detail: Any) -> dict[str, Any]:
    """An error message of the WebSocket stream."""
    return {"type": "error", "status": status, "detail": detail}


def ws_validation_error(e: ValidationError) -> dict[str, Any]:
    """A pydantic ValidationError as the WebSocket's error message (status 422)."""
    detail = [{"loc": list(x["loc"]), "msg": x["msg"]} for x in e.errors()]
    return ws_error(422, jsonable(detail))


async def _on_job_error(request: Request, e: JobError) -> JSONResponse:
    return job_error_response(e)


async def _on_validation(request: Request, e: RequestValidationError) -> JSONResponse:
    errs = [
        {
            "loc": list(err.get("loc", ())),
            "msg": str(err.get("msg", "")),
            "type": err.get("type", ""),
        }
        for err in e.errors()
    ]
    return JSONResponse(status_code=422, content={"detail": errs})


def install_error_handlers(app: FastAPI) -> None:
    """Answer `JobError` and request validation errors in the shape above."""
    app.exception_handler(JobError)(_on_job_error)
    app.exception_handler(RequestValidationError)(_on_validation)
