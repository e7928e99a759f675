"""The Kubernetes objects of an idf deployment, built from a `DeploySpec` (`idf_jax.runtime.k8s`).

Two parts, so that replicas never split state:

- ``api``: the stateless sampling / NVP pods — a Deployment scaled by a
  HorizontalPodAutoscaler, kept available by a PodDisruptionBudget, behind the Service
  ``<name>``; their EIL is off (``eil: false``), their state directory an ``emptyDir``.
- ``eil``: the stateful EIL (telemetry, proof ledger, signing key, anchors) — a StatefulSet
  of exactly one replica whose state directory ``/var/lib/idf`` is a PersistentVolumeClaim
  (kept when the set is deleted or scaled), behind the headless Service ``<name>-eil``.

An Ingress (``<name>``, when ``spec.ingress``) is the one way in from outside: the paths
that need the EIL's state (`EIL_PATHS`) go to ``<name>-eil``, everything else to ``<name>``.
Besides /v1/eil and /v1/ledger (503 on a stateless pod, which has no EIL), that is
/v1/stream (its ``act`` and ``subscribe`` messages are EIL decisions) and /v1/jobs: the job
table is a file in the state directory, so a job submitted to one stateless replica would be
unknown (404) to the next one; on the StatefulSet it lives on the persistent volume (with
the checkpoints of `train` jobs). Streaming predictions (/v1/nvp/stream), /v1/nvp/predict,
/v1/sample and /v1/equilibrium stay on the stateless pods. The NetworkPolicy already
admits the ingress controller's namespace to the HTTP port of both.

Both run as a non-root user with the RuntimeDefault seccomp profile, a read-only root
filesystem and no capabilities; a NetworkPolicy admits HTTP from the namespace (and the
ingress controller's namespace) and scrapes of the unkeyed metrics port from the monitoring
namespace, and only DNS out. Prometheus scrapes ``:<metrics_port>/metrics`` (annotations).

Secrets are never rendered: API keys (``api-keys``) and the optional ledger key
(``ledger-key``, an Ed25519 seed in hex or PEM) come from the Secret ``api_key_secret``
through ``secretKeyRef``; every secret-looking key of the service config (``api_keys``,
``eil.ledger_key``, ``*password*``, ``*token*``, ``*secret*``) is dropped from the ConfigMap.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from .k8s import DeploySpec

__all__ = ["EIL_PATHS", "STATE_DIR", "build_objects", "public_config"]

STATE_DIR = "/var/lib/idf"
_SECRET_NAME = re.compile(r"(?i)(secret|password|passwd|token|(^|_)keys?$)")
EIL_PATHS = ("/v1/eil", "/v1/ledger", "/v1/stream", "/v1/jobs")  # to the StatefulSet
_EIL_LOCAL = ("db_path", "ledger_key", "allow_dev_key")  # the pod decides these


def public_config(cfg: Any) -> Any:
    """`cfg` without any secret-looking key, at any depth (module doc)."""
    if isinstance(cfg, Mapping):
        return {
            k: public_config(v)
            for k, v in cfg.items()
            if not (isinstance(k, str) and _SECRET_NAME.search(k))
        }
    if isinstance(cfg, list | tuple):
        return [public_config(v) for v in cfg]
    return cfg


def _configs(spec: DeploySpec) -> dict[str, str]:
    """The ConfigMap's files: ``api.yaml`` (EIL off) and ``eil.yaml`` (EIL on)."""
    base = public_config(dict(spec.service_config))
    base.pop("state_dir", None)  # IDF_STATE_DIR decides
    eil = base.pop("eil", None)
    eil_kwargs = {k: v for k, v in (eil or {}).items() if k not in _EIL_LOCAL}
    api = dict(base, eil=False)
    stateful = dict(base, eil=eil_kwargs) if eil is not False else dict(base, eil={})
    dump = lambda c: yaml.safe_dump({"service": c}, sort_keys=True)
    return {"api.yaml": dump(api), "eil.yaml": dump(stateful)}


