"""Service configuration: API keys, request limits, batching and storage settings.

Loaded from a YAML/JSON mapping (the `service:` section of a project `config.yaml`)
and the environment: `IDF_API_KEYS` (comma-separated) adds keys, `IDF_NVP_MODEL` sets
the NVP checkpoint path, `IDF_CAPSULE_MODULES` adds capsule modules. The EIL ledger's
signing key is read by the ledger itself from `IDF_EIL_LEDGER_KEY` (or `eil.ledger_key`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["Limits", "ServiceConfig", "load_config"]


@dataclasses.dataclass(frozen=True)
class Limits:
    """Per-request limits; a request beyond one gets 413 naming the field.

    max_dimensions: size of one chain's state (number of scalars).
    max_chains, max_steps: chains and steps (burn-in included) of one sampling job.
    max_work: chains * steps * dimensions of one job (the cost of a job).
    max_draws_returned: chains * draws * dimensions a response may carry back.
    max_body_bytes: request body size.
    max_history: telemetry samples in one NVP history.
    max_series: histories in one NVP request.
    """

    max_dimensions: int = 4096
    max_chains: int = 1024
    max_steps: int = 100_000
    max_work: int = 2_000_000_000
    max_draws_returned: int = 1_000_000
    max_body_bytes: int = 1_048_576
    max_history: int = 4096
    max_series: int = 256


@dataclasses.dataclass(frozen=True)
class ServiceConfig:
    """Everything the service needs, immutable once the app is built.

    api_keys: accepted Bearer tokens (compared in constant time).
    auth_disabled: accept requests without a key (local development only).
    limits: `Limits`.
    nvp_model_path: NVP checkpoint served by `/v1/nvp/predict`: a path, "default" (the
        checkpoint packaged with `idf_jax.nvp`), or None (no NVP: the route answers 503).
    eil: keyword arguments for `EILOptimizer(**eil)` (e.g. `db_path`, `allow_dev_key`);
        None: a scratch EIL (temporary database, insecure development key); False: no EIL.
    batch_max_size, batch_max_wait_ms: NVP micro-batching: a batch is sent when it holds
        `batch_max_size` series or its first request has waited `batch_max_wait_ms`.
    max_concurrent_jobs: sampling / equilibrium jobs run at once (others queue).
    sampler_cache_size: compiled samplers kept for repeated identical jobs.
    capsule_modules: extra Python modules imported at start-up, so capsules they register
        with `@capsules.register` are served (e.g. a team's own capsule package).
    grpc_port: serve gRPC (KServe v2 inference, idf.v1.Sampling, health, reflection) on
        this port beside HTTP, in the same process (None: no gRPC; 0: any free port).
    grpc_host: the interface the gRPC server binds.
    kafka_bootstrap: `HOST:PORT[,HOST:PORT...]` of a Kafka cluster: consume telemetry from
        `kafka_topic` into the EIL's store (None: no Kafka).
    kafka_topic: the telemetry topic (malformed messages go to `<topic>.dlq`).
    kafka_group: the consumer group (committed offsets live there).
    kafka_decisions: also publish EIL decisions to `<topic>.decisions`.
    """

    api_keys: tuple[str, ...] = ()
    auth_disabled: bool = False
    limits: Limits = Limits()
    nvp_model_path: str | None = "default"
    eil: Mapping[str, Any] | None | bool = None
    batch_max_size: int = 64
    batch_max_wait_ms: float = 2.0
    max_concurrent_jobs: int = 2
    sampler_cache_size: int = 32
    capsule_modules: tuple[str, ...] = ()
    grpc_port: int | None = None
    grpc_host: str = "127.0.0.1"
    kafka_bootstrap: str | None = None
    kafka_topic: str | None = None
    kafka_group: str = "idf-eil"
    kafka_decisions: bool = False

    def __post_init__(self):
        if any(not isinstance(k, str) or len(k) < 8 for k in self.api_keys):
            raise ValueError("api_keys must be strings of at least 8 characters")
        if not self.api_keys and not self.auth_disabled:
            raise ValueError(
                "no API keys configured: set IDF_API_KEYS, or service.api_keys in the config "
                "(auth_disabled=True only for local development)"
            )
        for name in ("batch_max_size", "max_concurrent_jobs", "sampler_cache_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if not (self.batch_max_wait_ms >= 0):
            raise ValueError(f"batch_max_wait_ms must be >= 0, got {self.batch_max_wait_ms!r}")
        p = self.grpc_port
        if p is not None and (isinstance(p, bool) or not isinstance(p, int) or not 0 <= p <= 65535):
            raise ValueError(f"grpc_port must be an integer in [0, 65535] or null, got {p!r}")
        if self.kafka_bootstrap is not None and not self.kafka_topic:
            raise ValueError("kafka_topic is required with kafka_bootstrap")
        for name in ("kafka_bootstrap", "kafka_topic", "kafka_group"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, str) or not v.strip()):
                raise ValueError(f"{name} must be a non-empty string, got {v!r}")


def load_config(
    mapping: Mapping[str, Any] | None = None, *, env: Mapping[str, str] | None = None
) -> ServiceConfig:
    """Build a `ServiceConfig` from a mapping (a config file's `service:` section) and the env.

    Unknown keys are a ValueError naming them, so a typo never silently changes nothing.
    """
    env = os.environ if env is None else env
    data = dict(mapping or {})
    fields = {f.name for f in dataclasses.fields(ServiceConfig)}
    unknown = set(data) - fields
    if unknown:
        raise ValueError(f"unknown service config keys: {sorted(unknown)}; known: {sorted(fields)}")
    limits = data.pop("limits", None) or {}
    if not isinstance(limits, Mapping):
        raise ValueError("service.limits must be a mapping")
    lfields = {f.name for f in dataclasses.fields(Limits)}
    bad = set(limits) - lfields
    if bad:
        raise ValueError(f"unknown service.limits keys: {sorted(bad)}; known: {sorted(lfields)}")
    for k, v in limits.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"service.limits.{k} must be an integer >= 1, got {v!r}")
    keys = list(data.pop("api_keys", None) or [])
    keys += [k.strip() for k in env.get("IDF_API_KEYS", "").split(",") if k.strip()]
    eil = data.pop("eil", None)
    if eil is not None and eil is not False and not isinstance(eil, Mapping):
        raise ValueError("service.eil must be a mapping of EILOptimizer arguments, null or false")
    mods = list(data.pop("capsule_modules", None) or [])
    mods += [m.strip() for m in env.get("IDF_CAPSULE_MODULES", "").split(",") if m.strip()]
    data["capsule_modules"] = tuple(dict.fromkeys(mods))
    if env.get("IDF_NVP_MODEL") and not data.get("nvp_model_path"):
        data["nvp_model_path"] = env["IDF_NVP_MODEL"]
    return ServiceConfig(
        api_keys=tuple(dict.fromkeys(keys)),
        limits=Limits(**limits),
        eil=dict(eil) if isinstance(eil, Mapping) else eil,
        **data,
    )
