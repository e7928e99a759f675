"""Start-up and shutdown of the service: load the NVP model (warmed up), open the EIL and
start the job engine before the app reports ready; on shutdown report draining, then close
them (the engine's job table stays in the state directory)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI

from .context import ServiceContext
from .eil_service import EILService, eil_importable
from .engine import Budgets, JobEngine
from .nvp_service import NVPService, nvp_importable

__all__ = ["make_lifespan"]

log = logging.getLogger("idf_jax.runtime.service")


def make_lifespan(ctx: ServiceContext) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The FastAPI `lifespan` of the app that shares `ctx`."""
    config, state = ctx.config, ctx.state

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        path = config.nvp_model_path
        if path and (path != "default" or nvp_importable()):

            def make_nvp() -> NVPService:
                nvp = NVPService(path, config, ctx.metrics)
                nvp.warm_up()
                return nvp

            state["nvp"] = await asyncio.get_running_loop().run_in_executor(None, make_nvp)
        if config.eil is not False and eil_importable():
            eil = EILService.from_config(config, ctx.metrics)  # in the state directory
            await eil.start()
            state["eil"] = eil
        stop_metrics = None
        if config.metrics_port is not None:  # the unkeyed scrape port
            stop_metrics = ctx.metrics.serve(config.metrics_port)
            log.info("metrics for scrapers on port %d", config.metrics_port)
        state["engine"] = await asyncio.get_running_loop().run_in_executor(None, make_engine, ctx)
        ctx.metrics.bind_engine(lambda: state["engine"])
        if config.grpc_port is not None:
            from .grpc.server import start_grpc

            state["grpc"] = await start_grpc(ctx)
        if config.kafka_bootstrap is not None:
            from .kafka import start_kafka

            state["kafka"] = await start_kafka(ctx)
        state["ready"] = True
        log.info("idf service ready")
        try:
            yield
        finally:
            if stop_metrics is not None:
                stop_metrics()
            state["draining"] = True
            state["ready"] = False
            if "kafka" in state:
                await state["kafka"].stop()
            if "grpc" in state:
                await state["grpc"].stop()
            engine, state["engine"] = state["engine"], None
            if engine is not None:
                await asyncio.get_running_loop().run_in_executor(None, engine.close)
            nvp, eil = state["nvp"], state["eil"]
            if nvp is not None:
                await nvp.close()
            if eil is not None:
                await eil.close()
                log.info("EIL ledger closed (kept in the state directory)")
            log.info("idf service stopped")

    return lifespan


def make_engine(ctx: ServiceContext) -> JobEngine:
    """The job engine of `ctx`'s configuration, started (workers spawn on the first job,
    or now with `prewarm_workers`)."""
    import capsules

    from ..state import state_dir

    capsules.registry()  # import every domain now, not on the first request
    config = ctx.config
    engine = JobEngine(
        state_dir(config.state_dir),
        limits=config.limits,
        workers=config.max_concurrent_jobs,
        queue_size=config.job_queue_size,
        budgets=Budgets(wall_s=config.job_wall_s, memory_mb=config.job_memory_mb),
        modules=config.capsule_modules,
        sampler_cache_size=config.sampler_cache_size,
        retention_s=config.job_retention_days * 86400.0,
        max_rows=config.job_max_rows,
        prune_interval_s=config.job_prune_interval_s,
        on_finish=ctx.metrics.job_finished,
        on_prune=ctx.metrics.jobs_pruned.inc,
    )
    engine.start(prewarm=config.prewarm_workers)
    return engine
