"""`idf deploy`: render the Kubernetes manifests, print them, write a Helm chart or apply."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import console, load_yaml

__all__ = ["deploy"]


def deploy(
    cluster: str | None = typer.Option(
        None,
        help="kubeconfig context of the target cluster",
        show_default="none: required to apply",
    ),
    namespace: str = typer.Option("idf", help="Kubernetes namespace"),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="project config.yaml (deploy, service)", show_default="none"
    ),
    image: str | None = typer.Option(
        None, help="container image", show_default="config deploy.image, else idf-jax:0.1.0"
    ),
    replicas: int | None = typer.Option(
        None,
        min=1,
        help="stateless (sampling / NVP) replicas",
        show_default="config deploy.replicas, else 2",
    ),
    name: str = typer.Option("idf", help="name of the Kubernetes objects"),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="print the manifests instead of applying", show_default="apply"
    ),
    helm: Path | None = typer.Option(
        None, "--helm", help="write the manifests as a Helm chart into DIR", show_default="none"
    ),
    ingress_host: str | None = typer.Option(
        None,
        help="host the Ingress answers (e.g. idf.example.com)",
        show_default="config deploy.ingress_host, else any host",
    ),
    ingress_class: str | None = typer.Option(
        None, help="ingressClassName of the Ingress", show_default="config, else nginx"
    ),
    ingress_tls_secret: str | None = typer.Option(
        None,
        help="Secret with the TLS certificate of --ingress-host",
        show_default="config, else no TLS",
    ),
    ingress: bool | None = typer.Option(
        None,
        "--ingress/--no-ingress",
        help="render the Ingress (EIL paths to the StatefulSet, the rest to the Deployment)",
        show_default="config deploy.ingress, else on",
    ),
    kubeconfig: Path | None = typer.Option(
        None, help="kubeconfig file", show_default="$KUBECONFIG, else ~/.kube/config"
    ),
):
    """Render the Kubernetes manifests and apply them: the stateless sampling / NVP
    Deployment (HPA, PodDisruptionBudget), the one-replica EIL StatefulSet on a persistent
    volume, Services, an Ingress (/v1/eil, /v1/ledger, /v1/stream, /v1/jobs to the
    StatefulSet, the rest to the Deployment), a NetworkPolicy and the ConfigMap (never a
    secret: keys come from the Secret `api_key_secret`).

    Examples:

      idf deploy --cluster k8s-prod --namespace idf --dry-run

      idf deploy --namespace idf --helm charts/idf

      idf deploy --dry-run --ingress-host idf.example.com --ingress-tls-secret idf-tls

      idf deploy --cluster k8s-prod --namespace idf
    """
    from ..k8s import DeploySpec, apply_manifests, render_manifests, to_yaml, write_helm_chart

    cfg = load_yaml(config)
    dep = dict(cfg.get("deploy", {}) or {})
    if image is not None:
        dep["image"] = image
    if replicas is not None:
        dep["replicas"] = replicas
    for key, value in (
        ("ingress_host", ingress_host),
        ("ingress_class", ingress_class),
        ("ingress_tls_secret", ingress_tls_secret),
        ("ingress", ingress),
    ):
        if value is not None:
            dep[key] = value
    known = set(DeploySpec.__dataclass_fields__) - {"namespace", "name", "service_config"}
    bad = set(dep) - known
    if bad:
        raise typer.BadParameter(
            f"unknown deploy keys {sorted(bad)}; known: {sorted(known)}", param_hint="--config"
        )
    spec = DeploySpec(
        namespace=namespace, name=name, service_config=cfg.get("service", {}) or {}, **dep
    )
    objs = render_manifests(spec)
    if helm is not None:
        paths = write_helm_chart(spec, helm)
        console().print(f"wrote Helm chart {helm}/ ({len(paths)} files)")
        return
    if dry_run:
        typer.echo(to_yaml(objs), nl=False)
        return
    if not cluster:
        raise typer.BadParameter(
            "give --cluster (a kubeconfig context), or --dry-run / --helm DIR",
            param_hint="--cluster",
        )
    done = apply_manifests(
        objs, context=cluster, kubeconfig=str(kubeconfig) if kubeconfig else None
    )
    console().print(f"applied to {cluster}/{namespace}: " + ", ".join(done))
