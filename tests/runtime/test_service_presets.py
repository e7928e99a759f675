"""The `preset` field of sample jobs, on a real service on 127.0.0.1: uvicorn (HTTP:
POST /v1/sample, POST /v1/jobs) and the app's gRPC server (idf.v1.Sampling/Sample).

Presets are named: packaged, or `presets/<name>.json` in the state directory; never a path.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import grpc
import httpx
import pytest
import uvicorn
from _runtime_helpers import API_KEY, NAME
from google.protobuf.json_format import MessageToDict

from idf_jax.evolve import save_preset
from idf_jax.runtime.service import Limits, ServiceConfig, create_app
from idf_jax.runtime.service.grpc.protos import generated

# a service process, worker processes and compiles: about 25 s unloaded
pytestmark = pytest.mark.slow

AUTH = {"Authorization": f"Bearer {API_KEY}"}
GRPC_AUTH = [("authorization", f"Bearer {API_KEY}")]
# one job shape (the service caches the compiled sampler): the tests share it
JOB = dict(capsule=NAME, params={"dim": 3}, chains=4, steps=120, burn_in=20, seed=5)
TUNER = {"method": "mams", "target_acceptance": 0.8, "l_factor": 0.3, "warmup_fraction": 0.1}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    state = tmp_path_factory.mktemp("state")
    presets = state / "presets"
    presets.mkdir()
    save_preset(presets, "gauss-mala", {"step_size": 0.9}, target="mala")
    save_preset(presets, "gauss-hmc", {"step_size": 0.3, "num_integration_steps": 5}, target="hmc")
    save_preset(presets, "anneal-here", {"num_steps": 10}, target="sample_equilibrium")
    (presets / "broken.json").write_text(json.dumps({"target": "mala", "config": {}}))
    save_preset(presets, "gauss-tuner", TUNER, target="sample_tuned")
    save_preset(presets, "tuner-bad", {"method": "mams", "l_factor": -1.0}, target="sample_tuned")
    save_preset(presets, "tuner-extra", {"step_size": 0.2}, target="sample_tuned")
    cfg = ServiceConfig(
        api_keys=(API_KEY,),
        nvp_model_path=None,
        state_dir=str(state),
        grpc_port=0,
        limits=Limits(max_chains=64, max_steps=5000),
    )
    app = create_app(cfg)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the service did not start")
        time.sleep(0.05)
    try:
        grpc_port = app.state.runtime["grpc"].port
        with (
            httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=AUTH, timeout=300) as http,
            grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel,
        ):
            yield http, channel
    finally:
        server.should_exit = True
        thread.join(60)


def _error(r: httpx.Response) -> tuple[list, str]:
    d = r.json()["detail"][0]
    return d["loc"], d["msg"]


def test_preset_sets_sampler_and_step_size(service):
    http, _ = service
    r = http.post("/v1/sample", json=dict(JOB, preset="gauss-mala"))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["sampler"] == "mala"
    assert out["summary"]["preset"] == {"name": "gauss-mala", "sampler": "mala", "step_size": 0.9}
    # the same numbers as the request that spells the settings out
    plain = http.post("/v1/sample", json=dict(JOB, sampler="mala", step_size=0.9)).json()
    assert out["summary"]["energy_mean"] == plain["summary"]["energy_mean"]


def test_request_fields_win_over_the_preset(service):
    http, _ = service
    r = http.post("/v1/sample", json=dict(JOB, preset="gauss-hmc", step_size=0.2))
    assert r.status_code == 200, r.text
    assert r.json()["summary"]["preset"] == {
        "name": "gauss-hmc",
        "sampler": "hmc",
        "step_size": 0.2,
        "num_integration_steps": 5,
    }


@pytest.mark.parametrize(
    "change, needle",
    [
        (dict(preset="no-such-preset"), "no preset 'no-such-preset'"),
        (dict(preset="lj13-anneal"), "not a sampler"),  # packaged, for sample_equilibrium
        (dict(preset="anneal-here"), "not a sampler"),
        (dict(preset="broken"), "must set step_size"),
        (dict(preset="gauss-mala", sampler="hmc"), "the request sets sampler 'hmc'"),
        (dict(preset="tuner-bad"), "has l_factor -1.0"),
        (dict(preset="tuner-extra"), "may set"),
        (dict(preset="gauss-tuner", sampler="hmc"), "the request sets sampler 'hmc'"),
        (dict(preset="gauss-tuner", step_size=0.5), "step_size would not be used"),
        (dict(preset="gauss-tuner", num_integration_steps=4), "num_integration_steps would"),
        (dict(preset="../state/presets/gauss-mala"), "pattern"),
        (dict(preset="/etc/passwd"), "pattern"),
    ],
)
def test_bad_preset_is_422_naming_the_field(service, change, needle):
    http, _ = service
    r = http.post("/v1/sample", json=dict(JOB, **change))
    assert r.status_code == 422, r.text
    loc, msg = _error(r)
    assert loc == ["body", "preset"] and needle in msg, (loc, msg)
    if "no-such" in needle:
        assert "gauss-mala" in msg  # the answer lists the presets there are


def test_jobs_route_takes_a_preset(service):
    http, _ = service
    r = http.post("/v1/jobs", json={"kind": "sample", "payload": dict(JOB, preset="gauss-mala")})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    deadline = time.monotonic() + 300
    while (info := http.get(f"/v1/jobs/{job_id}").json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert info["status"] == "done", info
    assert info["result"]["summary"]["preset"]["step_size"] == 0.9
    bad = http.post("/v1/jobs", json={"kind": "sample", "payload": dict(JOB, preset="nope")})
    assert bad.status_code == 422
    assert _error(bad)[0] == ["body", "payload.preset"]


def _grpc_request(channel, preset):
    """A Sampling stub on `channel` and the JOB request with `preset`."""
    pb = generated()
    stub = pb.sampling_grpc.SamplingStub(channel)
    fields = {k: v for k, v in JOB.items() if k != "params"}
    req = pb.sampling_pb2.SampleRequest(preset=preset, **fields)
    req.params.update(JOB["params"])
    return stub, req


def test_grpc_sample_takes_a_preset(service):
    http, channel = service
    stub, req = _grpc_request(channel, "gauss-mala")
    got = MessageToDict(stub.Sample(req, metadata=GRPC_AUTH, timeout=300).summary)
    want = http.post("/v1/sample", json=dict(JOB, preset="gauss-mala")).json()["summary"]
    assert got["preset"] == want["preset"] and got["energy_mean"] == want["energy_mean"]
    bad = generated().sampling_pb2.SampleRequest(capsule=NAME, preset="lj13-anneal")
    with pytest.raises(grpc.RpcError) as e:
        stub.Sample(bad, metadata=GRPC_AUTH, timeout=60)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details().startswith("preset"), e.value.details()


def test_tuner_preset_runs_sample_tuned_without_blocking_the_server(service, tmp_path):
    """A tuner preset: the worker runs `idf.sample_tuned(preset=...)` (MAMS tuned with the
    preset's settings); /healthz keeps answering while the job compiles and runs."""
    import jax

    import idf_jax as idf
    from idf_jax.runtime.service.jobs import build_capsule

    http, _ = service
    job = dict(JOB, steps=600, burn_in=0, preset="gauss-tuner")
    out: dict = {}
    t = threading.Thread(target=lambda: out.update(r=http.post("/v1/sample", json=job)))
    t.start()
    probes = 0
    with httpx.Client(base_url=str(http.base_url), timeout=5) as probe:
        while t.is_alive():
            assert probe.get("/healthz").status_code == 200
            probes += 1
            time.sleep(0.05)
    t.join()
    r = out["r"]
    assert r.status_code == 200, r.text
    res = r.json()
    assert probes >= 5, probes  # the job took a compile at least; the loop stayed free
    assert res["sampler"] == "mams"
    summary = res["summary"]
    assert summary["preset"] == {"name": "gauss-tuner", "sampler": "mams", **TUNER}
    # warm-up round(0.1 * 600) = 60, raised to the tuner's least 100: 500 draws
    assert summary["draws"] == 500 and summary["tuned"]["step_size"] > 0
    assert abs(summary["energy_mean"] - 1.5) < 0.4, summary  # N(0, I_3): <E> = 3 / 2
    # the same numbers as `sample_tuned` called here on the job's chains and key
    path = save_preset(tmp_path, "same", TUNER, target="sample_tuned")
    cap = build_capsule(NAME, {"dim": 3})
    k_init, k_run = jax.random.split(jax.random.key(JOB["seed"]))
    x0 = cap.init(k_init, JOB["chains"])
    want = idf.sample_tuned(cap.energy_fn, k_run, x0, 500, num_warmup=100, preset=path)
    assert summary["energy_mean"] == pytest.approx(float(want.energies.mean()), rel=1e-4)


def test_tuner_preset_with_too_few_steps_is_422_naming_steps(service):
    http, _ = service
    r = http.post("/v1/sample", json=dict(JOB, steps=90, burn_in=0, preset="gauss-tuner"))
    assert r.status_code == 422, r.text
    loc, msg = _error(r)
    assert loc[-1] == "steps" and "100 warm-up steps" in msg, (loc, msg)
    bad = http.post("/v1/jobs", json={"kind": "sample", "payload": dict(JOB, preset="tuner-bad")})
    assert bad.status_code == 422 and _error(bad)[0] == ["body", "payload.preset"], bad.text


def test_grpc_sample_takes_a_tuner_preset(service):
    _, channel = service
    stub, req = _grpc_request(channel, "gauss-tuner")
    resp = stub.Sample(req, metadata=GRPC_AUTH, timeout=300)
    got = MessageToDict(resp.summary)
    assert resp.sampler == "mams" and got["preset"]["l_factor"] == TUNER["l_factor"]
    assert got["draws"] == 100  # burn_in 20 is the warm-up: 120 - 20 draws
    bad = generated().sampling_pb2.SampleRequest(capsule=NAME, preset="gauss-tuner", sampler="ula")
    with pytest.raises(grpc.RpcError) as e:
        stub.Sample(bad, metadata=GRPC_AUTH, timeout=60)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details().startswith("preset"), e.value.details()
