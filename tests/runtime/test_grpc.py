"""gRPC beside HTTP: a real grpc.aio server on 127.0.0.1 started by the app's lifespan
(KServe v2 inference on the NVP model, idf.v1.Sampling, health, reflection, API keys)."""

from __future__ import annotations

import re
from pathlib import Path

import grpc
import numpy as np
import pytest
from _runtime_helpers import API_KEY, NAME
from fastapi.testclient import TestClient
from grpc_health.v1 import health_pb2, health_pb2_grpc

from idf_jax.runtime.service import Limits, ServiceConfig, create_app
from idf_jax.runtime.service.grpc.protos import generated

AUTH = [("authorization", f"Bearer {API_KEY}")]
HTTP_AUTH = {"Authorization": f"Bearer {API_KEY}"}
README = Path(__file__).parents[2] / "README.md"
HISTORY = [
    {"cpu": 0.75, "power": 850.0, "temp": 72.0},
    {"cpu": 0.78, "power": 865.0, "temp": 73.0},
    {"cpu": 0.81, "power": 880.0, "temp": 74.0},
]
# one job shape (compiled once, cached by the service): the tests below share it
JOB = dict(capsule=NAME, chains=4, steps=200, step_size=0.5)


@pytest.fixture(scope="module")
def service():
    cfg = ServiceConfig(
        api_keys=(API_KEY,),
        nvp_model_path="default",
        batch_max_size=4,
        batch_max_wait_ms=5.0,
        grpc_port=0,
        limits=Limits(max_chains=64, max_steps=5000, max_series=8, max_history=512),
    )
    with TestClient(create_app(cfg)) as http:
        port = http.app.state.runtime["grpc"].port
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield http, channel, port


@pytest.fixture(scope="module")
def pb():
    return generated()


def _infer_request(pb, histories, **kw):
    inf = pb.inference_pb2
    req = inf.ModelInferRequest(model_name="nvp", **kw)
    for ch in ("cpu", "power", "temp"):
        values = np.array([[r[ch] for r in h] for h in histories], np.float32)
        t = req.inputs.add(name=ch, datatype="FP32", shape=list(values.shape))
        t.contents.fp32_contents.extend(values.ravel().tolist())
    return req


def _code(excinfo) -> grpc.StatusCode:
    return excinfo.value.code()


def test_health_and_reflection_need_no_key(service, pb):
    _, channel, _ = service
    health = health_pb2_grpc.HealthStub(channel)
    assert (
        health.Check(health_pb2.HealthCheckRequest()).status
        == health_pb2.HealthCheckResponse.SERVING
    )
    svc = health.Check(health_pb2.HealthCheckRequest(service="inference.GRPCInferenceService"))
    assert svc.status == health_pb2.HealthCheckResponse.SERVING
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    req = reflection_pb2.ServerReflectionRequest(list_services="")
    names = {
        s.name
        for r in stub.ServerReflectionInfo(iter([req]))
        for s in r.list_services_response.service
    }
    assert {"inference.GRPCInferenceService", "idf.v1.Sampling", "grpc.health.v1.Health"} <= names


def test_every_other_call_needs_a_key(service, pb):
    _, channel, _ = service
    infer = pb.inference_grpc.GRPCInferenceServiceStub(channel)
    sampling = pb.sampling_grpc.SamplingStub(channel)
    req = pb.inference_pb2.ServerLiveRequest()
    for metadata in (
        None,
        [("authorization", "Bearer wrong-key-xxxxxxxx")],
        [("authorization", API_KEY)],
    ):
        with pytest.raises(grpc.RpcError) as e:
            infer.ServerLive(req, metadata=metadata)
        assert _code(e) == grpc.StatusCode.UNAUTHENTICATED and "API key" in e.value.details()
        with pytest.raises(grpc.RpcError) as e:
            list(
                sampling.SampleStream(
                    pb.sampling_pb2.SampleRequest(capsule=NAME), metadata=metadata
                )
            )
        assert _code(e) == grpc.StatusCode.UNAUTHENTICATED
    assert infer.ServerLive(req, metadata=AUTH).live
    assert infer.ServerLive(req, metadata=[("x-api-key", API_KEY)]).live


