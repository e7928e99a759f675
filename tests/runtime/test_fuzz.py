"""Fuzzing the service against its own OpenAPI schema: no input may produce a 5xx.

Schemathesis generates valid and invalid requests for every operation from the schema
(`/openapi.json`) and calls the ASGI app in-process. A 503 is accepted only from a
component that this test instance really lacks (NVP model, EIL, annealing driver), and
then only with the documented 'unavailable' error body.
"""

from __future__ import annotations

import pytest
from _runtime_helpers import API_KEY, NAME
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from idf_jax.runtime.service import Limits, ServiceConfig, create_app

schemathesis = pytest.importorskip("schemathesis")

AUTH = {"Authorization": f"Bearer {API_KEY}"}
LIMITS = Limits(
    max_chains=4, max_steps=40, max_dimensions=8, max_body_bytes=50_000, max_draws_returned=2_000
)
# Every component configured (NVP when idf_jax.nvp is installed, a scratch EIL when
# idf_jax.eil is): a 503 from any of them would fail the test.
APP = create_app(ServiceConfig(api_keys=(API_KEY,), limits=LIMITS, batch_max_size=4))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
# One pytest item per operation with a unique id (schemathesis' own parametrize gives all
# operations the same node id, which pytest-xdist collapses into one).
OPERATIONS = [result.ok() for result in schema.get_all_operations()]
_ops = pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)


@pytest.fixture(scope="module", autouse=True)
def _one_lifespan():
    """One application start-up for the module. Schemathesis' pytest plugin ends the ASGI
    lifespan after every test, and this app's start-up (NVP checkpoint load and warm-up, the
    EIL store) takes seconds: without this, every test would pay it again. The lifespan
    still runs (started by the first request) and is ended once, after the last test."""
    from schemathesis.python import asgi

    real = asgi.shutdown_lifespans
    asgi.shutdown_lifespans = lambda: None
    try:
        yield
    finally:
        asgi.shutdown_lifespans = real
        real()


def _cases(operation):
    """Valid requests and, where the operation has inputs to break, invalid ones."""
    return st.one_of(
        operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
        operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
    )


def _check(response, path: str):
    status = response.status_code
    if status == 503:
        comps = APP.state.runtime
        absent = {
            "/v1/nvp/predict": comps["nvp"] is None,
            "/v1/equilibrium": True,
            "/v1/eil/sense": comps["eil"] is None,
            "/v1/eil/act": comps["eil"] is None,
            "/v1/eil/prove": comps["eil"] is None,
            "/v1/ledger/verify": comps["eil"] is None,
        }
        import idf_jax

        if path == "/v1/equilibrium":
            absent[path] = not hasattr(idf_jax, "sample_equilibrium")
        assert absent.get(path), f"503 from {path} although the component is configured"
        assert response.json()["detail"][0]["type"] == "unavailable"
        return
    assert status < 500, f"{path}: {status} {response.text[:500]}"


@_ops
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(data=st.data())
def test_no_server_errors_with_key(operation, data):
    """The fast version (default run): a few cases per operation."""
    case = data.draw(_cases(operation))
    response = case.call(headers=AUTH)
    _check(response, case.path)


@pytest.mark.slow
@_ops
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_no_server_errors_with_key_thorough(operation, data):
    """The long version (-m slow): many random cases per operation."""
    case = data.draw(_cases(operation))
    response = case.call(headers=AUTH)
    _check(response, case.path)


@_ops
@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(data=st.data())
def test_no_server_errors_without_key(operation, data):
    case = data.draw(_cases(operation))
    response = case.call(headers={"Authorization": "Bearer not-a-valid-key"})
    assert response.status_code < 500
    if case.path not in ("/healthz", "/readyz"):
        # schemathesis also tries wrong methods (405); no protected route may answer 2xx
        assert response.status_code in (401, 405), response.status_code


_number = st.one_of(
    st.integers(-10, 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -1, 1e-300, 1e300]),
)
_body = st.fixed_dictionaries(
    {"capsule": st.just(NAME)},
    optional={
        "params": st.dictionaries(
            st.sampled_from(["dim", "sigma", "other"]),
            st.one_of(_number, st.text(max_size=5), st.booleans(), st.lists(_number, max_size=3)),
            max_size=2,
        ),
        "sampler": st.sampled_from(["mala", "ula", "underdamped", "hmc", "x"]),
        "chains": st.integers(-2, 6),
        "steps": st.integers(-2, 50),
        "thin": st.integers(-1, 5),
        "burn_in": st.integers(-1, 45),
        "step_size": _number,
        "temperature": _number,
        "friction": _number,
        "num_integration_steps": st.integers(-1, 4),
        "seed": st.integers(-1, 2**33),
        "return_positions": st.sampled_from(["none", "final", "all"]),
    },
)


@pytest.fixture(scope="module")
def client():
    from fastapi.testclient import TestClient

    # its own app: APP's lifespan is still running for the schemathesis tests (`_one_lifespan`)
    app = create_app(ServiceConfig(api_keys=(API_KEY,), limits=LIMITS, batch_max_size=4))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@given(body=_body)
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_sample_bodies_near_the_valid_region(client, body):
    """Bodies built around a real capsule reach the sampler: still never a 5xx."""
    r = client.post("/v1/sample", json=body, headers=AUTH)
    assert r.status_code in (200, 413, 422), (body, r.status_code, r.text[:300])
    if r.status_code == 200:
        s = r.json()["summary"]
        assert s["chains"] == body.get("chains", 16)
