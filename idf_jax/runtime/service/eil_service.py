"""The EIL decision loop behind /v1/eil/* and /v1/ledger/verify."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from ...eil import EILOptimizer

__all__ = ["EILService", "eil_importable"]

T = TypeVar("T")


def eil_importable() -> bool:
    """Whether `idf_jax.eil` is installed."""
    try:
        from ...eil import EILOptimizer  # noqa: F401
    except ImportError:
        return False
    return True


class EILService:
    """One `EILOptimizer(**kwargs)` used from one dedicated thread (SQLite connections are
    per thread): every call runs there, in order."""

    def __init__(self, kwargs: Mapping[str, Any]):
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="idf-eil")
        self._kwargs = dict(kwargs)
        self.eil: EILOptimizer | None = None

    async def start(self) -> None:
        """Build the optimizer (opens its store) in the EIL thread."""

        def make() -> EILOptimizer:
            from ...eil import EILOptimizer

            return EILOptimizer(**self._kwargs)

        self.eil = await asyncio.get_running_loop().run_in_executor(self._executor, make)

    def _started(self) -> EILOptimizer:
        if self.eil is None:
            raise RuntimeError("the EIL service is not started")
        return self.eil

    async def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """`eil.<name>(*args, **kwargs)`, run in the EIL thread."""
        fn = getattr(self._started(), name)
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, lambda: fn(*args, **kwargs)
        )

    async def run(self, fn: Callable[[EILOptimizer], T]) -> T:
        """`fn(eil)`, run in the EIL thread (several calls in one step, in order)."""
        eil = self._started()
        return await asyncio.get_running_loop().run_in_executor(self._executor, lambda: fn(eil))

    async def verify(self) -> dict[str, Any]:
        """Re-check the hash chain and signatures of the whole ledger."""
        eil = self._started()
        return await asyncio.get_running_loop().run_in_executor(self._executor, eil.verify_ledger)

    async def close(self) -> None:
        """Close the optimizer's store (in its thread) and stop the thread."""
        if self.eil is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self.eil.close)
        self._executor.shutdown(wait=True)
