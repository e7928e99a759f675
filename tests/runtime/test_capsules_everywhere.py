"""Every registered capsule runs through `idf sample` and `POST /v1/sample`, and every
`idf init --domain` template runs through `idf sample --config`, at small sizes.

The registry is walked: a capsule registered without an entry in `PARAMS` fails
`test_every_capsule_has_an_entry`, so a new capsule cannot skip these checks. Spin
lattices go to block Gibbs, molecules from SMILES / formulas build their initial states
outside traced code, the portfolio takes its covariance matrix as nested lists.
"""

from __future__ import annotations

import json

import _runtime_helpers  # noqa: F401 - the testing.* capsules (left out of the walk)
import numpy as np
import pytest
from _runtime_helpers import API_KEY
from fastapi.testclient import TestClient

import capsules
from idf_jax.runtime.cli import main
from idf_jax.runtime.service import ServiceConfig, create_app

# compiles every capsule's sampler twice (CLI and a service worker): minutes on 2 cores
pytestmark = pytest.mark.slow

AUTH = {"Authorization": f"Bearer {API_KEY}"}
_DATACENTER = {
    "servers": [
        {"name": "a", "idle_power_kw": 0.1, "max_power_kw": 0.3, "service_rate": 500.0},
        {"name": "b", "idle_power_kw": 0.12, "max_power_kw": 0.35, "service_rate": 700.0},
    ],
    "workloads": [{"name": "w0", "request_rate": 120.0}, {"name": "w1", "request_rate": 90.0}],
    "recirculation": 2.0,
    "constraints": {"uptime": 0.999, "latency_max": 20.0},
}
PARAMS = {
    "biomedical.ab_protein": {"sequence": "ABBAB"},
    "creative.digits": {"num_train_steps": 20},
    "enterprise.datacenter": {"config": _DATACENTER},
    "lattice.ising": {"L": 4},
    "lattice.potts": {"L": 4, "q": 3},
    "market.portfolio": {
        "mu": [0.08, 0.05],
        "cov": [[0.04, 0.006], [0.006, 0.02]],
        "risk_aversion": 3.0,
    },
    "molecular.from_formula": {"formula": "H2O"},
    "molecular.from_smiles": {"smiles": "O"},
    "molecular.lennard_jones_cluster": {"n": 4},
    "plasma.thomson": {"n": 4},
    "plasma.yukawa_trap": {"n": 4},
}
SHIPPED = sorted(n for n in capsules.registry() if not n.startswith("testing."))
SMALL = {"chains": 2, "steps": 4, "step_size": 1e-4}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    cfg = ServiceConfig(
        api_keys=(API_KEY,),
        nvp_model_path=None,
        eil=False,
        state_dir=str(tmp_path_factory.mktemp("state")),
        max_concurrent_jobs=1,
        prewarm_workers=True,
    )
    with TestClient(create_app(cfg)) as c:
        yield c


def test_every_capsule_has_an_entry():
    assert set(SHIPPED) == set(PARAMS), set(SHIPPED) ^ set(PARAMS)


def _cli(capsys, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out + out.err


@pytest.mark.parametrize("name", SHIPPED)
def test_capsule_through_cli_and_service(name, client, capsys, tmp_path):
    params = PARAMS[name]
    args = ["sample", "--capsule", name, "--out", str(tmp_path), "--no-plots", "--no-progress"]
    for k, v in params.items():
        args += ["--param", f"{k}={json.dumps(v)}"]
    args += ["--chains", "2", "--steps", "4", "--step-size", "1e-4"]
    rc, out = _cli(capsys, *args)
    assert rc == 0, out[-3000:]
    with np.load(tmp_path / "samples.npz") as f:
        assert f["energies"].shape == (2, 4)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["capsule"] == name and summary["chains"] == 2

    r = client.post(
        "/v1/sample",
        json={"capsule": name, "params": params, **SMALL, "return_positions": "final"},
        headers=AUTH,
    )
    assert r.status_code == 200, r.text[:3000]
    body = r.json()
    assert body["summary"]["chains"] == 2 and body["summary"]["draws"] == 4
    assert body["positions"] and len(body["energies"]) == 2


@pytest.mark.parametrize("domain", capsules.DOMAINS)
def test_init_template_runs_through_sample_config(domain, capsys, tmp_path):
    root = tmp_path / domain
    rc, out = _cli(capsys, "init", str(root), "--domain", domain)
    assert rc == 0, out
    extra = ["--param", "num_train_steps=20"] if domain == "creative" else []
    rc, out = _cli(
        capsys,
        "sample",
        "--config",
        str(root / "config.yaml"),
        "--chains",
        "2",
        "--steps",
        "4",
        "--burn-in",
        "0",
        "--thin",
        "1",
        "--out",
        str(root / "results" / "sample"),
        "--no-plots",
        "--no-progress",
        *extra,
    )
    assert rc == 0, out[-3000:]
    assert (root / "results" / "sample" / "summary.json").is_file()
