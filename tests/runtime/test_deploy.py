"""Kubernetes manifests and the Helm chart, validated offline against the Kubernetes schemas."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from idf_jax.runtime.cli import main
from idf_jax.runtime.k8s import HELM_VALUES, DeploySpec, render_manifests, write_helm_chart

kv = pytest.importorskip("kubernetes_validate")
K8S_VERSION = kv.latest_version() if hasattr(kv, "latest_version") else "1.37.0"


def _validate(obj):
    kv.validate(obj, K8S_VERSION, strict=True)


def test_manifests_validate_against_kubernetes_schemas():
    spec = DeploySpec(
        namespace="prod",
        image="registry.example/idf-jax:1.2.3",
        replicas=3,
        service_config={"limits": {"max_chains": 256}, "api_keys": ["secret-key-1"]},
    )
    objs = render_manifests(spec)
    kinds = [o["kind"] for o in objs]
    assert kinds == ["ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler"]
    for o in objs:
        _validate(o)
        assert o["metadata"]["namespace"] == "prod"
    cm, dep, svc, hpa = objs
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "registry.example/idf-jax:1.2.3" and dep["spec"]["replicas"] == 3
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["resources"]["requests"] == {"cpu": "1", "memory": "2Gi"}
    env = {e["name"]: e for e in c["env"]}
    assert env["IDF_API_KEYS"]["valueFrom"]["secretKeyRef"]["name"] == "idf-api-keys"
    # API keys never land in a ConfigMap
    assert "secret-key-1" not in json.dumps(objs)
    assert yaml.safe_load(cm["data"]["config.yaml"]) == {
        "service": {"limits": {"max_chains": 256}, "eil": {"db_path": "/var/lib/idf/eil.sqlite"}}
    }
    assert hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]


def test_schema_validation_catches_a_broken_manifest():
    dep = render_manifests(DeploySpec())[1]
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
    expected = {o["kind"]: o for o in render_manifests(spec)}
    for kind, obj in expected.items():
        tpl = (tmp_path / "templates" / f"{kind.lower()}.yaml").read_text()
        assert yaml.safe_load(_helm_render(tpl, values, "idf")) == obj
    # changing a value changes the rendered object, as in `helm install --set replicas=7`
    tpl = (tmp_path / "templates" / "deployment.yaml").read_text()
    dep = yaml.safe_load(_helm_render(tpl, {**values, "replicas": 7}, "other"))
    assert dep["spec"]["replicas"] == 7 and dep["metadata"]["namespace"] == "other"
    _validate(dep)
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
    assert [o["kind"] for o in objs] == [
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
    ]
    for o in objs:
        _validate(o)
    assert objs[1]["spec"]["template"]["spec"]["containers"][0]["image"] == "idf:7"
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
