"""KServe v2 (Open Inference Protocol) `inference.GRPCInferenceService` serving the NVP
forecaster as model "nvp", version "1".

Inputs: one tensor per model channel, named after the channel (ModelMetadata lists them in
the model's order), datatype FP32 (FP64 also accepted), shape [batch, time]: `batch`
telemetry histories of `time` samples, oldest first. Values come in `contents` or, as
standard clients send them, little-endian in `raw_input_contents`.

Outputs (channel axis in the order of the inputs in ModelMetadata, also given by the
response parameter `channels`): `mean`, `std`, `lower`, `upper` (90 % interval) FP32
[batch, channels]; `confidence` FP32 [batch]; `energy_residual` FP32 [batch] (NaN where
the model has no energy balance); `energy_valid` BOOL [batch]. Requests go through the
same micro-batcher as POST /v1/nvp/predict, under the same limits (`max_series` histories,
`max_history` samples: RESOURCE_EXHAUSTED beyond them).
"""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import orjson

from ..context import ServiceContext
from ..nvp_service import NVPService
from .protos import Generated
from .status import RpcError, invalid, rpc_errors

__all__ = ["MODEL_NAME", "MODEL_VERSION", "OUTPUTS", "InferenceService", "decode_inputs"]

MODEL_NAME = "nvp"
MODEL_VERSION = "1"
OUTPUTS = ("mean", "std", "lower", "upper", "confidence", "energy_residual", "energy_valid")
_DTYPES = {"FP32": np.dtype("<f4"), "FP64": np.dtype("<f8")}


def decode_inputs(
    request: Any, channels: tuple[str, ...], *, min_history: int, max_series: int, max_history: int
) -> np.ndarray:
    """The (batch, time, channels) float64 array of a ModelInferRequest's inputs; an
    `RpcError` naming the field for anything malformed or over a limit."""
    raw = list(request.raw_input_contents)
    inputs = list(request.inputs)
    if raw and len(raw) != len(inputs):
        raise invalid(
            "raw_input_contents", f"{len(raw)} entries for {len(inputs)} inputs (give all or none)"
        )
    arrays: dict[str, np.ndarray] = {}
    shape: tuple[int, int] | None = None
    for i, t in enumerate(inputs):
        where = f"inputs[{i}]"
        if t.name not in channels:
            raise invalid(f"{where}.name", f"unknown input {t.name!r}; the model's: {channels}")
        if t.name in arrays:
            raise invalid(f"{where}.name", f"input {t.name!r} given twice")
        dtype = _DTYPES.get(t.datatype)
        if dtype is None:
            raise invalid(f"{where}.datatype", f"{t.datatype!r}; use FP32 (or FP64)")
        dims = tuple(t.shape)
        if len(dims) != 2 or min(dims) < 1:
            raise invalid(f"{where}.shape", f"{list(dims)}; expected [batch, time], both >= 1")
        if dims[0] > max_series:
            raise RpcError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{where}.shape",
                f"batch of {dims[0]} histories, over the limit {max_series}",
            )
        if dims[1] > max_history:
            raise RpcError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{where}.shape",
                f"{dims[1]} samples per history, over the limit {max_history}",
            )
        if shape is not None and dims != shape:
            raise invalid(f"{where}.shape", f"{list(dims)} differs from {list(shape)}")
        shape = dims
        n = dims[0] * dims[1]
        if raw:
            if len(raw[i]) != n * dtype.itemsize:
                raise invalid(
                    f"raw_input_contents[{i}]",
                    f"{len(raw[i])} bytes; shape {list(dims)} of {t.datatype} needs "
                    f"{n * dtype.itemsize}",
                )
            a = np.frombuffer(raw[i], dtype)
        else:
            vals = t.contents.fp32_contents if t.datatype == "FP32" else t.contents.fp64_contents
            field = "fp32_contents" if t.datatype == "FP32" else "fp64_contents"
            if len(vals) != n:
                raise invalid(
                    f"{where}.contents.{field}", f"{len(vals)} values for shape {list(dims)}"
                )
            a = np.fromiter(vals, dtype, n)
        a = a.astype(np.float64).reshape(dims)
        if not np.isfinite(a).all():
            raise invalid(f"{where}.contents", f"input {t.name!r} holds NaN or infinite values")
        arrays[t.name] = a
    missing = [c for c in channels if c not in arrays]
    if missing:
        raise invalid("inputs", f"missing inputs {missing}; the model's: {list(channels)}")
    assert shape is not None
    if shape[1] < min_history:
        raise invalid("inputs", f"{shape[1]} samples per history; this model needs {min_history}")
    return np.stack([arrays[c] for c in channels], axis=-1)