def build_objects(spec: DeploySpec, v: Callable[[str], Any]) -> list[dict[str, Any]]:
    """The objects in apply order; `v(field)` gives each tunable value (module doc)."""
    base_labels = {"app.kubernetes.io/name": "idf-jax", "app.kubernetes.io/instance": spec.name}
    labels = lambda part: dict(base_labels, **{"app.kubernetes.io/component": part})

    def meta(name: str, part: str | None = None) -> dict[str, Any]:
        return {
            "name": name,
            "namespace": spec.namespace,
            "labels": labels(part) if part else dict(base_labels),
        }

    config_name = f"{spec.name}-config"
    eil_name = f"{spec.name}-eil"
    probe = lambda path, delay: {
        "httpGet": {"path": path, "port": "http"},
        "initialDelaySeconds": delay,
        "periodSeconds": 10,
        "timeoutSeconds": 3,
        "failureThreshold": 3,
    }
    seccomp = {"type": "RuntimeDefault"}

    def container(config_file: str, stateful: bool) -> dict[str, Any]:
        secret = lambda key, optional: {
            "secretKeyRef": {"name": v("api_key_secret"), "key": key, "optional": optional}
        }
        env: list[dict[str, Any]] = [
            {"name": "IDF_API_KEYS", "valueFrom": secret("api-keys", False)},
            {"name": "IDF_STATE_DIR", "value": STATE_DIR},
            {"name": "IDF_METRICS_PORT", "value": v("metrics_port_str")},
            {"name": "XLA_FLAGS", "value": "--xla_cpu_multi_thread_eigen=true"},
        ]
        if stateful:  # without it the pod creates its own key on the volume, once
            env.insert(1, {"name": "IDF_EIL_LEDGER_KEY", "valueFrom": secret("ledger-key", True)})
        return {
            "name": "idf",
            "image": v("image"),
            "imagePullPolicy": "IfNotPresent",
            "args": [
                "serve",
                "--host",
                "0.0.0.0",
                "--port",
                v("port_str"),
                "--config",
                f"/etc/idf/{config_file}",
            ],
            "ports": [
                {"name": "http", "containerPort": v("port"), "protocol": "TCP"},
                {"name": "metrics", "containerPort": v("metrics_port"), "protocol": "TCP"},
            ],
            "env": env,
            "resources": {
                "requests": {"cpu": v("cpu_request"), "memory": v("memory_request")},
                "limits": {"cpu": v("cpu_limit"), "memory": v("memory_limit")},
            },
            "livenessProbe": probe("/healthz", 10),
            "readinessProbe": probe("/readyz", 5),
            "startupProbe": {**probe("/healthz", 0), "failureThreshold": 30},
            "securityContext": {
                "runAsNonRoot": True,
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
                "seccompProfile": dict(seccomp),
            },
            "volumeMounts": [
                {"name": "config", "mountPath": "/etc/idf", "readOnly": True},
                {"name": "state", "mountPath": STATE_DIR},
                {"name": "tmp", "mountPath": "/tmp"},
            ],
        }

    def pod(part: str, config_file: str, stateful: bool) -> dict[str, Any]:
        volumes: list[dict[str, Any]] = [
            {"name": "config", "configMap": {"name": config_name}},
            {"name": "tmp", "emptyDir": {}},
        ]
        if not stateful:
            volumes.insert(1, {"name": "state", "emptyDir": {}})
        return {
            "metadata": {
                "labels": labels(part),
                "annotations": {
                    "prometheus.io/scrape": "true",
                    "prometheus.io/path": "/metrics",
                    "prometheus.io/port": v("metrics_port_str"),
                },
            },
            "spec": {
                "terminationGracePeriodSeconds": 30,
                "automountServiceAccountToken": False,
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 10001,
                    "runAsGroup": 10001,
                    "fsGroup": 10001,
                    # group bits only on a fresh volume: the signing key stays 0600
                    "fsGroupChangePolicy": "OnRootMismatch",
                    "seccompProfile": dict(seccomp),
                },
                "containers": [container(config_file, stateful)],
                "volumes": volumes,
            },
        }

    claim: dict[str, Any] = {
        "metadata": {"name": "state", "labels": labels("eil")},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": v("state_storage")}},
        },
    }
    if spec.storage_class:
        claim["spec"]["storageClassName"] = spec.storage_class
    http_port = [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    objs = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta(config_name),
            "data": _configs(spec),
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta(spec.name),
            "spec": {
                "podSelector": {"matchLabels": dict(base_labels)},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [
                    {
                        "from": [
                            {"podSelector": {}},
                            {"namespaceSelector": _ns(spec.ingress_namespace)},
                        ],
                        "ports": [{"port": "http", "protocol": "TCP"}],
                    },
                    {
                        "from": [{"namespaceSelector": _ns(spec.monitoring_namespace)}],
                        "ports": [{"port": "metrics", "protocol": "TCP"}],
                    },
                ],
                "egress": [
                    {
                        "ports": [
                            {"port": 53, "protocol": "UDP"},
                            {"port": 53, "protocol": "TCP"},
                        ]
                    }
                ],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta(spec.name, "api"),
            "spec": {"type": "ClusterIP", "selector": labels("api"), "ports": http_port},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta(eil_name, "eil"),
            "spec": {"clusterIP": "None", "selector": labels("eil"), "ports": http_port},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta(spec.name, "api"),
            "spec": {
                "replicas": v("replicas"),
                "selector": {"matchLabels": labels("api")},
                "template": pod("api", "api.yaml", stateful=False),
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": meta(eil_name, "eil"),
            "spec": {
                "replicas": 1,  # one writer of the ledger: never scaled, never split
                "serviceName": eil_name,
                "podManagementPolicy": "OrderedReady",
                "selector": {"matchLabels": labels("eil")},
                "template": pod("eil", "eil.yaml", stateful=True),
                "volumeClaimTemplates": [claim],
                "persistentVolumeClaimRetentionPolicy": {
                    "whenDeleted": "Retain",
                    "whenScaled": "Retain",
                },
            },
        },
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": meta(spec.name, "api"),
            "spec": {
                "scaleTargetRef": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": spec.name,
                },
                "minReplicas": v("min_replicas"),
                "maxReplicas": v("max_replicas"),
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {
                                "type": "Utilization",
                                "averageUtilization": v("target_cpu_percent"),
                            },
                        },
                    }
                ],
            },
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": meta(spec.name, "api"),
            "spec": {"minAvailable": 1, "selector": {"matchLabels": labels("api")}},
        },
    ]
    has_eil = spec.service_config.get("eil") is not False
    if not has_eil:  # no EIL: no stateful part
        objs = [o for o in objs if o["metadata"]["name"] != eil_name]
    if spec.ingress:
        objs.append(_ingress(spec, meta(spec.name), eil_name if has_eil else None))
    return objs


