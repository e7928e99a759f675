"""WS /v1/nvp/stream: streaming NVP predictions, one per reading as it arrives.

A client sends telemetry readings one by one; the service keeps the recent history of each
series (the model's `window` of readings) and answers every reading with the forecast of
the next step, through the same validation (channels, finite numbers, physical ranges) and
the same micro-batcher as POST /v1/nvp/predict, so readings of many sockets share one
vmapped call. Answers keep the order of the readings; several readings may be in flight.

Messages in:
  `{"type": "reading", "reading": {channel: number, ...}, "series"?: name, "timestamp"?: s}`
  `{"type": "reset", "series"?: name}`  (forget a series' history)
Messages out:
  `{"type": "prediction", "seq", "series", "prediction": {...}}` (as /v1/nvp/predict)
  `{"type": "waiting", "seq", "series", "have", "need"}` (history shorter than min_history)
  `{"type": "reset", "series"}`, `{"type": "error", "status", "detail"}` (422: the reading
  was not added; 503: no NVP model in this service, and the socket is closed).
`seq` counts this socket's readings from 0. A `timestamp` must increase within a series
(a duplicate or older one is refused); a step longer than 1.5 sampling intervals of the
model is flagged with `"gap_s"` in the prediction. `series` names (default "default") are
limited to `limits.max_series` per socket. The key is checked as on /v1/stream: without an
accepted one the socket is closed with code 1008 before it is accepted.
"""

from __future__ import annotations

import asyncio
import collections
import json
from typing import Any

from fastapi import APIRouter, WebSocket
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect

from ..batching import BatcherClosed
from ..context import ServiceContext
from ..errors import ws_error, ws_validation_error
from ..schemas import StreamMessage

__all__ = ["router"]

_IN_FLIGHT = 256  # answers queued per socket before reading more (back-pressure)


class _Series:
    def __init__(self, window: int):
        self.history: collections.deque[dict[str, Any]] = collections.deque(maxlen=window)
        self.last_time: float | None = None


def router(ctx: ServiceContext) -> APIRouter:
    r = APIRouter(prefix="/v1")  # no key dependency: the socket closes with 1008
    limits = ctx.config.limits

    @r.websocket("/nvp/stream")
    async def nvp_stream(ws: WebSocket):
        """Streaming NVP predictions (see the module)."""
        if not ctx.authenticator.authenticate(ws.scope):
            await ws.close(code=1008, reason="missing or invalid API key")
            return
        await ws.accept()
        nvp = ctx.state["nvp"]
        if nvp is None:
            await ws.send_json(ws_error(503, "no NVP model is configured (service.nvp_model_path)"))
            await ws.close(code=1011)
            return
        ctx.metrics.ws.inc()
        pred = nvp.predictor
        window = max(1, min(pred.window, limits.max_history))
        interval = None if pred.series is None else float(pred.series.interval_s)
        series: dict[str, _Series] = {}
        out_q: asyncio.Queue[Any] = asyncio.Queue(maxsize=_IN_FLIGHT)

        async def writer() -> None:
            while True:
                item = await out_q.get()
                if isinstance(item, asyncio.Task):
                    try:
                        item = await item
                    except Exception as e:  # noqa: BLE001 - answered, the stream goes on
                        item = ws_error(500, f"prediction failed: {type(e).__name__}")
                if isinstance(item, bytes | str):
                    await ws.send_text(item if isinstance(item, str) else item.decode())
                else:
                    await ws.send_json(item)

        async def predict(seq: int, name: str, history: list[dict[str, Any]], extra: bytes):
            try:
                out = await nvp.predict([history], "reading")
            except ValueError as e:
                return ws_error(422, str(e))
            except BatcherClosed as e:
                return ws_error(503, str(e))
            head = json.dumps({"type": "prediction", "seq": seq, "series": name})[:-1].encode()
            return head + extra + b',"prediction":' + out[0] + b"}"

        writer_task = asyncio.create_task(writer())
        pending: set[asyncio.Task] = set()
        seq = 0
        try:
            while True:
                try:
                    raw = await ws.receive_json()
                except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
                    await out_q.put(ws_error(422, "messages must be JSON objects"))
                    continue
                if not isinstance(raw, dict):
                    await out_q.put(ws_error(422, "messages must be JSON objects"))
                    continue
                try:
                    msg = StreamMessage(**raw)
                except ValidationError as e:
                    await out_q.put(ws_validation_error(e))
                    continue
                if msg.type == "reset":
                    series.pop(msg.series, None)
                    await out_q.put({"type": "reset", "series": msg.series})
                    continue
                if msg.reading is None:
                    await out_q.put(
                        ws_error(422, "reading: required for a message of type reading")
                    )
                    continue
                s = series.get(msg.series)
                if s is None:
                    if len(series) >= limits.max_series:
                        await out_q.put(
                            ws_error(
                                413, f"series: over the limit of {limits.max_series} per socket"
                            )
                        )
                        continue
                    s = series[msg.series] = _Series(window)
                problem = _channel_problem(msg.reading, pred.channels)
                if problem:
                    await out_q.put(ws_error(422, problem))
                    continue
                extra = b""
                if msg.timestamp is not None:
                    t = float(msg.timestamp)
                    if s.last_time is not None and t <= s.last_time:
                        what = "a duplicate of" if t == s.last_time else "older than"
                        await out_q.put(
                            ws_error(
                                422,
                                f"timestamp: {t:g} is {what} the series' last reading "
                                f"({s.last_time:g}); readings must arrive in time order",
                            )
                        )
                        continue
                    if s.last_time is not None and interval and t - s.last_time > 1.5 * interval:
                        extra = b',"gap_s":' + json.dumps(t - s.last_time).encode()
                    s.last_time = t
                s.history.append(dict(msg.reading))
                this = seq
                seq += 1
                if len(s.history) < max(pred.min_history, 1):
                    await out_q.put(
                        {
                            "type": "waiting",
                            "seq": this,
                            "series": msg.series,
                            "have": len(s.history),
                            "need": max(pred.min_history, 1),
                        }
                    )
                    continue
                task = asyncio.create_task(predict(this, msg.series, list(s.history), extra))
                pending.add(task)
                task.add_done_callback(pending.discard)
                await out_q.put(task)
        except WebSocketDisconnect:
            pass
        finally:
            ctx.metrics.ws.dec()
            writer_task.cancel()
            for t in pending:
                t.cancel()

    return r


def _channel_problem(reading: dict[str, Any], channels: tuple[str, ...]) -> str | None:
    """Why `reading` does not hold exactly the model's channels (None: it does)."""
    want = set(channels)
    if reading.keys() == want:
        return None
    missing, extra = sorted(want - reading.keys()), sorted(reading.keys() - want)
    return (
        f"reading: channels do not match the model's {list(channels)}"
        + (f"; missing {missing}" if missing else "")
        + (f"; extra {extra}" if extra else "")
    )
