"""GET /v1/capsules and POST /v1/sample, and the sampling-job helpers the WebSocket shares."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from fastapi import APIRouter

from ...._io import jsonable
from ..config import Limits
from ..context import ServiceContext
from ..jobs import JobError, SampleJob, positions_as_lists, run_sample, summarize_trace
from ..schemas import CapsuleInfoModel, SampleRequest, SampleResponse

__all__ = ["check_params", "router", "sample_job", "sample_payload"]


def check_params(params: dict[str, Any], limits: Limits) -> None:
    """413 for capsule parameters that would size a state over `limits.max_dimensions`."""
    for k, v in params.items():
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) > limits.max_dimensions:
            raise JobError(
                f"params.{k}",
                f"integer parameter {v} is over the limit {limits.max_dimensions} "
                "(integer parameters size the state)",
                413,
            )
        if isinstance(v, list) and len(v) > limits.max_dimensions:
            raise JobError(
                f"params.{k}",
                f"list of {len(v)} values is over the limit {limits.max_dimensions}",
                413,
            )


def sample_job(req: SampleRequest, limits: Limits) -> SampleJob:
    """The job of a validated request (parameters checked against `limits`)."""
    check_params(req.params, limits)
    return SampleJob(**req.model_dump(exclude={"return_positions"}))


def sample_payload(ctx: ServiceContext, req: SampleRequest, trace, elapsed: float) -> dict:
    """The response of a finished job (counted in /metrics): summary, and the positions and
    energies when asked (413 when more values than `max_draws_returned`)."""
    limits = ctx.config.limits
    energies = np.asarray(trace.energies)
    chains, draws = energies.shape[:2]
    ctx.metrics.samples.labels("sample").inc(chains * draws)
    ctx.metrics.steps.inc(chains * req.steps)
    out = {
        "capsule": req.capsule,
        "sampler": req.sampler,
        "summary": summarize_trace(trace),
        "elapsed_s": elapsed,
    }
    if req.return_positions != "none":
        import jax

        pos = trace.positions
        if req.return_positions == "final":
            pos = jax.tree.map(lambda l: l[:, -1], pos)
        size = sum(int(np.size(l)) for l in jax.tree.leaves(pos))
        if size > limits.max_draws_returned:
            raise JobError(
                "return_positions",
                f"{size} values to return, over the limit {limits.max_draws_returned}; "
                "thin more, or ask for 'final'",
                413,
            )
        out["positions"] = positions_as_lists(pos)
        out["energies"] = jsonable(energies)
    return out


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
        responses={413: {"description": "over a limit"}},
    )
    async def sample_route(req: SampleRequest):
        """Draw samples from exp(-E(x)/T) of a capsule with `idf.sample`."""
        job = sample_job(req, limits)
        t0 = time.perf_counter()
        trace, _ = await ctx.run_job(
            lambda: run_sample(job, limits=limits, cache=ctx.sampler_cache)
        )
        return sample_payload(ctx, req, trace, time.perf_counter() - t0)

    return r
