"""`idf.v1.Sampling` over gRPC: Sample, Equilibrium and SampleStream (progress, then the
result), validated by the HTTP API's request models and run by `adapter`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import json_format

from ..context import ServiceContext
from ..schemas import EquilibriumRequest, SampleRequest
from . import adapter
from .protos import Generated
from .status import abort, code_of, rpc_errors

__all__ = ["SamplingService", "request_fields"]

_SAMPLE_FIELDS = (
    "sampler",
    "chains",
    "steps",
    "thin",
    "burn_in",
    "step_size",
    "temperature",
    "friction",
    "num_integration_steps",
    "seed",
    "return_positions",
    "preset",
)
_EQUILIBRIUM_FIELDS = ("chains", "steps", "seed", "relax")


def _integral(value: Any) -> Any:
    """Struct numbers are doubles: an integral one (4.0) becomes the int 4, in lists too."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def request_fields(msg: Any, optional: tuple[str, ...]) -> dict[str, Any]:
    """The JSON body of the HTTP request equivalent to a Sample/Equilibrium message: the
    capsule, its params, and the optional fields the message sets."""
    body: dict[str, Any] = {"capsule": msg.capsule}
    if msg.HasField("params"):
        params = json_format.MessageToDict(msg.params)
        body["params"] = {k: _integral(v) for k, v in params.items()}
    for f in optional:
        if msg.HasField(f):
            body[f] = getattr(msg, f)
    return body


class SamplingService:
    """The servicer of `idf.v1.Sampling` (registered with the generated `add_..._to_server`)."""

    def __init__(self, ctx: ServiceContext, gen: Generated):
        self.ctx = ctx
        self.pb = gen.sampling_pb2

    def _sample_response(self, out: dict[str, Any]) -> Any:
        resp = self.pb.SampleResponse(
            capsule=out["capsule"], sampler=out["sampler"], elapsed_s=out["elapsed_s"]
        )
        resp.summary.update(out["summary"])
        if "positions" in out:
            resp.positions.update(out["positions"])
            resp.energies.extend(out["energies"])
        return resp

    @rpc_errors
    async def Sample(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        req = SampleRequest.model_validate(request_fields(request, _SAMPLE_FIELDS))
        return self._sample_response(await adapter.run_sample(self.ctx, req))

    @rpc_errors
    async def Equilibrium(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        req = EquilibriumRequest.model_validate(request_fields(request, _EQUILIBRIUM_FIELDS))
        out = await adapter.run_equilibrium(self.ctx, req)
        resp = self.pb.EquilibriumResponse(capsule=out["capsule"], elapsed_s=out["elapsed_s"])
        resp.summary.update(out["summary"])
        return resp

    async def SampleStream(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        """Progress events while the job runs (at most one per progress report), the result
        last; errors end the stream with their status."""
        try:
            req = SampleRequest.model_validate(request_fields(request, _SAMPLE_FIELDS))
        except Exception as e:  # noqa: BLE001 - input errors become their status
            if code_of(e) is None:
                raise
            await abort(context, e)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[tuple[int, int]] = asyncio.Queue()

        def progress(done: int, total: int) -> None:
            loop.call_soon_threadsafe(events.put_nowait, (int(done), int(total)))

        task = asyncio.ensure_future(adapter.run_sample(self.ctx, req, progress))
        try:
            while not task.done():
                getter = asyncio.ensure_future(events.get())
                await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await getter
                    continue
                done, total = getter.result()
                yield self.pb.SampleEvent(
                    progress=self.pb.Progress(steps_done=done, num_steps=total)
                )
            while not events.empty():
                done, total = events.get_nowait()
                yield self.pb.SampleEvent(
                    progress=self.pb.Progress(steps_done=done, num_steps=total)
                )
            try:
                out = task.result()
            except Exception as e:  # noqa: BLE001 - input errors become their status
                if code_of(e) is None:
                    raise
                await abort(context, e)
            yield self.pb.SampleEvent(result=self._sample_response(out))
        finally:
            if not task.done():
                task.cancel()
