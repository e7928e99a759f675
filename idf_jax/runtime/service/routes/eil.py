"""The EIL decision loop and its ledger.

POST /v1/eil/sense | act | prove; GET /v1/ledger/verify[?anchor=ANCHOR] (chain, signatures
and the anchor: JSON text, or base64url of it; default the service's last published one),
GET /v1/ledger/anchor (a signed anchor of the current head, to keep elsewhere),
GET /v1/ledger/public-key (the Ed25519 public key, PEM, for offline verification),
GET /v1/eil/sources/{source}/readings (the stored readings of a source, newest last).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse, Response

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
        """Judge a prediction on the outcome the telemetry measured once its horizon has
        passed (``status: pending`` until then); mint a proof when valid. `actual_state`
        is a claim checked against the measurement: a contradicted claim earns nothing."""
        claim = dict(req.actual_state) if req.actual_state is not None else None
        out = await eil_call("prediction_id", "prove", req.prediction_id, claim)
        if isinstance(out, Response):
            return out
        out = jsonable(out)
        if isinstance(out, dict) and not out.get("duplicate") and out.get("status") != "pending":
            metrics.proofs.labels(str(bool(out.get("valid"))).lower()).inc()
            if out.get("pft_amount"):
                metrics.pft.inc(float(out["pft_amount"]))
        ctx.hub.publish({"type": "proof", "proof": out})
        return out

    @r.get(
        "/ledger/verify",
        responses={422: {"description": "malformed anchor"}, 503: {"description": "no EIL"}},
    )
    async def ledger_verify(
        anchor: Annotated[
            str | None,
            Query(max_length=4096, description="a signed anchor: JSON, or base64url of it"),
        ] = None,
    ):
        """Re-check the hash chain and signatures of the whole proof ledger, and that it
        still holds what `anchor` (default: the last anchor this service published) signed:
        a truncated, wiped or rolled-back ledger fails. A failure is also an alert (ERROR log
        line, `idf_ledger_verification_failures_total`)."""
        from ....eil.anchor import check_anchor

        eil = ctx.eil()
        parsed = None
        if anchor is not None:
            parsed = _parse_anchor(anchor)
            if isinstance(parsed, str):
                return _query_error("anchor", parsed)
            try:  # a malformed or foreign anchor is the client's error, not a ledger alert
                check_anchor(parsed, eil.optimizer.ledger.public_key)
            except ValueError as e:
                return _query_error("anchor", str(e))
        return jsonable(await eil.verify(parsed))

    @r.get(
        "/ledger/anchor",
        responses={
            409: {"description": "ledger failed verification"},
            503: {"description": "no EIL"},
        },
    )
    async def ledger_anchor():
        """A signed anchor (record count, head hash, time) of the ledger now: keep it
        outside this service and check it later with `?anchor=` or `idf ledger verify`."""
        from ..eil_service import LedgerFrozen

        try:
            return await ctx.eil().anchor()
        except LedgerFrozen as e:
            return error_response(409, "anchor", str(e), "ledger_failed_verification")

    @r.get(
        "/ledger/public-key",
        response_class=PlainTextResponse,
        responses={503: {"description": "no EIL"}},
    )
    async def ledger_public_key():
        """The ledger's Ed25519 public key (PEM): all a third party needs to verify it."""
        from ....eil.keys import public_key_pem

        return PlainTextResponse(public_key_pem(ctx.eil().optimizer.ledger.public_key).decode())

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

    return r


def _parse_anchor(text: str) -> dict[str, Any] | str:
    """The anchor of a query parameter (JSON, or base64url of JSON), or why it is not one."""
    raw = text.strip()
    if not raw.startswith("{"):
        try:
            raw = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return "anchor must be JSON or base64url-encoded JSON"
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        return f"anchor is not valid JSON: {e.msg}"
    if not isinstance(data, dict):
        return "anchor must be a JSON object"
    return data


def _query_error(field: str, msg: str) -> Response:
    from fastapi.responses import JSONResponse

    return JSONResponse(
        status_code=422,
        content={"detail": [{"loc": ["query", field], "msg": msg, "type": "value_error"}]},
    )
