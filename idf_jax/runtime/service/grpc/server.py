"""The gRPC server beside the HTTP service: same process, same event loop, same components.

`start_grpc(ctx)` (called by the app's lifespan when `grpc_port` is set) serves
`inference.GRPCInferenceService` (KServe v2, the NVP forecaster), `idf.v1.Sampling`,
`grpc.health.v1.Health` and server reflection on `grpc_host:grpc_port`, with the HTTP
service's API keys (`auth.KeyInterceptor`) and its request size limit.
"""

from __future__ import annotations

import logging

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

# the asyncio servicer that `grpc_health.v1.health.aio` re-exports (pyright cannot see it there)
from grpc_health.v1._async import HealthServicer as AsyncHealthServicer
from grpc_reflection.v1alpha import reflection

from ..context import ServiceContext
from .auth import KeyInterceptor
from .inference import InferenceService
from .protos import generated
from .sampling import SamplingService

__all__ = ["GrpcServer", "start_grpc"]

log = logging.getLogger("idf_jax.runtime.service")


class GrpcServer:
    """A started `grpc.aio.Server`, the port it bound, and its health servicer."""

    def __init__(self, server: grpc.aio.Server, port: int, health, services: list[str]):
        self.server = server
        self.port = port
        self.health = health
        self.services = services

    async def stop(self, grace_s: float = 10.0) -> None:
        """Report NOT_SERVING, let in-flight calls finish for up to `grace_s`, stop."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_s)
        log.info("gRPC server stopped")


async def start_grpc(ctx: ServiceContext) -> GrpcServer:
    """Start serving gRPC for the app of `ctx` on `config.grpc_host:config.grpc_port`."""
    config = ctx.config
    gen = generated()
    size = config.limits.max_body_bytes
    server = grpc.aio.server(
        interceptors=[KeyInterceptor(ctx.authenticator)],
        options=[("grpc.max_receive_message_length", size), ("grpc.so_reuseport", 0)],
    )
    gen.inference_grpc.add_GRPCInferenceServiceServicer_to_server(
        InferenceService(ctx, gen), server
    )
    gen.sampling_grpc.add_SamplingServicer_to_server(SamplingService(ctx, gen), server)
    health = AsyncHealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    inference = gen.inference_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
    sampling = gen.sampling_pb2.DESCRIPTOR.services_by_name["Sampling"].full_name
    services = [inference, sampling]
    reflection.enable_server_reflection(
        [
            *services,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    address = f"{config.grpc_host}:{config.grpc_port}"
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as e:
        raise RuntimeError(f"grpc_port: cannot bind {address}: {e}") from e
    if not port:
        raise RuntimeError(f"grpc_port: cannot bind {address}")
    await server.start()
    serving = health_pb2.HealthCheckResponse.SERVING
    await health.set("", serving)
    await health.set(sampling, serving)
    has_nvp = ctx.state["nvp"] is not None
    await health.set(inference, serving if has_nvp else health_pb2.HealthCheckResponse.NOT_SERVING)
    log.info("gRPC listening on %s:%d", config.grpc_host, port)
    return GrpcServer(server, port, health, services)