class InferenceService:
    """The servicer of `inference.GRPCInferenceService` for one service instance."""

    def __init__(self, ctx: ServiceContext, gen: Generated):
        self.ctx = ctx
        self.pb = gen.inference_pb2

    def _ready(self) -> bool:
        state = self.ctx.state
        return bool(state["ready"]) and not state["draining"]

    def _nvp(self) -> NVPService:
        nvp = self.ctx.state["nvp"]
        if nvp is None:
            raise RpcError(
                grpc.StatusCode.UNAVAILABLE,
                "model_name",
                "no NVP model is configured (service.nvp_model_path)",
            )
        return nvp

    def _check_model(self, name: str, version: str, where: str = "") -> None:
        if name != MODEL_NAME:
            raise RpcError(
                grpc.StatusCode.NOT_FOUND, f"{where}name", f"unknown model {name!r}; serving 'nvp'"
            )
        if version not in ("", MODEL_VERSION):
            raise RpcError(
                grpc.StatusCode.NOT_FOUND,
                f"{where}version",
                f"unknown version {version!r} of model 'nvp'; serving {MODEL_VERSION!r}",
            )

    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return self.pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return self.pb.ServerReadyResponse(ready=self._ready())

    @rpc_errors
    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._check_model(request.name, request.version)
        return self.pb.ModelReadyResponse(ready=self._ready() and self.ctx.state["nvp"] is not None)

    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return self.pb.ServerMetadataResponse(name="idf-jax", version="0.1.0", extensions=[])

    @rpc_errors
    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._check_model(request.name, request.version)
        channels = tuple(self._nvp().predictor.channels)
        tensor = self.pb.ModelMetadataResponse.TensorMetadata
        per_channel = [-1, len(channels)]
        return self.pb.ModelMetadataResponse(
            name=MODEL_NAME,
            versions=[MODEL_VERSION],
            platform="jax",
            inputs=[tensor(name=c, datatype="FP32", shape=[-1, -1]) for c in channels],
            outputs=[
                *(tensor(name=n, datatype="FP32", shape=per_channel) for n in OUTPUTS[:4]),
                tensor(name="confidence", datatype="FP32", shape=[-1]),
                tensor(name="energy_residual", datatype="FP32", shape=[-1]),
                tensor(name="energy_valid", datatype="BOOL", shape=[-1]),
            ],
        )

    @rpc_errors
    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._check_model(request.model_name, request.model_version, "model_")
        wanted = [o.name for o in request.outputs] or list(OUTPUTS)
        for i, name in enumerate(wanted):
            if name not in OUTPUTS:
                raise invalid(f"outputs[{i}].name", f"unknown output {name!r}; known: {OUTPUTS}")
        nvp = self._nvp()
        p = nvp.predictor
        limits = self.ctx.config.limits
        channels = tuple(p.channels)
        x = decode_inputs(
            request,
            channels,
            min_history=max(p.min_history, 1),
            max_series=limits.max_series,
            max_history=limits.max_history,
        )
        try:
            preds = await nvp.batcher.submit_many([h[-p.window :] for h in x])
        except ValueError as e:
            raise invalid("inputs", str(e)) from e
        values = _outputs([orjson.loads(b) for b in preds], channels)
        resp = self.pb.ModelInferResponse(
            model_name=MODEL_NAME, model_version=MODEL_VERSION, id=request.id
        )
        resp.parameters["channels"].string_param = ",".join(channels)
        raw = len(request.raw_input_contents) > 0
        for name in wanted:
            a = values[name]
            out = resp.outputs.add(
                name=name, datatype="BOOL" if a.dtype == bool else "FP32", shape=list(a.shape)
            )
            if raw:
                resp.raw_output_contents.append(
                    a.astype("<f4" if a.dtype != bool else "?").tobytes()
                )
            elif a.dtype == bool:
                out.contents.bool_contents.extend(a.ravel().tolist())
            else:
                out.contents.fp32_contents.extend(a.ravel().tolist())
        return resp


def _outputs(results: list[dict[str, Any]], channels: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The output tensors of the predictor's result dicts (one per history)."""

    def per_channel(get) -> np.ndarray:
        return np.array([[get(r, c) for c in channels] for r in results], np.float32)

    def scalar(key: str) -> np.ndarray:
        v = [r.get(key) for r in results]
        return np.array([np.nan if x is None else x for x in v], np.float32)

    return {
        "mean": per_channel(lambda r, c: r[c]),
        "std": per_channel(lambda r, c: r["std"][c]),
        "lower": per_channel(lambda r, c: r["interval"][c][0]),
        "upper": per_channel(lambda r, c: r["interval"][c][1]),
        "confidence": scalar("confidence"),
        "energy_residual": scalar("energy_residual"),
        "energy_valid": np.array([bool(r.get("energy_valid")) for r in results], bool),
    }
