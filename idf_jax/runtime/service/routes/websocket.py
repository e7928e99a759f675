"""WS /v1/stream: sampling progress and EIL decisions as they happen.

Messages in: `{"type": "sample", ...SampleRequest}`, `{"type": "act", goal, constraints}`,
`{"type": "subscribe"}` (EIL decisions and proofs of every client). Messages out:
`{"type": "progress", "steps_done", "num_steps"}`, `{"type": "result", ...}`,
`{"type": "decision", ...}`, `{"type": "proof", ...}`, `{"type": "subscribed"}`,
`{"type": "error", "status", "detail"}`. The key is a header or `?api_key=`; without an
accepted one the socket is closed with code 1008 before it is accepted.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, WebSocket
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect

from ...._io import jsonable
from ..context import ServiceContext
from ..errors import ws_error, ws_validation_error
from ..jobs import JobError
from ..presets import with_preset
from ..schemas import ActRequest, SampleRequest
from .eil import act_kwargs
from .jobs import raise_for
from .sample import count_samples, sample_job

__all__ = ["router"]

_NOT_AN_OBJECT = ws_error(422, "messages must be JSON objects")


def router(ctx: ServiceContext) -> APIRouter:
    r = APIRouter(prefix="/v1")  # no key dependency: `stream` closes with 1008
    limits = ctx.config.limits

    @r.websocket("/stream")
    async def stream(ws: WebSocket):
        """Sampling progress and EIL decisions as they happen (see the module)."""
        if not ctx.authenticator.authenticate(ws.scope):
            await ws.close(code=1008, reason="missing or invalid API key")
            return
        await ws.accept()
        ctx.metrics.ws.inc()
        out_q: asyncio.Queue = asyncio.Queue()
        sub = sub_task = None
        origin = id(ws)
        jobs: set[asyncio.Task] = set()  # sampling jobs of this socket, cancelled on close

        async def pump_sub(q: asyncio.Queue) -> None:
            while True:
                event = await q.get()
                if event.get("origin") != origin:
                    await out_q.put({k: v for k, v in event.items() if k != "origin"})

        async def writer() -> None:
            while True:
                await ws.send_json(await out_q.get())

        writer_task = asyncio.create_task(writer())
        try:
            while True:
                try:
                    msg = await ws.receive_json()
                except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
                    await out_q.put(dict(_NOT_AN_OBJECT))
                    continue
                if not isinstance(msg, dict):
                    await out_q.put(dict(_NOT_AN_OBJECT))
                    continue
                kind = msg.pop("type", None)
                if kind == "subscribe":
                    if sub is None:
                        sub = ctx.hub.subscribe()
                        sub_task = asyncio.create_task(pump_sub(sub))
                    await out_q.put({"type": "subscribed"})
                elif kind == "sample":
                    t = asyncio.create_task(_sample(msg, out_q))
                    jobs.add(t)
                    t.add_done_callback(jobs.discard)
                elif kind == "act":
                    await _act(msg, out_q, origin)
                else:
                    await out_q.put(
                        ws_error(
                            422, f"unknown message type {kind!r}; use sample, act or subscribe"
                        )
                    )
        except WebSocketDisconnect:
            pass
        finally:
            ctx.metrics.ws.dec()
            if sub is not None:
                ctx.hub.unsubscribe(sub)
            for t in (sub_task, writer_task, *jobs):
                if t is not None:
                    t.cancel()

    async def _sample(msg: dict[str, Any], out_q: asyncio.Queue) -> None:
        try:
            req = with_preset(SampleRequest(**msg), ctx.engine().state_dir)
            sample_job(req, limits)
        except ValidationError as e:
            await out_q.put(ws_validation_error(e))
            return
        except JobError as e:
            await out_q.put(ws_error(e.status, str(e)))
            return
        try:
            engine = ctx.engine()
            job_id = engine.submit("sample", req.model_dump())
        except JobError as e:
            await out_q.put(ws_error(e.status, str(e)))
            return
        try:
            async for ev in engine.events(job_id):
                if ev.get("type") == "progress":
                    await out_q.put(ev)
            rec = await engine.wait(job_id)
            payload = raise_for(rec)
        except asyncio.CancelledError:  # the socket closed: stop the job
            engine.cancel(job_id)
            raise
        except JobError as e:
            await out_q.put(ws_error(e.status, str(e)))
            return
        count_samples(ctx, req, payload)
        await out_q.put({"type": "result", **payload})

    async def _act(msg: dict[str, Any], out_q: asyncio.Queue, origin: int) -> None:
        try:
            req = ActRequest(**msg)
            out = jsonable(await ctx.eil().call("act", **act_kwargs(req)))
        except ValidationError as e:
            await out_q.put(ws_validation_error(e))
            return
        except (JobError, ValueError) as e:
            await out_q.put(ws_error(getattr(e, "status", 422), str(e)))
            return
        ctx.count_decision(out)
        await out_q.put({"type": "decision", "decision": out})
        ctx.hub.publish({"type": "decision", "decision": out, "origin": origin})

    return r
