"""The FastAPI application: REST under /v1, a WebSocket stream, health and metrics.

Routes (every one but /healthz and /readyz needs `Authorization: Bearer <key>`):

    GET  /healthz, /readyz          liveness; readiness (503 while starting or draining)
    GET  /metrics                   Prometheus text format
    GET  /v1/capsules               registered capsules with descriptions and parameters
    POST /v1/sample                 sample a capsule's Boltzmann distribution (idf.sample)
    POST /v1/equilibrium            anneal to low-energy states (idf.sample_equilibrium)
    POST /v1/nvp/predict            NVP next-state forecast (micro-batched, one vmapped call)
    POST /v1/eil/sense | act | prove, GET /v1/ledger/verify     the EIL decision loop
    WS   /v1/stream                 sampling progress and EIL decisions as they happen

Errors use FastAPI's shape, `{"detail": [{"loc": ["body", FIELD], "msg": ..., "type": ...}]}`:
422 for an invalid value, 413 for a value over a configured limit (or a body too large),
401 for a missing or wrong key, 404 for an unknown prediction, 503 for a component not
configured in this instance.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hmac
import json
import logging
import math
import threading
import time
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Depends, FastAPI, HTTPException, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.websockets import WebSocketDisconnect

from .batching import BatcherClosed, MicroBatcher
from .config import ServiceConfig
from .jobs import (
    _LRU,
    EquilibriumJob,
    JobError,
    SampleJob,
    equilibrium_available,
    positions_as_lists,
    run_equilibrium,
    run_sample,
    summarize_trace,
)
from .metrics import CONTENT_TYPE_LATEST, Metrics
from .schemas import (
    ActRequest,
    CapsuleInfoModel,
    EquilibriumRequest,
    EquilibriumResponse,
    PredictRequest,
    ProveRequest,
    SampleRequest,
    SampleResponse,
    SenseRequest,
)

__all__ = ["create_app"]

log = logging.getLogger("idf_jax.runtime.service")


# --------------------------------------------------------------------------- helpers


def _error(status: int, field: str, msg: str, kind: str = "value_error") -> JSONResponse:
    return JSONResponse(
        status_code=status, content={"detail": [{"loc": ["body", field], "msg": msg, "type": kind}]}
    )


def _job_error(e: JobError) -> JSONResponse:
    kind = {413: "limit_exceeded", 503: "unavailable"}.get(e.status, "value_error")
    return _error(e.status, e.field, e.message, kind)


def jsonable(x: Any) -> Any:
    """Numpy / JAX scalars and arrays to JSON values; non-finite floats to None."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        v = float(x)
        return v if math.isfinite(v) else None
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return jsonable(np.asarray(x).tolist())
    if x is None or isinstance(x, str):
        return x
    return str(x)


class _BodyTooLarge(Exception):
    pass


class _BodyLimit:
    """Pure ASGI middleware: 413 for bodies over `limit` bytes (declared or streamed)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for k, v in scope.get("headers", ()):
            if k == b"content-length":
                try:
                    n = int(v)
                except ValueError:
                    n = -1
                if n < 0 or n > self.limit:
                    return await self._reject(send, n)
        seen = 0
        started = False

        async def limited_receive():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    raise _BodyTooLarge()
            return msg

        async def tracking_send(msg):
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._reject(send, seen)

    async def _reject(self, send, n):
        body = json.dumps(
            {
                "detail": [
                    {
                        "loc": ["body"],
                        "type": "limit_exceeded",
                        "msg": f"request body of {n} bytes is over the limit of {self.limit} bytes",
                    }
                ]
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


_PUBLIC = ("/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")


class _Auth:
    """Pure ASGI middleware: 401 for HTTP requests without a valid key, before the body is
    read or validated (so an unauthenticated client learns nothing from validation errors)."""

    def __init__(self, app, check):
        self.app, self.check = app, check

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") in _PUBLIC:
            return await self.app(scope, receive, send)
        token = None
        for k, v in scope.get("headers", ()):
            if k == b"authorization":
                raw = v.decode("latin-1")
                if raw[:7].lower() == "bearer ":
                    token = raw[7:].strip()
                break
        if self.check(token):
            return await self.app(scope, receive, send)
        body = json.dumps(
            {"detail": "missing or invalid API key (Authorization: Bearer <key>)"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b"Bearer"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _HTTPMetrics:
    """Pure ASGI middleware: request counts and latencies by route template."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = 500
        t0 = time.perf_counter()

        async def send_wrapper(msg):
            nonlocal status
            if msg["type"] == "http.response.start":
                status = msg["status"]
            await send(msg)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.in_flight.dec()
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(label, scope.get("method", ""), str(status)).inc()
            self.metrics.latency.labels(label).observe(time.perf_counter() - t0)


