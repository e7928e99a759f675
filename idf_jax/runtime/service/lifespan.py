"""Start-up and shutdown of the service: load the NVP model (warmed up) and open the EIL
before the app reports ready; on shutdown report draining, then close both."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI

from .context import ServiceContext
from .eil_service import EILService, eil_importable
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
        state["ready"] = True
        log.info("idf service ready")
        try:
            yield
        finally:
            if stop_metrics is not None:
                stop_metrics()
            state["draining"] = True
            state["ready"] = False
            nvp, eil = state["nvp"], state["eil"]
            if nvp is not None:
                await nvp.close()
            if eil is not None:
                await eil.close()
                log.info("EIL ledger closed (kept in the state directory)")
            log.info("idf service stopped")

    return lifespan
