"""Start-up and shutdown of the service: load the NVP model (warmed up) and open the EIL
before the app reports ready; on shutdown report draining, then close both."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
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
            eil = EILService(config.eil if isinstance(config.eil, Mapping) else {})
            await eil.start()
            state["eil"] = eil
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
            state["draining"] = True
            state["ready"] = False
            if "kafka" in state:
                await state["kafka"].stop()
            if "grpc" in state:
                await state["grpc"].stop()
            nvp, eil = state["nvp"], state["eil"]
            if nvp is not None:
                await nvp.close()
            if eil is not None:
                await eil.close()
                log.info("EIL ledger closed")
            log.info("idf service stopped")

    return lifespan