_PREDICT_PATH = "/v1/nvp/predict"
_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _error_body(field: str, msg: str, kind: str) -> bytes:
    return orjson.dumps({"detail": [{"loc": ["body", field], "msg": msg, "type": kind}]})


class _FastPredict:
    """The hot path of POST /v1/nvp/predict: one pure-ASGI function that authenticates
    (the same constant-time key check), reads the body, and parses a canonical request
    with orjson and a hand check (`_NVP.parse_fast`), then submits it to the micro-batcher
    and writes the prediction bytes, counting it in /metrics like `_HTTPMetrics` does.

    Anything else (a missing or wrong key, no or a too-large Content-Length, another
    content type, a body that is not exactly a valid `{"history": [...]}`, no model loaded)
    goes, body replayed, to the full FastAPI stack (`fallback`): its middlewares, pydantic
    validation and the route answer it, so every error (401, 413, 422 naming the field, 503)
    is the one the route gives. The route also stays the OpenAPI description of this path.
    """

    def __init__(self, state: dict, config: ServiceConfig, check_key, metrics: Metrics, fallback):
        self.state, self.check_key, self.metrics = state, check_key, metrics
        self.limit = config.limits.max_body_bytes
        self.fallback = fallback
        self._requests: dict[int, Any] = {}  # status -> counter child
        self._latency = metrics.latency.labels(_PREDICT_PATH)

    async def __call__(self, scope, receive, send):
        t0 = time.perf_counter()
        nvp = self.state["nvp"]
        auth = length = ctype = None
        for k, v in scope["headers"]:
            if k == b"authorization":
                if auth is None:
                    auth = v
            elif k == b"content-length":
                length = v
            elif k == b"content-type":
                ctype = v
        token = None
        if auth is not None:
            raw = auth.decode("latin-1")
            if raw[:7].lower() == "bearer ":
                token = raw[7:].strip()
        if (
            nvp is None
            or not self.check_key(token)
            or length is None
            or not length.isdigit()
            or int(length) > self.limit
            or ctype is None
            or ctype.split(b";", 1)[0].strip().lower() != b"application/json"
        ):
            return await self.fallback(scope, receive, send)
        msg = await receive()
        msgs = [msg]
        body = msg.get("body", b"")
        while msg["type"] == "http.request" and msg.get("more_body", False):
            msg = await receive()
            msgs.append(msg)
            body += msg.get("body", b"")
        x = None
        if msg["type"] == "http.request" and len(body) <= self.limit:
            try:
                x = nvp.parse_fast(body)
            except Exception:  # noqa: BLE001 - any doubt: the validated route decides
                x = None
        if x is None:
            return await self.fallback(scope, _replay(msgs, receive), send)

        metrics = self.metrics
        metrics.in_flight.inc()
        status = 500
        try:
            ctype = b"application/json"
            try:
                pred = await nvp.submit(x)
                status, out = 200, b'{"prediction":' + pred + b"}"
            except BatcherClosed as e:
                status, out = 503, _error_body("history", str(e), "unavailable")
            except ValueError as e:
                status, out = 422, _error_body("history", str(e), "value_error")
            except Exception:
                log.exception("NVP prediction failed")
                status, out, ctype = 500, b"Internal Server Error", b"text/plain; charset=utf-8"
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-length", str(len(out)).encode()),
                        (b"content-type", ctype),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": out})
        finally:
            metrics.in_flight.dec()
            child = self._requests.get(status)
            if child is None:
                child = self._requests[status] = metrics.requests.labels(
                    _PREDICT_PATH, "POST", str(status)
                )
            child.inc()
            self._latency.observe(time.perf_counter() - t0)


