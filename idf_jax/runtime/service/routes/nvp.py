"""POST /v1/nvp/predict, validated (canonical requests take `fastpath.FastPredict` first)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from ..batching import BatcherClosed
from ..context import ServiceContext
from ..jobs import JobError
from ..schemas import PredictRequest

__all__ = ["router"]


def router(ctx: ServiceContext) -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["nvp"], dependencies=ctx.protected)
    limits = ctx.config.limits

    @r.post(
        "/nvp/predict",
        responses={413: {"description": "over a limit"}, 503: {"description": "no model"}},
    )
    async def nvp_predict(req: PredictRequest):
        """Next-state forecast of one history (`history`) or many (`histories`)."""
        if req.history is not None and req.histories is None:
            histories, where = [req.history], "history"
        elif req.histories is not None and req.history is None:
            histories, where = req.histories, "histories"
        else:
            raise JobError("history", "give exactly one of `history` or `histories`")
        nvp = ctx.state["nvp"]
        if nvp is None:
            raise JobError("history", "no NVP model is configured (service.nvp_model_path)", 503)
        if len(histories) > limits.max_series:
            raise JobError(
                "histories", f"{len(histories)} series, over the limit {limits.max_series}", 413
            )
        for i, h in enumerate(histories):
            if len(h) > limits.max_history:
                field = "history" if where == "history" else f"histories.{i}"
                raise JobError(field, f"{len(h)} samples, over the limit {limits.max_history}", 413)
        try:
            preds = await nvp.predict(histories, where)
        except ValueError as e:
            raise JobError(where, str(e)) from e
        except BatcherClosed as e:
            raise JobError("history", str(e), 503) from e
        if where == "history":
            body = b'{"prediction":' + preds[0] + b"}"
        else:
            body = b'{"predictions":[' + b",".join(preds) + b"]}"
        return Response(body, media_type="application/json")

    return r
