"""What the routes of one app share: configuration, metrics, the key check, the event hub,
the optional components (NVP, EIL) and the slots that bound concurrent sampling jobs."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict, TypeVar

from fastapi import Depends
from fastapi.params import Depends as DependsParam

from .auth import Authenticator, security_dependencies
from .config import ServiceConfig
from .eil_service import EILService
from .hub import EventHub
from .jobs import _LRU, JobError
from .metrics import Metrics
from .nvp_service import NVPService

if TYPE_CHECKING:
    from .grpc.server import GrpcServer
    from .kafka import KafkaIngest

__all__ = ["Components", "ServiceContext"]

T = TypeVar("T")


class Components(TypedDict):
    """The app's run state (`app.state.runtime`): ready, draining, and the components
    started by the lifespan (None: not configured in this instance)."""

    ready: bool
    draining: bool
    nvp: NVPService | None
    eil: EILService | None
    grpc: NotRequired[GrpcServer]  # started when config.grpc_port is set
    kafka: NotRequired[KafkaIngest]  # started when config.kafka_bootstrap is set


@dataclasses.dataclass
class ServiceContext:
    """One app's shared objects; `ServiceContext.from_config` builds them."""

    config: ServiceConfig
    metrics: Metrics
    authenticator: Authenticator
    hub: EventHub
    state: Components
    job_slots: threading.BoundedSemaphore
    sampler_cache: _LRU

    @classmethod
    def from_config(cls, config: ServiceConfig) -> ServiceContext:
        return cls(
            config=config,
            metrics=Metrics(),
            authenticator=Authenticator(config.api_keys, disabled=config.auth_disabled),
            hub=EventHub(),
            state={"ready": False, "draining": False, "nvp": None, "eil": None},
            job_slots=threading.BoundedSemaphore(config.max_concurrent_jobs),
            sampler_cache=_LRU(config.sampler_cache_size),
        )

    @property
    def protected(self) -> list[DependsParam]:
        """The dependencies of a route that needs a key."""
        return [Depends(d) for d in security_dependencies(self.authenticator)]

    async def run_job(self, fn: Callable[[], T]) -> T:
        """`fn()` in a worker thread, once one of `config.max_concurrent_jobs` slots is free."""

        def guarded() -> T:
            with self.job_slots:
                return fn()

        return await asyncio.get_running_loop().run_in_executor(None, guarded)

    def eil(self) -> EILService:
        """The EIL component; a 503 `JobError` when this instance has none."""
        eil = self.state["eil"]
        if eil is None:
            raise JobError("eil", "the EIL is not available in this service", 503)
        return eil

    def count_decision(self, decision: Any) -> None:
        """Count an EIL decision by its action type in /metrics."""
        kind = decision.get("type", "unknown") if isinstance(decision, dict) else "unknown"
        self.metrics.decisions.labels(str(kind)).inc()