def test_kserve_metadata_and_readiness(service, pb):
    _, channel, _ = service
    inf = pb.inference_pb2
    infer = pb.inference_grpc.GRPCInferenceServiceStub(channel)
    assert infer.ServerReady(inf.ServerReadyRequest(), metadata=AUTH).ready
    assert infer.ModelReady(inf.ModelReadyRequest(name="nvp"), metadata=AUTH).ready
    meta = infer.ModelMetadata(inf.ModelMetadataRequest(name="nvp"), metadata=AUTH)
    assert [t.name for t in meta.inputs] == ["cpu", "power", "temp"]
    assert all(t.datatype == "FP32" and list(t.shape) == [-1, -1] for t in meta.inputs)
    assert {t.name for t in meta.outputs} >= {"mean", "std", "lower", "upper", "confidence"}
    with pytest.raises(grpc.RpcError) as e:
        infer.ModelMetadata(inf.ModelMetadataRequest(name="resnet"), metadata=AUTH)
    assert _code(e) == grpc.StatusCode.NOT_FOUND and e.value.details().startswith("name:")


def test_model_infer_matches_http_predict(service, pb):
    http, channel, _ = service
    infer = pb.inference_grpc.GRPCInferenceServiceStub(channel)
    histories = [HISTORY, [{k: v * 0.98 for k, v in r.items()} for r in HISTORY]]
    resp = infer.ModelInfer(_infer_request(pb, histories, id="r1"), metadata=AUTH)
    assert resp.id == "r1" and resp.parameters["channels"].string_param == "cpu,power,temp"
    out = {o.name: o for o in resp.outputs}
    mean = np.array(out["mean"].contents.fp32_contents).reshape(list(out["mean"].shape))
    want = http.post("/v1/nvp/predict", json={"histories": histories}, headers=HTTP_AUTH).json()
    for b, pred in enumerate(want["predictions"]):
        assert mean[b] == pytest.approx([pred[c] for c in ("cpu", "power", "temp")], rel=1e-4)
        assert out["confidence"].contents.fp32_contents[b] == pytest.approx(
            pred["confidence"], rel=1e-4
        )
    # raw little-endian bytes (what tritonclient sends) give the same numbers back as raw bytes
    raw = _infer_request(pb, histories)
    for t in raw.inputs:
        raw.raw_input_contents.append(np.array(t.contents.fp32_contents, "<f4").tobytes())
        t.ClearField("contents")
    raw.outputs.add(name="mean")
    r2 = infer.ModelInfer(raw, metadata=AUTH)
    assert [o.name for o in r2.outputs] == ["mean"]
    got = np.frombuffer(r2.raw_output_contents[0], "<f4").reshape(2, 3)
    np.testing.assert_allclose(got, mean, rtol=1e-6)


@pytest.mark.parametrize(
    "mutate, code, field",
    [
        (lambda r: setattr(r, "model_name", "other"), "NOT_FOUND", "model_name"),
        (
            lambda r: setattr(r.inputs[1], "datatype", "INT8"),
            "INVALID_ARGUMENT",
            "inputs[1].datatype",
        ),
        (lambda r: setattr(r.inputs[0], "name", "volts"), "INVALID_ARGUMENT", "inputs[0].name"),
        (lambda r: r.inputs.pop(), "INVALID_ARGUMENT", "inputs"),
        (lambda r: r.inputs[2].shape.append(1), "INVALID_ARGUMENT", "inputs[2].shape"),
        (
            lambda r: r.inputs[0].contents.fp32_contents.append(1.0),
            "INVALID_ARGUMENT",
            "inputs[0].contents.fp32_contents",
        ),
        (
            lambda r: r.inputs[0].contents.fp32_contents.__setitem__(0, float("nan")),
            "INVALID_ARGUMENT",
            "inputs[0].contents",
        ),
        (lambda r: r.outputs.add(name="median"), "INVALID_ARGUMENT", "outputs[0].name"),
        (
            lambda r: r.raw_input_contents.append(b"\0" * 4),
            "INVALID_ARGUMENT",
            "raw_input_contents",
        ),
    ],
)
def test_model_infer_bad_input_names_the_field(service, pb, mutate, code, field):
    _, channel, _ = service
    infer = pb.inference_grpc.GRPCInferenceServiceStub(channel)
    req = _infer_request(pb, [HISTORY])
    mutate(req)
    with pytest.raises(grpc.RpcError) as e:
        infer.ModelInfer(req, metadata=AUTH)
    assert _code(e) == getattr(grpc.StatusCode, code), e.value.details()
    assert e.value.details().startswith(field + ":"), e.value.details()


