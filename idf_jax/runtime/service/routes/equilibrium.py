"""POST /v1/equilibrium: anneal a capsule's chains to low-energy states."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ..context import ServiceContext
from ..engine.tasks import check_params
from ..schemas import EquilibriumRequest, EquilibriumResponse
from .jobs import run_sync

__all__ = ["router"]


def router(ctx: ServiceContext) -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["sampling"], dependencies=ctx.protected)
    limits = ctx.config.limits

    @r.post(
        "/equilibrium",
        response_model=EquilibriumResponse,
        responses={
            413: {"description": "over a limit"},
            429: {"description": "job queue full (Retry-After)"},
            503: {"description": "not running"},
            504: {"description": "over the wall-time budget"},
            507: {"description": "over the memory budget"},
        },
    )
    async def equilibrium_route(req: EquilibriumRequest, request: Request):
        """Anneal chains of a capsule to low-energy states with `idf.sample_equilibrium`
        (a job of the engine, awaited; a client that disconnects cancels it)."""
        check_params(req.params, limits)
        result = await run_sync(ctx, "equilibrium", req.model_dump(), request)
        ctx.metrics.samples.labels("equilibrium").inc(req.chains)
        ctx.metrics.steps.inc(req.chains * req.steps)
        return result

    return r
