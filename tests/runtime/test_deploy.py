"""Kubernetes manifests and the Helm chart, validated offline against the Kubernetes schemas."""

from __future__ import annotations

import json
import re
from dataclasses import replace as dataclasses_replace

import pytest
import yaml

from idf_jax.runtime.cli import main
from idf_jax.runtime.k8s import (
    HELM_VALUES,
    DeploySpec,
    render_manifests,
    template_name,
    write_helm_chart,
)

kv = pytest.importorskip("kubernetes_validate")
K8S_VERSION = kv.latest_version() if hasattr(kv, "latest_version") else "1.37.0"


def _validate(obj):
    kv.validate(obj, K8S_VERSION, strict=True)


KINDS = [
    "ConfigMap",
    "NetworkPolicy",
    "Service",
    "Service",
    "Deployment",
    "StatefulSet",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "Ingress",
]
SECRET_LEDGER_KEY = "5f" * 32


def _by(objs, kind, suffix=""):
    return next(o for o in objs if o["kind"] == kind and o["metadata"]["name"].endswith(suffix))


def test_manifests_validate_against_kubernetes_schemas():
    spec = DeploySpec(
        namespace="prod",
        image="registry.example/idf-jax:1.2.3",
        replicas=3,
        service_config={
            "limits": {"max_chains": 256},
            "api_keys": ["secret-key-1"],
            "eil": {"ledger_key": SECRET_LEDGER_KEY, "horizon": 4, "db_path": "/x.sqlite"},
        },
    )
    objs = render_manifests(spec)
    assert [o["kind"] for o in objs] == KINDS
    for o in objs:
        _validate(o)
        assert o["metadata"]["namespace"] == "prod"
    cm = _by(objs, "ConfigMap")
    dep, sts = _by(objs, "Deployment"), _by(objs, "StatefulSet")
    hpa, pdb = _by(objs, "HorizontalPodAutoscaler"), _by(objs, "PodDisruptionBudget")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "registry.example/idf-jax:1.2.3" and dep["spec"]["replicas"] == 3
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["resources"]["requests"] == {"cpu": "1", "memory": "2Gi"}
    env = {e["name"]: e for e in c["env"]}
    assert env["IDF_API_KEYS"]["valueFrom"]["secretKeyRef"]["name"] == "idf-api-keys"
    # no key ever lands in a ConfigMap (or anywhere in the manifests)
    text = json.dumps(objs)
    assert "secret-key-1" not in text and SECRET_LEDGER_KEY not in text
    assert yaml.safe_load(cm["data"]["api.yaml"]) == {
        "service": {"limits": {"max_chains": 256}, "eil": False}
    }
    assert yaml.safe_load(cm["data"]["eil.yaml"]) == {
        "service": {"limits": {"max_chains": 256}, "eil": {"horizon": 4}}
    }
    # the ledger key reaches the EIL pod from the Secret only
    sc = sts["spec"]["template"]["spec"]["containers"][0]
    senv = {e["name"]: e for e in sc["env"]}
    ref = senv["IDF_EIL_LEDGER_KEY"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "idf-api-keys", "key": "ledger-key", "optional": True}
    assert "IDF_EIL_LEDGER_KEY" not in env  # the stateless pods sign nothing
    assert (
        senv["IDF_STATE_DIR"]["value"] == "/var/lib/idf" and sc["args"][-1] == "/etc/idf/eil.yaml"
    )
    # the stateful part: exactly one replica, its state on a persistent volume
    assert sts["spec"]["replicas"] == 1
    claim = sts["spec"]["volumeClaimTemplates"][0]
    assert claim["metadata"]["name"] == "state"
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert {"name": "state", "mountPath": "/var/lib/idf"} in sc["volumeMounts"]
    vols = {v["name"] for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert "state" not in vols  # from the claim, not an emptyDir
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "idf",
    }
    assert dep["spec"]["selector"] != sts["spec"]["selector"]  # never one another's pods
    assert pdb["spec"]["selector"] == dep["spec"]["selector"]
    svc, eil_svc = objs[2], objs[3]
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert eil_svc["spec"]["selector"] == sts["spec"]["selector"]["matchLabels"]
    assert sts["spec"]["serviceName"] == eil_svc["metadata"]["name"]
    # hardening, on both parts
    for wl in (dep, sts):
        podspec = wl["spec"]["template"]["spec"]
        assert podspec["securityContext"]["runAsNonRoot"] is True
        assert podspec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        csc = podspec["containers"][0]["securityContext"]
        assert csc["seccompProfile"] == {"type": "RuntimeDefault"} and csc["runAsNonRoot"]
        assert csc["readOnlyRootFilesystem"] and csc["capabilities"] == {"drop": ["ALL"]}
        ann = wl["spec"]["template"]["metadata"]["annotations"]
        assert ann["prometheus.io/port"] == "9100" and ann["prometheus.io/path"] == "/metrics"
        ports = {p["name"]: p["containerPort"] for p in podspec["containers"][0]["ports"]}
        assert ports == {"http": 8000, "metrics": 9100}
    netpol = _by(objs, "NetworkPolicy")
    assert netpol["spec"]["policyTypes"] == ["Ingress", "Egress"]
    metrics_rule = netpol["spec"]["ingress"][1]
    assert metrics_rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert metrics_rule["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }


def test_no_eil_means_no_stateful_part():
    objs = render_manifests(DeploySpec(service_config={"eil": False}))
    assert "StatefulSet" not in [o["kind"] for o in objs]
    for o in objs:
        _validate(o)
    ing = _by(objs, "Ingress")  # everything to the stateless pods
    paths = ing["spec"]["rules"][0]["http"]["paths"]
    assert [(p["path"], p["backend"]["service"]["name"]) for p in paths] == [("/", "idf")]


def _routes(ing):
    return {
        p["path"]: p["backend"]["service"]["name"] for p in ing["spec"]["rules"][0]["http"]["paths"]
    }


def test_ingress_routes_eil_state_to_the_statefulset():
    from idf_jax.runtime.k8s_objects import EIL_PATHS

    objs = render_manifests(DeploySpec(namespace="prod"))
    ing = _by(objs, "Ingress")
    _validate(ing)
    assert ing["metadata"]["namespace"] == "prod" and ing["spec"]["ingressClassName"] == "nginx"
    assert "host" not in ing["spec"]["rules"][0] and "tls" not in ing["spec"]
    routes = _routes(ing)
    eil_svc, api_svc = _by(objs, "Service", "-eil"), objs[2]
    assert set(EIL_PATHS) == {"/v1/eil", "/v1/ledger", "/v1/stream", "/v1/jobs"}
    assert all(routes[p] == eil_svc["metadata"]["name"] for p in EIL_PATHS)
    assert routes["/"] == api_svc["metadata"]["name"] == "idf"
    for p in ing["spec"]["rules"][0]["http"]["paths"]:
        assert p["pathType"] == "Prefix" and p["backend"]["service"]["port"] == {"name": "http"}
    ann = ing["metadata"]["annotations"]
    assert ann["nginx.ingress.kubernetes.io/proxy-body-size"] == "1024k"
    assert ann["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"  # WebSockets
    # the NetworkPolicy lets the ingress controller reach the HTTP port of both parts
    netpol = _by(objs, "NetworkPolicy")
    http_rule = netpol["spec"]["ingress"][0]
    assert {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}
    } in (http_rule["from"])
    assert http_rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    selector = netpol["spec"]["podSelector"]["matchLabels"]
    for wl in (_by(objs, "Deployment"), _by(objs, "StatefulSet")):
        labels = wl["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items()
    # the stateless pods really answer 503 for the EIL paths: the service has no EIL there
    assert yaml.safe_load(_by(objs, "ConfigMap")["data"]["api.yaml"])["service"]["eil"] is False


def test_ingress_host_tls_and_class_are_configurable():
    spec = DeploySpec(
        ingress_host="idf.example.com",
        ingress_tls_secret="idf-tls",
        ingress_class="traefik",
        service_config={"limits": {"max_body_bytes": 5000}},
    )
    ing = _by(render_manifests(spec), "Ingress")
    _validate(ing)
    assert ing["spec"]["ingressClassName"] == "traefik"
    assert ing["spec"]["rules"][0]["host"] == "idf.example.com"
    assert ing["spec"]["tls"] == [{"hosts": ["idf.example.com"], "secretName": "idf-tls"}]
    assert "annotations" not in ing["metadata"]  # nginx annotations only for nginx
    nginx = _by(render_manifests(dataclasses_replace(spec, ingress_class="nginx")), "Ingress")
    ann = nginx["metadata"]["annotations"]
    assert ann["nginx.ingress.kubernetes.io/proxy-body-size"] == "5k"
    assert ann["nginx.ingress.kubernetes.io/ssl-redirect"] == "true"
    assert "Ingress" not in [o["kind"] for o in render_manifests(DeploySpec(ingress=False))]
    with pytest.raises(ValueError, match="ingress_host"):
        DeploySpec(ingress_host="Not A Host")
    with pytest.raises(ValueError, match="needs ingress_host"):
        DeploySpec(ingress_tls_secret="idf-tls")
    with pytest.raises(ValueError, match="ingress_class"):
        DeploySpec(ingress_class="")


def test_cli_ingress_options(capsys):
    rc = main(
        [
            "deploy",
            "--dry-run",
            "--ingress-host",
            "idf.example.com",
            "--ingress-tls-secret",
            "idf-tls",
        ]
    )
    objs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert rc == 0
    ing = _by(objs, "Ingress")
    _validate(ing)
    assert ing["spec"]["rules"][0]["host"] == "idf.example.com"
    assert ing["spec"]["tls"][0]["secretName"] == "idf-tls"
    rc = main(["deploy", "--dry-run", "--no-ingress"])
    assert rc == 0 and "kind: Ingress" not in capsys.readouterr().out


def test_metrics_port_serves_prometheus_without_a_key(tmp_path):
    import socket

    import httpx
    from _runtime_helpers import API_KEY
    from fastapi.testclient import TestClient

    from idf_jax.runtime.service import ServiceConfig, create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = ServiceConfig(api_keys=(API_KEY,), nvp_model_path=None, eil=False, metrics_port=port)
    with TestClient(create_app(cfg)) as client:
        assert client.get("/metrics").status_code == 401  # the API port keeps its key
        r = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert r.status_code == 200 and "idf_http_requests_total" in r.text
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1)  # stopped with the app


def test_schema_validation_catches_a_broken_manifest():
    dep = _by(render_manifests(DeploySpec()), "Deployment")
    dep["spec"]["replicas"] = "three"
    with pytest.raises(kv.ValidationError):
        _validate(dep)


@pytest.mark.parametrize(
    "kw",
    [
        {"namespace": "Prod"},
        {"replicas": 0},
        {"cpu_request": "lots"},
        {"min_replicas": 5, "max_replicas": 2},
        {"port": 70000},
        {"metrics_port": 8000},
        {"state_storage": "big"},
        {"storage_class": "Fast SSD"},
        {"monitoring_namespace": "Mon"},
    ],
)
def test_bad_spec_is_a_clear_error(kw):
    with pytest.raises(ValueError):
        DeploySpec(**kw)


def _helm_render(template: str, values: dict, namespace: str) -> str:
    """The subset of Helm's template language the chart uses: .Values refs, quote, .Release.Namespace."""
    text = template.replace("{{ .Release.Namespace }}", namespace)
    text = re.sub(
        r"\{\{ \.Values\.(\w+) \| quote \}\}", lambda m: json.dumps(str(values[m[1]])), text
    )
    text = re.sub(r"\{\{ \.Values\.(\w+) \}\}", lambda m: str(values[m[1]]), text)
    assert "{{" not in text
    return text


def test_helm_chart_renders_to_the_same_manifests(tmp_path):
    spec = DeploySpec(namespace="idf", replicas=4, max_replicas=12, image="idf:9")
    write_helm_chart(spec, tmp_path)
    chart = yaml.safe_load((tmp_path / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "idf"
    values = yaml.safe_load((tmp_path / "values.yaml").read_text())
    assert set(values) == set(HELM_VALUES) and values["replicas"] == 4
    objs = render_manifests(spec)
    names = [template_name(spec, o) for o in objs]
    assert len(set(names)) == len(objs)  # one template per object
    for name, obj in zip(names, objs):
        tpl = (tmp_path / "templates" / name).read_text()
        assert yaml.safe_load(_helm_render(tpl, values, "idf")) == obj
    # changing a value changes the rendered object, as in `helm install --set replicas=7`
    tpl = (tmp_path / "templates" / "deployment.yaml").read_text()
    dep = yaml.safe_load(
        _helm_render(tpl, {**values, "replicas": 7, "metrics_port": 9200}, "other")
    )
    assert dep["spec"]["replicas"] == 7 and dep["metadata"]["namespace"] == "other"
    assert dep["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == "9200"
    _validate(dep)
    sts = yaml.safe_load(
        _helm_render((tmp_path / "templates" / "statefulset-eil.yaml").read_text(), values, "idf")
    )
    assert sts["spec"]["replicas"] == 1 and "replicas" not in str(sts["spec"]["template"])
    with pytest.raises(ValueError, match="already holds"):
        write_helm_chart(spec, tmp_path)


def test_cli_dry_run_prints_valid_manifests(capsys, tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {"deploy": {"image": "idf:7", "replicas": 2}, "service": {"batch_max_size": 32}}
        )
    )
    rc = main(
        ["deploy", "--cluster", "k8s-prod", "--namespace", "idf", "--config", str(cfg), "--dry-run"]
    )
    out = capsys.readouterr().out
    assert rc == 0
    objs = list(yaml.safe_load_all(out))
    assert [o["kind"] for o in objs] == KINDS
    for o in objs:
        _validate(o)
    for kind in ("Deployment", "StatefulSet"):
        assert _by(objs, kind)["spec"]["template"]["spec"]["containers"][0]["image"] == "idf:7"
    rc = main(["deploy", "--namespace", "idf", "--helm", str(tmp_path / "chart")])
    assert rc == 0 and (tmp_path / "chart" / "templates" / "deployment.yaml").exists()


def test_cli_apply_to_unreachable_cluster_fails_cleanly(capsys, tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "dead",
                "clusters": [{"name": "dead", "cluster": {"server": "https://127.0.0.1:9"}}],
                "contexts": [{"name": "dead", "context": {"cluster": "dead", "user": "u"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
            }
        )
    )
    rc = main(
        ["deploy", "--cluster", "dead", "--namespace", "idf", "--kubeconfig", str(kubeconfig)]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "not reachable" in err[0]
    rc = main(["deploy", "--cluster", "nosuchcontext", "--kubeconfig", str(kubeconfig)])
    err = capsys.readouterr().err
    assert rc == 1 and "nosuchcontext" in err


ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def test_dockerfile_runs_as_non_root_with_a_pinned_base_and_a_healthcheck():
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    base = next(ln for ln in lines if ln.startswith("ARG PYTHON_IMAGE=")).split("=", 1)[1]
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base), base
    assert all(ln.split()[1] in ("${PYTHON_IMAGE}",) for ln in lines if ln.startswith("FROM"))
    user = [ln for ln in lines if ln.startswith("USER ")]
    assert user and user[-1].split()[1].split(":")[0] not in ("0", "root")
    assert any(ln.startswith("HEALTHCHECK ") for ln in lines) and "/healthz" in text
    assert "IDF_STATE_DIR=/var/lib/idf" in text
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[next(i for i, ln in enumerate(ignore) if not ln.startswith("#"))] == "**"
    for src in ("idf_jax", "capsules"):  # what the Dockerfile copies is let through...
        assert f"!{src}/**" in ignore and f"COPY {src}" in text
    assert "**/*.pem" in ignore and "**/*.sqlite" in ignore  # ...keys and state never are
