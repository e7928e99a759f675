"""GET /healthz (liveness), /readyz (readiness) and /metrics (Prometheus, needs a key)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from ..context import ServiceContext
from ..jobs import equilibrium_available
from ..metrics import CONTENT_TYPE_LATEST

__all__ = ["router"]


def router(ctx: ServiceContext) -> APIRouter:
    r = APIRouter(tags=["health"])
    state = ctx.state

    @r.get("/healthz")
    async def healthz():
        """Liveness: the process answers."""
        return {"status": "ok"}

    @r.get("/readyz", responses={503: {"description": "not ready"}})
    async def readyz():
        """Readiness: components loaded and not draining (and the Kafka broker reachable,
        when this instance ingests from Kafka)."""
        ready = state["ready"]
        kafka = state.get("kafka")
        if kafka is not None:
            ready = ready and kafka.connected
        body = {
            "ready": ready,
            "components": {
                "sample": True,
                "equilibrium": equilibrium_available(),
                "nvp": state["nvp"] is not None,
                "eil": state["eil"] is not None,
                "jobs": state["engine"] is not None,
            },
        }
        engine = state["engine"]
        if engine is not None:
            body["jobs"] = engine.stats()
        if kafka is not None:
            body["components"]["kafka"] = kafka.connected
            body["kafka"] = kafka.status()
        if "grpc" in state:
            body["components"]["grpc"] = True
        return JSONResponse(body, status_code=200 if ready else 503)

    @r.get("/metrics", dependencies=ctx.protected)
    async def metrics_route():
        """Prometheus metrics (text format 0.0.4)."""
        return Response(ctx.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return r
