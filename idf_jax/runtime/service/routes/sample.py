"""GET /v1/capsules and POST /v1/sample (a job of the engine, awaited), and the helpers
the WebSocket shares."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ..config import Limits
from ..context import ServiceContext
from ..engine.tasks import check_params
from ..jobs import SampleJob
from ..presets import with_preset
from ..schemas import CapsuleInfoModel, SampleRequest, SampleResponse
from .jobs import run_sync

__all__ = ["check_params", "count_samples", "router", "sample_job"]


def sample_job(req: SampleRequest, limits: Limits) -> SampleJob:
    """The job of a validated request (parameters checked against `limits`)."""
    check_params(req.params, limits)
    return SampleJob(**req.model_dump(exclude={"return_positions", "preset"}))


def count_samples(ctx: ServiceContext, req: SampleRequest, result: dict[str, Any]) -> None:
    """Count a finished sampling job's draws and steps in /metrics."""
    summary = result.get("summary") or {}
    chains, draws = int(summary.get("chains", 0)), int(summary.get("draws", 0))
    ctx.metrics.samples.labels("sample").inc(chains * draws)
    ctx.metrics.steps.inc(chains * req.steps)


def router(ctx: ServiceContext) -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["sampling"], dependencies=ctx.protected)
    limits = ctx.config.limits

    @r.get("/capsules", response_model=list[CapsuleInfoModel])
    async def list_capsules():
        """Registered capsules: name, one-line description, parameters."""
        import capsules

        return [
            CapsuleInfoModel(name=i.name, description=i.description, parameters=i.parameters)
            for i in capsules.registry().values()
        ]

    @r.post(
        "/sample",
        response_model=SampleResponse,
        responses={
            413: {"description": "over a limit"},
            429: {"description": "job queue full (Retry-After)"},
            504: {"description": "over the wall-time budget"},
            507: {"description": "over the memory budget"},
        },
    )
    async def sample_route(req: SampleRequest, request: Request):
        """Draw samples from exp(-E(x)/T) of a capsule with `idf.sample`.

        Runs as a job of the engine (a worker process, under the service's budgets); the
        request waits for it, and a client that disconnects cancels it."""
        req = with_preset(req, ctx.engine().state_dir)
        sample_job(req, limits)
        result = await run_sync(ctx, "sample", req.model_dump(), request)
        count_samples(ctx, req, result)
        return result

    return r