def _ingress(spec: DeploySpec, metadata: dict[str, Any], eil_name: str | None) -> dict[str, Any]:
    """The Ingress (module doc): `EIL_PATHS` to `eil_name` (None: no EIL, all to the API)."""

    def path(prefix: str, service: str) -> dict[str, Any]:
        backend = {"service": {"name": service, "port": {"name": "http"}}}
        return {"path": prefix, "pathType": "Prefix", "backend": backend}

    paths = [path(p, eil_name) for p in EIL_PATHS] if eil_name else []
    paths.append(path("/", spec.name))
    rule: dict[str, Any] = {"http": {"paths": paths}}
    if spec.ingress_host:
        rule["host"] = spec.ingress_host
    body: dict[str, Any] = {"ingressClassName": spec.ingress_class, "rules": [rule]}
    if spec.ingress_tls_secret:
        body["tls"] = [{"hosts": [spec.ingress_host], "secretName": spec.ingress_tls_secret}]
    if spec.ingress_class == "nginx":  # ingress-nginx: WebSocket streams and request bodies
        metadata = dict(
            metadata,
            annotations={
                "nginx.ingress.kubernetes.io/proxy-read-timeout": "3600",
                "nginx.ingress.kubernetes.io/proxy-send-timeout": "3600",
                "nginx.ingress.kubernetes.io/proxy-body-size": _body_size(spec),
                "nginx.ingress.kubernetes.io/ssl-redirect": (
                    "true" if spec.ingress_tls_secret else "false"
                ),
            },
        )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata,
        "spec": body,
    }


def _body_size(spec: DeploySpec) -> str:
    """The service's `limits.max_body_bytes` (default 1 MiB) as an nginx size, in KiB."""
    limits = spec.service_config.get("limits") or {}
    size = limits.get("max_body_bytes", 1_048_576) if isinstance(limits, Mapping) else 1_048_576
    return f"{-(-int(size) // 1024)}k"


def _ns(name: str) -> dict[str, Any]:
    return {"matchLabels": {"kubernetes.io/metadata.name": name}}
