"""The EIL decision loop: POST /v1/eil/sense | act | prove, GET /v1/ledger/verify, and
GET /v1/eil/sources/{source}/readings (the stored readings of a source)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from ...._io import jsonable
from ..context import ServiceContext
from ..errors import error_response
from ..jobs import JobError
from ..schemas import ActRequest, ProveRequest, SenseRequest

__all__ = ["act_kwargs", "router"]


def act_kwargs(req: ActRequest) -> dict[str, Any]:
    """The keyword arguments of `EILOptimizer.act` for a validated request."""
    kw: dict[str, Any] = {"goal": req.goal, "constraints": dict(req.constraints)}
    if req.source is not None:
        kw["source"] = req.source
    if req.weights is not None:
        kw["weights"] = tuple(req.weights)
    return kw


def router(ctx: ServiceContext) -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["eil"], dependencies=ctx.protected)
    metrics = ctx.metrics

    async def eil_call(field: str, name: str, *args: Any, **kwargs: Any) -> Any:
        """`eil.<name>(...)`: 404 for an unknown id, 422 for an invalid value (naming
        `field`), 503 when this instance has no EIL."""
        eil = ctx.eil()
        try:
            return await eil.call(name, *args, **kwargs)
        except KeyError as e:
            return error_response(
                404, field, f"not found: {e.args[0] if e.args else e}", "not_found"
            )
        except ValueError as e:
            if str(e).startswith("unknown prediction_id"):
                return error_response(404, field, str(e), "not_found")
            raise JobError(field, str(e)) from e

    @r.post("/eil/sense", responses={503: {"description": "no EIL"}})
    async def eil_sense(req: SenseRequest):
        """Validate and store one telemetry reading."""
        out = await eil_call("metrics", "sense", req.model_dump(exclude_none=True))
        if isinstance(out, Response):
            return out
        metrics.readings.inc()
        return {"result": jsonable(out)}

    @r.post("/eil/act", responses={503: {"description": "no EIL"}})
    async def eil_act(req: ActRequest):
        """Choose the action of least entropic cost for `goal` under `constraints`."""
        out = await eil_call("goal", "act", **act_kwargs(req))
        if isinstance(out, Response):
            return out
        out = jsonable(out)
        ctx.count_decision(out)
        ctx.hub.publish({"type": "decision", "decision": out})
        return out

    @r.post(
        "/eil/prove",
        responses={404: {"description": "unknown prediction"}, 503: {"description": "no EIL"}},
    )
    async def eil_prove(req: ProveRequest):
        """Check a prediction against the observed state; mint a proof when valid."""
        out = await eil_call("prediction_id", "prove", req.prediction_id, dict(req.actual_state))
        if isinstance(out, Response):
            return out
        out = jsonable(out)
        if isinstance(out, dict) and not out.get("duplicate"):
            metrics.proofs.labels(str(bool(out.get("valid"))).lower()).inc()
            if out.get("pft_amount"):
                metrics.pft.inc(float(out["pft_amount"]))
        ctx.hub.publish({"type": "proof", "proof": out})
        return out

    @r.get(
        "/eil/sources/{source}/readings",
        responses={404: {"description": "unknown source"}, 503: {"description": "no EIL"}},
    )
    async def eil_readings(source: str, limit: int = Query(100, ge=1, le=10_000)):
        """The last `limit` stored readings of `source`, newest last."""
        eil = ctx.eil()

        def read(opt: Any) -> list[dict[str, Any]] | None:
            if source not in opt.sources:
                return None
            return [rec.as_dict() for rec in opt.store.history(source, limit=limit)]

        readings = await eil.run(read)
        if readings is None:
            return error_response(404, "source", f"unknown source {source!r}", "not_found")
        return {"readings": jsonable(readings)}

    @r.get("/ledger/verify", responses={503: {"description": "no EIL"}})
    async def ledger_verify():
        """Re-check the hash chain and signatures of the whole proof ledger."""
        return jsonable(await ctx.eil().verify())

    return r