def _replay(msgs: list, receive):
    """A `receive` that gives `msgs` again, then the real ones."""
    msgs = list(msgs)

    async def replayed():
        if msgs:
            return msgs.pop(0)
        return await receive()

    return replayed


class _ServiceApp(FastAPI):
    """FastAPI, with POST /v1/nvp/predict first offered to its fast path (`_FastPredict`)."""

    fast_predict: _FastPredict | None = None

    async def __call__(self, scope, receive, send):
        if (
            self.fast_predict is not None
            and scope["type"] == "http"
            and scope["path"] == _PREDICT_PATH
            and scope["method"] == "POST"
            and not scope.get("root_path")
            and not self.root_path
        ):
            return await self.fast_predict(scope, receive, send)
        return await super().__call__(scope, receive, send)


class _Hub:
    """Fan-out of events (EIL decisions, proofs) to subscribed WebSocket clients."""

    def __init__(self):
        self._subs: set[asyncio.Queue] = set()

    def subscribe(self) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue(maxsize=1000)
        self._subs.add(q)
        return q

    def unsubscribe(self, q):
        self._subs.discard(q)

    def publish(self, event: dict):
        for q in list(self._subs):
            with contextlib.suppress(asyncio.QueueFull):  # a slow client drops events
                q.put_nowait(event)


# --------------------------------------------------------------------------- components


class _NVP:
    """The NVP predictor behind /v1/nvp/predict, fed by a micro-batcher."""

    def __init__(self, path: str, config: ServiceConfig, metrics: Metrics):
        from ...nvp import NVPPredictor
        from ...nvp.data import _records_fast

        self._records_fast = _records_fast
        self.predictor = NVPPredictor(model_path=None if path == "default" else path)
        self.limits = config.limits
        p = self.predictor
        # the fast path only takes what the validated route would accept unchanged
        self.fast_min = max(p.min_history, 1)
        self.fast_ok = all(isinstance(c, str) and 1 <= len(c) <= 200 for c in p.channels)
        # predict_batch pads to a power of two itself (one compiled shape per size)
        self.batcher = MicroBatcher(
            self._predict_batch,
            max_size=config.batch_max_size,
            max_wait_s=config.batch_max_wait_ms / 1000.0,
            pad_pow2=False,
            on_batch=lambda n: (metrics.batch_size.observe(n), metrics.predictions.inc(n)),
        )

    async def submit(self, x):
        """One validated (T, C) array -> its prediction as JSON bytes."""
        return await self.batcher.submit(x)

    def warm_up(self):
        """Compile every batch shape the batcher can send (powers of two up to max_size), so
        no request waits for a compilation."""
        import numpy as np

        p = self.predictor
        h = np.ones((max(p.min_history, 1), len(p.channels)))
        size = 1
        while True:
            p.predict_batch([h] * size)
            if size >= self.batcher.max_size:
                break
            size *= 2
        if hasattr(p, "clear_cache"):
            p.clear_cache()

    def _predict_batch(self, histories):
        """Predictions as JSON bytes, one per series (encoded here, in the batch thread).

        A batch is cut into power-of-two chunks (a remainder under 8 is one chunk, padded
        by `predict_batch`), so 33 series cost a call of 32 and one of 1 rather than one
        call padded to 64: the model's cost grows with the padded size."""
        out = []
        i, n = 0, len(histories)
        while i < n:
            left = n - i
            size = left if left < 8 else 1 << (left.bit_length() - 1)
            part = self.predictor.predict_batch(histories[i : i + size])
            if isinstance(part, dict):  # a dict of per-series lists -> list of dicts
                keys = list(part)
                part = [{k: part[k][j] for k in keys} for j in range(size)]
            out.extend(part)
            i += size
        return [orjson.dumps(o, default=jsonable, option=_JSON_OPTIONS) for o in out]

    def parse_fast(self, body: bytes):
        """The (T, C) array of a canonical request body `{"history": [{ch: number, ...}, ...]}`
        with exactly the model's channels, finite plain numbers, and a length within
        [min_history, limits.max_history]; None for anything else (or any doubt), which the
        validated route then answers (with the same result, or the error naming the field)."""
        if not self.fast_ok:
            return None
        try:
            req = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if type(req) is not dict or len(req) != 1:
            return None
        history = req.get("history")
        if type(history) is not list or not (
            self.fast_min <= len(history) <= self.limits.max_history
        ):
            return None
        x = self._records_fast(history, self.predictor.channels)
        return None if x is None else x[-self.predictor.window :]

    def to_array(self, history: list[dict], where: str):
        """(T, C) float64 array in the model's channel order; ValueError naming the problem."""
        import numpy as np

        chans = self.predictor.channels
        want = set(chans)
        for i, rec in enumerate(history):
            if rec.keys() != want:
                missing, extra = sorted(want - rec.keys()), sorted(rec.keys() - want)
                raise ValueError(
                    f"{where} record {i}: channels do not match the model's {list(chans)}"
                    + (f"; missing {missing}" if missing else "")
                    + (f"; extra {extra}" if extra else "")
                )
        x = np.array([[rec[c] for c in chans] for rec in history], dtype=np.float64)
        if x.shape[0] < self.predictor.min_history:
            raise ValueError(
                f"{where} has {x.shape[0]} steps; this model needs at least "
                f"{self.predictor.min_history}"
            )
        return x

    async def predict(self, histories, where: str):
        arrays = [
            self.to_array(h, where if len(histories) == 1 else f"{where}.{i}")
            for i, h in enumerate(histories)
        ]
        return await self.batcher.submit_many(arrays)

    async def close(self):
        await self.batcher.close()