def test_model_infer_limits_are_resource_exhausted(service, pb):
    _, channel, _ = service
    infer = pb.inference_grpc.GRPCInferenceServiceStub(channel)
    for histories in ([HISTORY] * 9, [HISTORY * 200]):  # max_series=8, max_history=512
        with pytest.raises(grpc.RpcError) as e:
            infer.ModelInfer(_infer_request(pb, histories), metadata=AUTH)
        assert _code(e) == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert e.value.details().startswith("inputs[0].shape:")


def test_a_message_over_the_body_limit_is_resource_exhausted(service, pb):
    _, channel, _ = service
    infer = pb.inference_grpc.GRPCInferenceServiceStub(channel)
    req = _infer_request(pb, [HISTORY])
    req.id = "x" * (1 << 21)  # 2 MiB: over limits.max_body_bytes (1 MiB), as for HTTP
    with pytest.raises(grpc.RpcError) as e:
        infer.ModelInfer(req, metadata=AUTH)
    assert _code(e) == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_sample_matches_http(service, pb):
    http, channel, _ = service
    sp = pb.sampling_pb2
    sampling = pb.sampling_grpc.SamplingStub(channel)
    req = sp.SampleRequest(capsule=NAME, chains=4, steps=200, step_size=0.5)
    req.params.update({"dim": 2})
    resp = sampling.Sample(req, metadata=AUTH, timeout=300)
    body = dict(JOB, params={"dim": 2})
    want = http.post("/v1/sample", json=body, headers=HTTP_AUTH).json()
    from google.protobuf.json_format import MessageToDict

    got = MessageToDict(resp.summary)
    assert resp.capsule == NAME and resp.sampler == "mala"
    assert got["energy_mean"] == pytest.approx(want["summary"]["energy_mean"], rel=1e-9)
    assert got["chains"] == 4 and got["draws"] == 200


def test_sample_stream_reports_progress_then_result(service, pb):
    _, channel, _ = service
    sp = pb.sampling_pb2
    sampling = pb.sampling_grpc.SamplingStub(channel)
    req = sp.SampleRequest(
        capsule=NAME, chains=4, steps=200, step_size=0.5, return_positions="final"
    )
    events = list(sampling.SampleStream(req, metadata=AUTH, timeout=300))
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[-1] == "result" and "progress" in kinds[:-1]
    last = [e.progress for e in events if e.WhichOneof("event") == "progress"][-1]
    assert last.steps_done == last.num_steps == 200
    result = events[-1].result
    assert len(result.energies) == 4 and len(result.positions["x"]) == 4


@pytest.mark.parametrize(
    "fields, code, field",
    [
        (dict(capsule=""), "INVALID_ARGUMENT", "capsule"),
        (dict(capsule="no.such.capsule"), "INVALID_ARGUMENT", "capsule"),
        (dict(capsule=NAME, sampler="gibbs"), "INVALID_ARGUMENT", "sampler"),
        (dict(capsule=NAME, chains=0), "INVALID_ARGUMENT", "chains"),
        (dict(capsule=NAME, step_size=-1.0), "INVALID_ARGUMENT", "step_size"),
        (dict(capsule=NAME, steps=100, burn_in=100), "INVALID_ARGUMENT", "burn_in"),
        (dict(capsule=NAME, chains=65), "RESOURCE_EXHAUSTED", "chains"),
        (dict(capsule=NAME, steps=5001), "RESOURCE_EXHAUSTED", "steps"),
    ],
)
def test_sample_bad_input_names_the_field(service, pb, fields, code, field):
    _, channel, _ = service
    sampling = pb.sampling_grpc.SamplingStub(channel)
    req = pb.sampling_pb2.SampleRequest(**fields)
    for call in (sampling.Sample, lambda r, **kw: list(sampling.SampleStream(r, **kw))):
        with pytest.raises(grpc.RpcError) as e:
            call(req, metadata=AUTH, timeout=60)
        assert _code(e) == getattr(grpc.StatusCode, code), e.value.details()
        assert e.value.details().startswith(field), e.value.details()


