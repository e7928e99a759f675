"""What the routes of one app share: configuration, metrics, the key check, the event hub,
the optional components (NVP, EIL) and the job engine (started by the lifespan)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

from fastapi import Depends
from fastapi.params import Depends as DependsParam

from .auth import Authenticator, security_dependencies
from .config import ServiceConfig
from .eil_service import EILService
from .engine import JobEngine
from .hub import EventHub
from .jobs import JobError
from .metrics import Metrics
from .nvp_service import NVPService

if TYPE_CHECKING:
    from .grpc.server import GrpcServer
    from .kafka import KafkaIngest

__all__ = ["Components", "ServiceContext"]


class Components(TypedDict):
    """The app's run state (`app.state.runtime`): ready, draining, and the components
    started by the lifespan (None: not configured in this instance, or not started)."""

    ready: bool
    draining: bool
    nvp: NVPService | None
    eil: EILService | None
    engine: JobEngine | None
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

    @classmethod
    def from_config(cls, config: ServiceConfig) -> ServiceContext:
        return cls(
            config=config,
            metrics=Metrics(),
            authenticator=Authenticator(config.api_keys, disabled=config.auth_disabled),
            hub=EventHub(),
            state={"ready": False, "draining": False, "nvp": None, "eil": None, "engine": None},
        )

    @property
    def protected(self) -> list[DependsParam]:
        """The dependencies of a route that needs a key."""
        return [Depends(d) for d in security_dependencies(self.authenticator)]

    def engine(self) -> JobEngine:
        """The job engine; a 503 `JobError` while the service starts or stops."""
        engine = self.state["engine"]
        if engine is None:
            raise JobError("job", "the job engine is not running (starting or stopping)", 503)
        return engine

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