class _EIL:
    """One EILOptimizer used from one dedicated thread (SQLite connections are per thread)."""

    def __init__(self, kwargs: dict):
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="idf-eil")
        self._kwargs = kwargs
        self.eil = None

    async def start(self):
        def make():
            from ...eil import EILOptimizer

            return EILOptimizer(**self._kwargs)

        self.eil = await asyncio.get_running_loop().run_in_executor(self._executor, make)

    async def call(self, name: str, *args, **kwargs):
        fn = getattr(self.eil, name)
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, lambda: fn(*args, **kwargs)
        )

    async def verify(self):
        def run():
            return self.eil.verify_ledger()

        return await asyncio.get_running_loop().run_in_executor(self._executor, run)

    async def close(self):
        def run():
            for name in ("close", "shutdown"):
                fn = getattr(self.eil, name, None)
                if callable(fn):
                    fn()
                    return

        if self.eil is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, run)
        self._executor.shutdown(wait=True)


def _ws_validation_error(e) -> dict:
    """A pydantic ValidationError as the WebSocket's error message (status 422)."""
    detail = [{"loc": list(x["loc"]), "msg": x["msg"]} for x in e.errors()]
    return {"type": "error", "status": 422, "detail": jsonable(detail)}


def _nvp_importable() -> bool:
    try:
        from ...nvp import NVPPredictor  # noqa: F401
    except ImportError:
        return False
    return True


def _eil_importable() -> bool:
    try:
        from ...eil import EILOptimizer  # noqa: F401
    except ImportError:
        return False
    return True


# --------------------------------------------------------------------------- app


