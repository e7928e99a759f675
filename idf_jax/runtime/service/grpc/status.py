"""gRPC status codes for the service's errors: a bad argument is INVALID_ARGUMENT naming the
field, a configured limit RESOURCE_EXHAUSTED, a component this instance lacks UNAVAILABLE;
bad input is never INTERNAL."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc
import pydantic

from ..batching import BatcherClosed
from ..jobs import JobError

__all__ = ["RpcError", "abort", "code_of", "rpc_errors"]

T = TypeVar("T")

_BY_STATUS = {
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    404: grpc.StatusCode.NOT_FOUND,
    503: grpc.StatusCode.UNAVAILABLE,
}


class RpcError(Exception):
    """A call that fails with `code`; `details` starts with the offending field."""

    def __init__(self, code: grpc.StatusCode, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.code = code
        self.details = f"{field}: {message}"


def invalid(field: str, message: str) -> RpcError:
    """INVALID_ARGUMENT naming `field`."""
    return RpcError(grpc.StatusCode.INVALID_ARGUMENT, field, message)


def code_of(e: BaseException) -> tuple[grpc.StatusCode, str] | None:
    """The (code, details) of an error raised by bad input or a limit; None for a bug."""
    if isinstance(e, RpcError):
        return e.code, e.details
    if isinstance(e, JobError):
        code = _BY_STATUS.get(e.status, grpc.StatusCode.INVALID_ARGUMENT)
        return code, f"{e.field}: {e.message}"
    if isinstance(e, pydantic.ValidationError):
        err = e.errors()[0]
        field = ".".join(str(p) for p in err.get("loc", ())) or "request"
        return grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {err.get('msg', str(e))}"
    if isinstance(e, BatcherClosed):
        return grpc.StatusCode.UNAVAILABLE, f"service: {e}"
    return None


async def abort(context: grpc.aio.ServicerContext, e: BaseException) -> NoReturn:
    """End the call with the status of `e` (re-raised when it is not an input error)."""
    found = code_of(e)
    if found is None:
        raise e
    await context.abort(*found)
    raise AssertionError("context.abort returned")  # abort always raises


def rpc_errors(
    fn: Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[T]],
) -> Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[T]]:
    """A unary servicer method whose input errors become their gRPC status."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> T:
        try:
            return await fn(self, request, context)
        except (RpcError, JobError, pydantic.ValidationError, BatcherClosed) as e:
            await abort(context, e)

    return wrapper
