"""The one place the gRPC Sampling service reaches the job code: the same functions the
HTTP /v1/sample and /v1/equilibrium routes call, run off the event loop in the service's
job slots (`ServiceContext.run_job`). Moving gRPC onto another job runner changes these
two functions only."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ...._io import jsonable
from .. import jobs
from ..context import ServiceContext
from ..routes.sample import check_params, sample_job, sample_payload
from ..schemas import EquilibriumRequest, SampleRequest

__all__ = ["run_equilibrium", "run_sample"]


async def run_sample(
    ctx: ServiceContext,
    req: SampleRequest,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """The response of POST /v1/sample for `req`; `on_progress(done, total)` is called from
    the worker thread as the chains advance."""
    limits = ctx.config.limits
    job = sample_job(req, limits)
    t0 = time.perf_counter()
    trace, _ = await ctx.run_job(
        lambda: jobs.run_sample(job, limits=limits, cache=ctx.sampler_cache, callback=on_progress)
    )
    return sample_payload(ctx, req, trace, time.perf_counter() - t0)


async def run_equilibrium(ctx: ServiceContext, req: EquilibriumRequest) -> dict[str, Any]:
    """The response of POST /v1/equilibrium for `req`."""
    limits = ctx.config.limits
    check_params(req.params, limits)
    job = jobs.EquilibriumJob(**req.model_dump())
    t0 = time.perf_counter()
    _, _, summary = await ctx.run_job(lambda: jobs.run_equilibrium(job, limits=limits))
    ctx.metrics.samples.labels("equilibrium").inc(job.chains)
    ctx.metrics.steps.inc(job.chains * job.steps)
    return {
        "capsule": req.capsule,
        "summary": jsonable(summary),
        "elapsed_s": time.perf_counter() - t0,
    }