def create_app(config: ServiceConfig) -> FastAPI:
    """Build the service for `config` (see `idf_jax.runtime.service.load_config`)."""
    import importlib

    for mod in config.capsule_modules:
        try:
            importlib.import_module(mod)
        except ImportError as e:
            raise ValueError(f"service.capsule_modules: cannot import {mod!r}: {e}") from e
    metrics = Metrics()
    hub = _Hub()
    state: dict[str, Any] = {"ready": False, "draining": False, "nvp": None, "eil": None}
    job_slots = threading.BoundedSemaphore(config.max_concurrent_jobs)
    sampler_cache = _LRU(config.sampler_cache_size)
    keys = [k.encode() for k in config.api_keys]

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if config.nvp_model_path and (config.nvp_model_path != "default" or _nvp_importable()):

            def make_nvp():
                nvp = _NVP(config.nvp_model_path, config, metrics)
                nvp.warm_up()
                return nvp

            state["nvp"] = await asyncio.get_running_loop().run_in_executor(None, make_nvp)
        if config.eil is not False and _eil_importable():
            eil = _EIL(dict(config.eil or {}))
            await eil.start()
            state["eil"] = eil
        state["ready"] = True
        log.info("idf service ready")
        try:
            yield
        finally:
            state["draining"] = True
            state["ready"] = False
            if state["nvp"] is not None:
                await state["nvp"].close()
            if state["eil"] is not None:
                await state["eil"].close()
                log.info("EIL ledger closed")
            log.info("idf service stopped")

    app = _ServiceApp(
        title="idf-jax service",
        version="0.1.0",
        description=__doc__,
        lifespan=lifespan,
        responses={401: {"description": "missing or invalid API key"}},
    )
    app.state.metrics = metrics
    app.state.config = config
    app.state.runtime = state
    bearer = HTTPBearer(auto_error=False)

    def check_key(token: str | None) -> bool:
        if config.auth_disabled:
            return True
        if not token:
            return False
        t = token.encode()
        ok = False
        for k in keys:  # always compare against every key: time does not reveal which
            ok |= hmac.compare_digest(t, k)
        return ok

    async def require_key(creds: HTTPAuthorizationCredentials | None = Depends(bearer)):
        if not check_key(creds.credentials if creds is not None else None):
            raise HTTPException(
                401,
                "missing or invalid API key (Authorization: Bearer <key>)",
                headers={"WWW-Authenticate": "Bearer"},
            )

    @app.exception_handler(JobError)
    async def _on_job_error(request, e: JobError):
        return _job_error(e)

    @app.exception_handler(RequestValidationError)
    async def _on_validation(request, e: RequestValidationError):
        errs = [
            {
                "loc": list(err.get("loc", ())),
                "msg": str(err.get("msg", "")),
                "type": err.get("type", ""),
            }
            for err in e.errors()
        ]
        return JSONResponse(status_code=422, content={"detail": errs})

    # ---------------------------------------------------------------- health and metrics

    @app.get("/healthz", tags=["health"])
    async def healthz():
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "not ready"}})
    async def readyz():
        """Readiness: components loaded and not draining."""
        body = {
            "ready": state["ready"],
            "components": {
                "sample": True,
                "equilibrium": equilibrium_available(),
                "nvp": state["nvp"] is not None,
                "eil": state["eil"] is not None,
            },
        }
        return JSONResponse(body, status_code=200 if state["ready"] else 503)

    @app.get("/metrics", tags=["health"], dependencies=[Depends(require_key)])
    async def metrics_route():
        """Prometheus metrics (text format 0.0.4)."""
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_key)])

    # ---------------------------------------------------------------- capsules and sampling

    @v1.get("/capsules", response_model=list[CapsuleInfoModel], tags=["sampling"])
    async def list_capsules():
        """Registered capsules: name, one-line description, parameters."""
        import capsules

        return [
            CapsuleInfoModel(name=i.name, description=i.description, parameters=i.parameters)
            for i in capsules.registry().values()
        ]

    def _check_params(params: dict):
        lim = config.limits
        for k, v in params.items():
            if isinstance(v, int) and not isinstance(v, bool) and abs(v) > lim.max_dimensions:
                raise JobError(
                    f"params.{k}",
                    f"integer parameter {v} is over the limit {lim.max_dimensions} "
                    "(integer parameters size the state)",
                    413,
                )
            if isinstance(v, list) and len(v) > lim.max_dimensions:
                raise JobError(
                    f"params.{k}",
                    f"list of {len(v)} values is over the limit {lim.max_dimensions}",
                    413,
                )

    async def _run_job(fn):
        loop = asyncio.get_running_loop()

        def guarded():
            with job_slots:
                return fn()

        return await loop.run_in_executor(None, guarded)

    def _sample_job(req: SampleRequest) -> SampleJob:
        _check_params(req.params)
        return SampleJob(**req.model_dump(exclude={"return_positions"}))

    def _sample_payload(req: SampleRequest, trace, elapsed: float) -> dict:
        energies = np.asarray(trace.energies)
        chains, draws = energies.shape[:2]
        metrics.samples.labels("sample").inc(chains * draws)
        metrics.steps.inc(chains * req.steps)
        out = {
            "capsule": req.capsule,
            "sampler": req.sampler,
            "summary": summarize_trace(trace),
            "elapsed_s": elapsed,
        }
        if req.return_positions != "none":
            import jax

            pos = trace.positions
            if req.return_positions == "final":
                pos = jax.tree.map(lambda l: l[:, -1], pos)
            size = sum(int(np.size(l)) for l in jax.tree.leaves(pos))
            if size > config.limits.max_draws_returned:
                raise JobError(
                    "return_positions",
                    f"{size} values to return, over the limit {config.limits.max_draws_returned}; "
                    "thin more, or ask for 'final'",
                    413,
                )
            out["positions"] = positions_as_lists(pos)
            out["energies"] = jsonable(energies)
        return out

    @v1.post(
        "/sample",
        response_model=SampleResponse,
        tags=["sampling"],
        responses={413: {"description": "over a limit"}},
    )
    async def sample_route(req: SampleRequest):
        """Draw samples from exp(-E(x)/T) of a capsule with `idf.sample`."""
        job = _sample_job(req)
        t0 = time.perf_counter()
        trace, _ = await _run_job(
            lambda: run_sample(job, limits=config.limits, cache=sampler_cache)
        )
        return _sample_payload(req, trace, time.perf_counter() - t0)

    @v1.post(
        "/equilibrium",
        response_model=EquilibriumResponse,
        tags=["sampling"],
        responses={413: {"description": "over a limit"}, 503: {"description": "not built"}},
    )
    async def equilibrium_route(req: EquilibriumRequest):
        """Anneal chains of a capsule to low-energy states with `idf.sample_equilibrium`."""
        _check_params(req.params)
        job = EquilibriumJob(**req.model_dump())
        t0 = time.perf_counter()
        _, _, summary = await _run_job(lambda: run_equilibrium(job, limits=config.limits))
        metrics.samples.labels("equilibrium").inc(job.chains)
        metrics.steps.inc(job.chains * job.steps)
        return {
            "capsule": req.capsule,
            "summary": jsonable(summary),
            "elapsed_s": time.perf_counter() - t0,
        }

    # ---------------------------------------------------------------- NVP

    @v1.post(
        "/nvp/predict",
        tags=["nvp"],
        responses={413: {"description": "over a limit"}, 503: {"description": "no model"}},
    )
    async def nvp_predict(req: PredictRequest):
        """Next-state forecast of one history (`history`) or many (`histories`)."""
        if (req.history is None) == (req.histories is None):
            raise JobError("history", "give exactly one of `history` or `histories`")
        nvp = state["nvp"]
        if nvp is None:
            raise JobError("history", "no NVP model is configured (service.nvp_model_path)", 503)
        histories = [req.history] if req.history is not None else req.histories
        lim = config.limits
        if len(histories) > lim.max_series:
            raise JobError(
                "histories", f"{len(histories)} series, over the limit {lim.max_series}", 413
            )
        for i, h in enumerate(histories):
            if len(h) > lim.max_history:
                field = "history" if req.history is not None else f"histories.{i}"
                raise JobError(field, f"{len(h)} samples, over the limit {lim.max_history}", 413)
        try:
            preds = await nvp.predict(
                histories, "history" if req.history is not None else "histories"
            )
        except ValueError as e:
            raise JobError("history" if req.history is not None else "histories", str(e)) from e
        except BatcherClosed as e:
            raise JobError("history", str(e), 503) from e
        if req.history is not None:
            body = b'{"prediction":' + preds[0] + b"}"
        else:
            body = b'{"predictions":[' + b",".join(preds) + b"]}"
        return Response(body, media_type="application/json")

    # ---------------------------------------------------------------- EIL

    def _act_kwargs(req: ActRequest) -> dict:
        kw = {"goal": req.goal, "constraints": dict(req.constraints)}
        if req.source is not None:
            kw["source"] = req.source
        if req.weights is not None:
            kw["weights"] = tuple(req.weights)
        return kw

    def _eil():
        eil = state["eil"]
        if eil is None:
            raise JobError("eil", "the EIL is not available in this service", 503)
        return eil

    async def _eil_call(field: str, name: str, *args, **kwargs):
        eil = _eil()
        try:
            return await eil.call(name, *args, **kwargs)
        except KeyError as e:
            return _error(404, field, f"not found: {e.args[0] if e.args else e}", "not_found")
        except ValueError as e:
            if str(e).startswith("unknown prediction_id"):
                return _error(404, field, str(e), "not_found")
            raise JobError(field, str(e)) from e

    @v1.post("/eil/sense", tags=["eil"], responses={503: {"description": "no EIL"}})
    async def eil_sense(req: SenseRequest):
        """Validate and store one telemetry reading."""
        out = await _eil_call("metrics", "sense", req.model_dump(exclude_none=True))
        if isinstance(out, Response):
            return out
        metrics.readings.inc()
        return {"result": jsonable(out)}

    @v1.post("/eil/act", tags=["eil"], responses={503: {"description": "no EIL"}})
    async def eil_act(req: ActRequest):
        """Choose the action of least entropic cost for `goal` under `constraints`."""
        out = await _eil_call("goal", "act", **_act_kwargs(req))
        if isinstance(out, Response):
            return out
        out = jsonable(out)
        metrics.decisions.labels(
            str(out.get("type", "unknown")) if isinstance(out, dict) else "unknown"
        ).inc()
        hub.publish({"type": "decision", "decision": out})
        return out

    @v1.post(
        "/eil/prove",
        tags=["eil"],
        responses={404: {"description": "unknown prediction"}, 503: {"description": "no EIL"}},
    )
    async def eil_prove(req: ProveRequest):
        """Check a prediction against the observed state; mint a proof when valid."""
        out = await _eil_call("prediction_id", "prove", req.prediction_id, dict(req.actual_state))
        if isinstance(out, Response):
            return out
        out = jsonable(out)
        if isinstance(out, dict) and not out.get("duplicate"):
            metrics.proofs.labels(str(bool(out.get("valid"))).lower()).inc()
            if out.get("pft_amount"):
                metrics.pft.inc(float(out["pft_amount"]))
        hub.publish({"type": "proof", "proof": out})
        return out

    @v1.get("/ledger/verify", tags=["eil"], responses={503: {"description": "no EIL"}})
    async def ledger_verify():
        """Re-check the hash chain and signatures of the whole proof ledger."""
        return jsonable(await _eil().verify())

    app.include_router(v1)

    # ---------------------------------------------------------------- WebSocket

    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket):
        """Messages in: {"type": "sample", ...SampleRequest}, {"type": "act", goal, constraints},
        {"type": "subscribe"} (EIL decisions and proofs). Messages out: {"type": "progress",
        "steps_done", "num_steps"}, {"type": "result", ...}, {"type": "decision", ...},
        {"type": "proof", ...}, {"type": "error", "status", "detail"}."""
        token = None
        auth = ws.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            token = auth[7:].strip()
        token = token or ws.query_params.get("api_key")
        if not check_key(token):
            await ws.close(code=1008, reason="missing or invalid API key")
            return
        await ws.accept()
        metrics.ws.inc()
        out_q: asyncio.Queue = asyncio.Queue()
        sub = None
        loop = asyncio.get_running_loop()

        origin = id(ws)

        async def pump_sub(q):
            while True:
                event = await q.get()
                if event.get("origin") != origin:
                    await out_q.put({k: v for k, v in event.items() if k != "origin"})

        async def writer():
            while True:
                msg = await out_q.get()
                await ws.send_json(msg)

        writer_task = asyncio.create_task(writer())
        sub_task = None
        try:
            while True:
                try:
                    msg = await ws.receive_json()
                except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
                    await out_q.put(
                        {"type": "error", "status": 422, "detail": "messages must be JSON objects"}
                    )
                    continue
                if not isinstance(msg, dict):
                    await out_q.put(
                        {"type": "error", "status": 422, "detail": "messages must be JSON objects"}
                    )
                    continue
                kind = msg.pop("type", None)
                if kind == "subscribe":
                    if sub is None:
                        sub = hub.subscribe()
                        sub_task = asyncio.create_task(pump_sub(sub))
                    await out_q.put({"type": "subscribed"})
                elif kind == "sample":
                    await _ws_sample(msg, out_q, loop)
                elif kind == "act":
                    await _ws_act(msg, out_q, origin)
                else:
                    await out_q.put(
                        {
                            "type": "error",
                            "status": 422,
                            "detail": f"unknown message type {kind!r}; "
                            "use sample, act or subscribe",
                        }
                    )
        except WebSocketDisconnect:
            pass
        finally:
            metrics.ws.dec()
            if sub is not None:
                hub.unsubscribe(sub)
            for t in (sub_task, writer_task):
                if t is not None:
                    t.cancel()

    async def _ws_sample(msg: dict, out_q: asyncio.Queue, loop):
        from pydantic import ValidationError

        try:
            req = SampleRequest(**msg)
            job = _sample_job(req)
        except ValidationError as e:
            await out_q.put(_ws_validation_error(e))
            return
        except JobError as e:
            await out_q.put({"type": "error", "status": e.status, "detail": str(e)})
            return

        def progress(done, total):
            loop.call_soon_threadsafe(
                out_q.put_nowait,
                {"type": "progress", "steps_done": int(done), "num_steps": int(total)},
            )

        t0 = time.perf_counter()
        try:
            trace, _ = await _run_job(
                lambda: run_sample(
                    job, limits=config.limits, callback=progress, cache=sampler_cache
                )
            )
            payload = _sample_payload(req, trace, time.perf_counter() - t0)
        except JobError as e:
            await out_q.put({"type": "error", "status": e.status, "detail": str(e)})
            return
        await out_q.put({"type": "result", **payload})

    async def _ws_act(msg: dict, out_q: asyncio.Queue, origin: int):
        from pydantic import ValidationError

        try:
            req = ActRequest(**msg)
            eil = _eil()
            out = jsonable(await eil.call("act", **_act_kwargs(req)))
        except ValidationError as e:
            await out_q.put(_ws_validation_error(e))
            return
        except (JobError, ValueError) as e:
            await out_q.put(
                {"type": "error", "status": getattr(e, "status", 422), "detail": str(e)}
            )
            return
        metrics.decisions.labels(
            str(out.get("type", "unknown")) if isinstance(out, dict) else "unknown"
        ).inc()
        await out_q.put({"type": "decision", "decision": out})
        hub.publish({"type": "decision", "decision": out, "origin": origin})

    app.add_middleware(_BodyLimit, limit=config.limits.max_body_bytes)
    app.add_middleware(_Auth, check=check_key)
    app.add_middleware(_HTTPMetrics, metrics=metrics)
    app.fast_predict = _FastPredict(
        state, config, check_key, metrics, lambda s, r, se: FastAPI.__call__(app, s, r, se)
    )
    return app
