"""The asynchronous job API, and the synchronous wait the sampling routes share.

    POST   /v1/jobs            {kind, payload, budgets?} -> 202 {id, status}
    GET    /v1/jobs            newest jobs (no results); ?status=...&limit=...
    GET    /v1/jobs/{id}       status, progress, result (when done), error
    DELETE /v1/jobs/{id}       cancel a queued or running job

`run_sync` submits a job to the engine and awaits it without blocking the event loop,
polling the client connection: a client that disconnects cancels its job.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from ..context import ServiceContext
from ..engine import Budgets, JobEngine, JobRecord
from ..engine.tasks import check_params
from ..jobs import JobError
from ..presets import with_preset
from ..schemas import (
    EquilibriumRequest,
    JobAccepted,
    JobInfo,
    JobRequest,
    SampleRequest,
    TrainRequest,
)

__all__ = ["budgets_of", "raise_for", "router", "run_sync"]

_MODELS = {"sample": SampleRequest, "equilibrium": EquilibriumRequest, "train": TrainRequest}
JobId = Path(..., min_length=1, max_length=64, pattern=r"^[0-9a-f]+$")


def budgets_of(engine: JobEngine, wall_s: float | None, memory_mb: float | None) -> Budgets:
    """The job's budgets: the given ones (each capped by the service's), else the service's."""
    top = engine.max_budgets
    return Budgets(
        wall_s=top.wall_s if wall_s is None else wall_s,
        memory_mb=top.memory_mb if memory_mb is None else memory_mb,
    ).capped(top)


def raise_for(rec: JobRecord) -> Any:
    """The result of a finished job, or its error raised as a `JobError`."""
    if rec.status == "done":
        return rec.result
    err = rec.error or {}
    raise JobError(
        str(err.get("field", "job")),
        str(err.get("message", f"the job ended with status {rec.status}")),
        int(err.get("status", 500)),
    )


async def run_sync(
    ctx: ServiceContext,
    kind: str,
    payload: dict[str, Any],
    request: Request | None = None,
    poll_s: float = 0.25,
) -> Any:
    """Run a job to its end for a synchronous route; cancel it if the client goes away."""
    engine = ctx.engine()
    job_id = engine.submit(kind, payload)
    waiter = asyncio.ensure_future(engine.wait(job_id))
    try:
        while True:
            done, _ = await asyncio.wait({waiter}, timeout=poll_s)
            if done:
                break
            if request is not None and await request.is_disconnected():
                engine.cancel(job_id)
                break
        rec = await waiter
    except asyncio.CancelledError:
        engine.cancel(job_id)
        raise
    return raise_for(rec)


def router(ctx: ServiceContext) -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["jobs"], dependencies=ctx.protected)
    limits = ctx.config.limits

    @r.post(
        "/jobs",
        status_code=202,
        response_model=JobAccepted,
        responses={
            413: {"description": "over a limit"},
            429: {"description": "queue full (Retry-After)"},
        },
    )
    async def submit_job(req: JobRequest):
        """Queue a sampling, equilibrium or NVP training job; poll `GET /v1/jobs/{id}` for
        its result."""
        try:
            body = _MODELS[req.kind](**req.payload)
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(p) for p in err.get("loc", ()))
            raise JobError(f"payload.{loc}" if loc else "payload", str(err.get("msg"))) from e
        engine = ctx.engine()
        if isinstance(body, SampleRequest):
            try:
                body = with_preset(body, engine.state_dir)
            except JobError as e:
                raise JobError(f"payload.{e.field}", e.message, e.status) from e
        if not isinstance(body, TrainRequest):
            check_params(body.params, limits)
        b = budgets_of(engine, req.budgets.wall_s, req.budgets.memory_mb)
        job_id = engine.submit(req.kind, body.model_dump(), b)
        return {"id": job_id, "status": "queued"}

    @r.get("/jobs", response_model=list[JobInfo])
    async def list_jobs(
        status: str | None = Query(None, max_length=20),
        limit: int = Query(100, ge=1, le=1000),
    ):
        """The newest jobs, results left out."""
        return [
            rec.public(with_result=False) for rec in ctx.engine().list(limit=limit, status=status)
        ]

    @r.get(
        "/jobs/{job_id}", response_model=JobInfo, responses={404: {"description": "no such job"}}
    )
    async def get_job(job_id: str = JobId):
        """A job's status, progress (0..1), result (once done) and error."""
        rec = ctx.engine().status(job_id)
        if rec is None:
            raise JobError("id", f"no job {job_id!r}", 404)
        return rec.public()

    @r.delete("/jobs/{job_id}", responses={404: {"description": "no such job"}})
    async def cancel_job(job_id: str = JobId):
        """Cancel a queued or running job (a finished job is left as it is)."""
        engine = ctx.engine()
        if engine.status(job_id) is None:
            raise JobError("id", f"no job {job_id!r}", 404)
        cancelled = engine.cancel(job_id)
        rec = await engine.wait(job_id, timeout=30) if cancelled else engine.status(job_id)
        status = rec.status if rec is not None else "unknown"
        return JSONResponse({"id": job_id, "cancelled": cancelled, "status": status})

    return r
