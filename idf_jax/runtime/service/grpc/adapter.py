"""The one place the gRPC Sampling service reaches the job code: jobs of the service's
`JobEngine` (worker processes, the same budgets, queue and validation as HTTP), exactly as
POST /v1/sample and /v1/equilibrium run them. A cancelled call cancels its job."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ..context import ServiceContext
from ..engine.tasks import check_params
from ..presets import with_preset
from ..routes.jobs import raise_for
from ..routes.sample import count_samples, sample_job
from ..schemas import EquilibriumRequest, SampleRequest

__all__ = ["run_equilibrium", "run_sample"]


async def _run(
    ctx: ServiceContext,
    kind: str,
    payload: dict[str, Any],
    on_progress: Callable[[int, int], None] | None = None,
) -> Any:
    engine = ctx.engine()
    job_id = engine.submit(kind, payload)
    unsubscribe = None
    if on_progress is not None:

        def forward(ev: dict[str, Any]) -> None:
            if ev.get("type") == "progress" and ev.get("num_steps"):
                on_progress(int(ev["steps_done"]), int(ev["num_steps"]))

        unsubscribe = engine.subscribe(job_id, forward)
    try:
        rec = await engine.wait(job_id)
    except asyncio.CancelledError:
        engine.cancel(job_id)
        raise
    finally:
        if unsubscribe is not None:
            unsubscribe()
    return raise_for(rec)


async def run_sample(
    ctx: ServiceContext,
    req: SampleRequest,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """The response of POST /v1/sample for `req`; `on_progress(done, total)` is called
    (from an engine thread) as the chains advance."""
    req = with_preset(req, ctx.engine().state_dir)
    sample_job(req, ctx.config.limits)  # the route's checks, before queueing
    result = await _run(ctx, "sample", req.model_dump(), on_progress)
    count_samples(ctx, req, result)
    return result


async def run_equilibrium(ctx: ServiceContext, req: EquilibriumRequest) -> dict[str, Any]:
    """The response of POST /v1/equilibrium for `req`."""
    check_params(req.params, ctx.config.limits)
    result = await _run(ctx, "equilibrium", req.model_dump())
    ctx.metrics.samples.labels("equilibrium").inc(req.chains)
    ctx.metrics.steps.inc(req.chains * req.steps)
    return result
