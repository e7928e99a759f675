"""POST /v1/equilibrium: anneal a capsule's chains to low-energy states."""

from __future__ import annotations

import time

from fastapi import APIRouter

from ...._io import jsonable
from ..context import ServiceContext
from ..jobs import EquilibriumJob, run_equilibrium
from ..schemas import EquilibriumRequest, EquilibriumResponse
from .sample import check_params

__all__ = ["router"]


def router(ctx: ServiceContext) -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["sampling"], dependencies=ctx.protected)
    limits = ctx.config.limits

    @r.post(
        "/equilibrium",
        response_model=EquilibriumResponse,
        responses={413: {"description": "over a limit"}, 503: {"description": "not built"}},
    )
    async def equilibrium_route(req: EquilibriumRequest):
        """Anneal chains of a capsule to low-energy states with `idf.sample_equilibrium`."""
        check_params(req.params, limits)
        job = EquilibriumJob(**req.model_dump())
        t0 = time.perf_counter()
        _, _, summary = await ctx.run_job(lambda: run_equilibrium(job, limits=limits))
        ctx.metrics.samples.labels("equilibrium").inc(job.chains)
        ctx.metrics.steps.inc(job.chains * job.steps)
        return {
            "capsule": req.capsule,
            "summary": jsonable(summary),
            "elapsed_s": time.perf_counter() - t0,
        }

    return r