def test_equilibrium(service, pb):
    _, channel, _ = service
    sp = pb.sampling_pb2
    sampling = pb.sampling_grpc.SamplingStub(channel)
    req = sp.EquilibriumRequest(capsule=NAME, chains=4, steps=300)
    resp = sampling.Equilibrium(req, metadata=AUTH, timeout=300)
    assert resp.capsule == NAME and resp.summary["chains"] == 4
    assert resp.summary["best_energy"] < 0.5  # the Gaussian's minimum is 0 at the origin
    with pytest.raises(grpc.RpcError) as e:
        sampling.Equilibrium(sp.EquilibriumRequest(capsule=NAME, chains=65), metadata=AUTH)
    assert _code(e) == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_readme_python_client_example_runs(service):
    """The README's gRPC client example, run against this server."""
    _, _, port = service
    text = README.read_text()
    m = re.search(r"<!-- grpc-client-example -->\s*```python\n(.*?)```", text, re.S)
    assert m, "README lacks the gRPC client example"
    code = m.group(1).replace("127.0.0.1:50051", f"127.0.0.1:{port}")
    code = code.replace("change-me-please", API_KEY)
    # the test capsule and the job shape the tests above compiled (the README's LJ cluster
    # would compile a new sampler: ~20 s here); the rest of the example runs as written
    for a, b in (
        ('"molecular.lennard_jones_cluster"', "NAME"),
        ('{"n": 4}', '{"dim": 2}'),
        ("step_size=1e-3", "step_size=0.5"),
    ):
        assert a in code
        code = code.replace(a, b)
    scope: dict = {"NAME": NAME}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["forecast"].shape == (1, 3) and scope["summary"]["chains"] == 4


def test_generated_code_is_rebuilt_when_a_proto_changes(tmp_path, monkeypatch):
    import shutil

    from idf_jax.runtime.service.grpc import protos

    src = tmp_path / "protos"
    shutil.copytree(protos.proto_dir(), src)
    out = tmp_path / "generated"
    monkeypatch.setattr(protos, "_candidates", lambda digest: [out])
    assert protos._ensure_compiled(src) == out
    stamp = (out / "STAMP").read_text()
    grpc_file = (out / "idf" / "v1" / "sampling_pb2_grpc.py").read_text()
    assert "from . import sampling_pb2 as" in grpc_file  # no top-level import of a _pb2
    assert (
        "from . import grpc_predict_v2_pb2 as" in (out / "grpc_predict_v2_pb2_grpc.py").read_text()
    )
    mtime = (out / "grpc_predict_v2_pb2.py").stat().st_mtime_ns
    assert protos._ensure_compiled(src) == out  # up to date: nothing compiled again
    assert (out / "grpc_predict_v2_pb2.py").stat().st_mtime_ns == mtime
    proto = src / "idf" / "v1" / "sampling.proto"
    proto.write_text(proto.read_text() + "\n// changed\n")
    protos._ensure_compiled(src)
    assert (out / "STAMP").read_text() != stamp


def test_grpc_and_kafka_config_keys_are_checked():
    from idf_jax.runtime.service import load_config

    env = {"IDF_API_KEYS": API_KEY}
    assert load_config({"grpc_port": 50051}, env=env).grpc_port == 50051
    for bad, needle in (
        ({"grpc_port": 70000}, "grpc_port"),
        ({"grpc_port": "50051"}, "grpc_port"),
        ({"kafka_bootstrap": "127.0.0.1:9092"}, "kafka_topic"),
        ({"kafka_bootstrap": "127.0.0.1:9092", "kafka_topic": " "}, "kafka_topic"),
    ):
        with pytest.raises(ValueError, match=needle):
            load_config(bad, env=env)


def test_serve_flags_reach_the_config(monkeypatch, capsys):
    import uvicorn

    from idf_jax.runtime.cli import main

    seen = {}

    class FakeServer:  # `idf serve` builds a uvicorn.Server; capture its app's config
        def __init__(self, config):
            seen.update(config=config.app.state.config)

        def run(self):
            pass

    class FakeConfig:  # uvicorn.Config would configure logging onto the captured stderr
        def __init__(self, app, **kw):
            self.app = app

    monkeypatch.setattr(uvicorn, "Server", FakeServer)
    monkeypatch.setattr(uvicorn, "Config", FakeConfig)
    monkeypatch.setenv("IDF_API_KEYS", API_KEY)
    args = ["serve", "--host", "127.0.0.2", "--grpc-port", "50099"]
    args += ["--kafka-bootstrap", "127.0.0.1:9092", "--kafka-topic", "tele", "--kafka-group", "g1"]
    assert main(args) in (0, None)
    cfg = seen["config"]
    assert (cfg.grpc_port, cfg.grpc_host) == (50099, "127.0.0.2")
    assert (cfg.kafka_bootstrap, cfg.kafka_topic, cfg.kafka_group) == (
        "127.0.0.1:9092",
        "tele",
        "g1",
    )
    assert main(["serve", "--grpc-port", "70000"]) != 0
    assert "--grpc-port" in capsys.readouterr().err
