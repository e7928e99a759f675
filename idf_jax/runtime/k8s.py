"""Kubernetes manifests for the idf service, rendered from one source.

`render_manifests(DeploySpec(...))` returns the objects (plain dicts, `k8s_objects`): a
ConfigMap with the service configuration (never a secret), a NetworkPolicy, the Services,
the stateless sampling / NVP Deployment (HorizontalPodAutoscaler, PodDisruptionBudget) and
the stateful EIL StatefulSet (one replica, its state on a PersistentVolumeClaim) and an
Ingress that routes the EIL-state paths to the StatefulSet, the rest to the Deployment. The
Secret itself is never rendered: keys stay out of manifests; create it with
`kubectl -n NS create secret generic idf-api-keys --from-literal=api-keys=KEY1,KEY2
--from-literal=ledger-key=HEX` (ledger-key is optional: an Ed25519 seed, 64 hex characters;
without it the EIL pod creates its own key on its volume on first start;
`idf ledger keygen` makes one as PEM).

`write_helm_chart(spec, folder)` writes the same objects as a Helm chart: the templates
are these manifests with the tunable fields replaced by `.Values` references, and
`values.yaml` holds the spec's values, so `helm template` reproduces `render_manifests`.
`apply_manifests` applies them with the official `kubernetes` client (server-side apply).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from .._io import atomic_write_bytes
from .k8s_objects import build_objects

__all__ = [
    "DeploySpec",
    "render_manifests",
    "to_yaml",
    "write_helm_chart",
    "apply_manifests",
    "HELM_VALUES",
    "template_name",
]

_DNS = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUB = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_HOST = re.compile(
    r"^(\*\.)?[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$"
)
_QTY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")


@dataclasses.dataclass(frozen=True)
class DeploySpec:
    """What to deploy where. Resource quantities use Kubernetes notation ("500m", "2Gi").

    replicas, min_replicas, max_replicas: the stateless (sampling / NVP) pods; the EIL
    StatefulSet always has one. state_storage, storage_class: its volume (None: the
    cluster's default class). metrics_port: the unkeyed /metrics port Prometheus scrapes,
    which the NetworkPolicy opens to `monitoring_namespace` only; HTTP is open to the
    namespace and `ingress_namespace` (the ingress controller's).

    ingress: render an Ingress (networking.k8s.io/v1) that sends the EIL-state paths
    (`k8s_objects.EIL_PATHS`: /v1/eil, /v1/ledger, /v1/stream, /v1/jobs) to the EIL
    StatefulSet's Service and everything else to the stateless Deployment's. ingress_host:
    the host it answers (None: any host); ingress_class: its `ingressClassName`;
    ingress_tls_secret: a Secret holding the TLS certificate of `ingress_host` (None: no
    TLS section; the controller's default certificate, if any).
    """

    namespace: str = "idf"
    name: str = "idf"
    image: str = "idf-jax:0.1.0"
    replicas: int = 2
    port: int = 8000
    cpu_request: str = "1"
    memory_request: str = "2Gi"
    cpu_limit: str = "2"
    memory_limit: str = "4Gi"
    min_replicas: int = 2
    max_replicas: int = 10
    target_cpu_percent: int = 70
    api_key_secret: str = "idf-api-keys"
    state_storage: str = "10Gi"
    storage_class: str | None = None
    metrics_port: int = 9100
    monitoring_namespace: str = "monitoring"
    ingress_namespace: str = "ingress-nginx"
    ingress: bool = True
    ingress_host: str | None = None
    ingress_class: str = "nginx"
    ingress_tls_secret: str | None = None
    service_config: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        for f in (
            "namespace",
            "name",
            "api_key_secret",
            "monitoring_namespace",
            "ingress_namespace",
        ):
            v = getattr(self, f)
            if not isinstance(v, str) or not _DNS.match(v):
                raise ValueError(
                    f"{f} must be a DNS-1123 label (lowercase, digits, '-'), got {v!r}"
                )
        if not isinstance(self.image, str) or not self.image or " " in self.image:
            raise ValueError(f"image must be a container image reference, got {self.image!r}")
        for f in ("replicas", "min_replicas", "max_replicas"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{f} must be an integer >= 1, got {v!r}")
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) must not exceed "
                f"max_replicas ({self.max_replicas})"
            )
        for f in ("port", "metrics_port"):
            p = getattr(self, f)
            if isinstance(p, bool) or not (isinstance(p, int) and 1 <= p <= 65535):
                raise ValueError(f"{f} must be in 1..65535, got {p!r}")
        if self.port == self.metrics_port:
            raise ValueError(f"metrics_port must differ from port ({self.port})")
        if self.storage_class is not None and not (
            isinstance(self.storage_class, str) and _DNS_SUB.match(self.storage_class)
        ):
            raise ValueError(f"storage_class must be a DNS-1123 name, got {self.storage_class!r}")
        if not isinstance(self.ingress, bool):
            raise ValueError(f"ingress must be true or false, got {self.ingress!r}")
        if self.ingress_host is not None and not (
            isinstance(self.ingress_host, str) and _HOST.match(self.ingress_host)
        ):
            raise ValueError(
                "ingress_host must be a DNS name like 'idf.example.com' (or '*.example.com'), "
                f"got {self.ingress_host!r}"
            )
        for f in ("ingress_class", "ingress_tls_secret"):
            v = getattr(self, f)
            if (v is not None or f == "ingress_class") and not (
                isinstance(v, str) and _DNS_SUB.match(v)
            ):
                raise ValueError(f"{f} must be a DNS-1123 name, got {v!r}")
        if self.ingress_tls_secret is not None and self.ingress_host is None:
            raise ValueError("ingress_tls_secret needs ingress_host (the certificate's host)")
        if not (isinstance(self.target_cpu_percent, int) and 1 <= self.target_cpu_percent <= 100):
            raise ValueError(
                f"target_cpu_percent must be in 1..100, got {self.target_cpu_percent!r}"
            )
        for f in ("cpu_request", "memory_request", "cpu_limit", "memory_limit", "state_storage"):
            v = getattr(self, f)
            if not isinstance(v, str) or not _QTY.match(v):
                raise ValueError(
                    f"{f} must be a Kubernetes quantity like '500m' or '2Gi', got {v!r}"
                )


# Fields of DeploySpec that the Helm chart exposes as values (name -> is a string).
HELM_VALUES = {
    "image": True,
    "replicas": False,
    "port": False,
    "cpu_request": True,
    "memory_request": True,
    "cpu_limit": True,
    "memory_limit": True,
    "min_replicas": False,
    "max_replicas": False,
    "target_cpu_percent": False,
    "api_key_secret": True,
    "state_storage": True,
    "metrics_port": False,
}


def render_manifests(spec: DeploySpec) -> list[dict[str, Any]]:
    """The Kubernetes objects for `spec`, in apply order."""
    return _render(spec)


def _spec_value(spec: DeploySpec, f: str) -> Any:
    """The spec's value of field `f` (`<field>_str`: as a string)."""
    return str(getattr(spec, f[:-4])) if f.endswith("_str") else getattr(spec, f)


def _render(spec: DeploySpec, value: Callable[[str], Any] | None = None) -> list[dict[str, Any]]:
    """Build the manifests; `value(field)` gives each tunable value (default: the spec's; a
    Helm chart passes template tokens)."""
    v = value if value is not None else functools.partial(_spec_value, spec)
    return build_objects(spec, v)


def template_name(spec: DeploySpec, obj: Mapping[str, Any]) -> str:
    """The chart's template file of `obj`: ``<kind>[<name suffix>].yaml``."""
    suffix = obj["metadata"]["name"][len(spec.name) :]
    return f"{obj['kind'].lower()}{suffix}.yaml"


def to_yaml(objs: list[dict[str, Any]]) -> str:
    """A multi-document YAML stream."""
    return yaml.safe_dump_all(objs, sort_keys=False)


def write_helm_chart(spec: DeploySpec, folder: str | os.PathLike) -> list[str]:
    """Write a Helm chart (Chart.yaml, values.yaml, templates/) for `spec` into `folder`.

    Returns the written paths. The folder must not already hold a chart.
    """
    folder = os.fspath(folder)
    if os.path.exists(os.path.join(folder, "Chart.yaml")):
        raise ValueError(
            f"{folder!r} already holds a Helm chart (Chart.yaml); choose an empty folder"
        )
    token = lambda f: f"__HELM_{f}__"
    objs = _render(spec, token)
    os.makedirs(os.path.join(folder, "templates"), exist_ok=True)
    written = []

    def write(rel, text):
        path = os.path.join(folder, rel)
        atomic_write_bytes(path, text.encode())
        written.append(path)

    write(
        "Chart.yaml",
        yaml.safe_dump(
            {
                "apiVersion": "v2",
                "name": spec.name,
                "description": "idf-jax service",
                "type": "application",
                "version": "0.1.0",
                "appVersion": "0.1.0",
            },
            sort_keys=False,
        ),
    )
    write(
        "values.yaml",
        "# Values of the idf-jax chart (rendered by `idf deploy --helm`).\n"
        + yaml.safe_dump({f: getattr(spec, f) for f in HELM_VALUES}, sort_keys=False),
    )
    for obj in objs:
        text = yaml.safe_dump(obj, sort_keys=False)
        text = text.replace(f"namespace: {spec.namespace}", "namespace: {{ .Release.Namespace }}")
        for f, is_str in HELM_VALUES.items():
            ref = f"{{{{ .Values.{f} | quote }}}}" if is_str else f"{{{{ .Values.{f} }}}}"
            text = re.sub(rf"'?{token(f + '_str')}'?", f"{{{{ .Values.{f} | quote }}}}", text)
            text = re.sub(rf"'?{token(f)}'?", ref, text)
        if "__HELM_" in text:
            raise AssertionError(f"unreplaced Helm token in {obj['kind']}")
        write(f"templates/{template_name(spec, obj)}", text)
    return written


def apply_manifests(
    objs: list[dict[str, Any]],
    *,
    context: str | None = None,
    kubeconfig: str | None = None,
    timeout_s: float = 10.0,
) -> list[str]:
    """Server-side apply `objs` with the `kubernetes` client; returns "Kind/name" applied.

    Uses the kubeconfig context `context` (or the in-cluster config when running in a pod).
    Raises ConnectionError with the reason when no cluster is reachable.
    """
    try:
        from kubernetes import client, config
        from kubernetes.dynamic import DynamicClient
    except ImportError as e:  # pragma: no cover - extra not installed
        raise ValueError(
            "applying needs the `kubernetes` package (pip install 'idf-jax[deploy]')"
        ) from e
    try:
        if kubeconfig or context or not os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_kube_config(config_file=kubeconfig, context=context)
        else:
            config.load_incluster_config()
    except Exception as e:  # config errors are many types; report them as one
        raise ConnectionError(
            f"no usable Kubernetes configuration for context {context!r}: {e}"
        ) from e
    api = client.ApiClient()
    api.configuration.retries = 0
    try:
        dyn = DynamicClient(api)
        done = []
        for obj in objs:
            res = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            res.server_side_apply(
                body=obj,
                name=obj["metadata"]["name"],
                namespace=obj["metadata"].get("namespace"),
                field_manager="idf-cli",
                force_conflicts=True,
                _request_timeout=timeout_s,
            )
            done.append(f"{obj['kind']}/{obj['metadata']['name']}")
        return done
    except Exception as e:  # urllib3 / ApiException: the cluster refused or is unreachable
        raise ConnectionError(
            f"cluster {context or 'in-cluster'!r} not reachable or refused: {e}"
        ) from e
    finally:
        api.close()
