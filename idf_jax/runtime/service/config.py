"""Service configuration: API keys, request limits, batching and storage settings.

Loaded from a YAML/JSON mapping (the `service:` section of a project `config.yaml`)
and the environment: `IDF_API_KEYS` (comma-separated) adds keys, `IDF_NVP_MODEL` sets
the NVP checkpoint path, `IDF_CAPSULE_MODULES` adds capsule modules, `IDF_STATE_DIR` sets
the state directory (over `state_dir`; `idf_jax.runtime.state`), `IDF_METRICS_PORT` the
unkeyed metrics port. The EIL ledger's Ed25519
signing key is `eil.ledger_key`, else `IDF_EIL_LEDGER_KEY`, else the service's own key in
the state directory (created on first start).

API keys must be strong: at least `MIN_API_KEY_LENGTH` characters, not a known
placeholder, not a repetition of a few characters; a weak one is refused at start with
the reason.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["MIN_API_KEY_LENGTH", "Limits", "ServiceConfig", "api_key_problem", "load_config"]

MIN_API_KEY_LENGTH = 32
_PLACEHOLDERS = ("change", "secret", "password", "example", "default", "apikey", "api-key")


def api_key_problem(key: object) -> str | None:
    """Why `key` is too weak to accept as an API key (never quoting it), or None."""
    if not isinstance(key, str):
        return f"API keys must be strings, got {type(key).__name__}"
    if len(key) < MIN_API_KEY_LENGTH:
        return (
            f"it is {len(key)} characters long; at least {MIN_API_KEY_LENGTH} are "
            "needed (generate one: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    if len(set(key)) < 10:
        return f"it repeats only {len(set(key))} distinct characters: a placeholder"
    low = key.lower()
    for word in _PLACEHOLDERS:
        if word in low and len(set(low.replace(word, ""))) < 16:
            return f"it is a known placeholder ({word!r}...), not a secret"
    if any(c.isspace() for c in key):
        return "it contains whitespace"
    return None


@dataclasses.dataclass(frozen=True)
class Limits:
    """Per-request limits; a request beyond one gets 413 naming the field.

    max_dimensions: size of one chain's state (number of scalars).
    max_chains, max_steps: chains and steps (burn-in included) of one sampling job.
    max_work: chains * steps * dimensions * gradient evaluations per step of one job
        (the cost of a job, its time): HMC counts its `num_integration_steps`; a "mams"
        job's draws are checked once its warm-up has tuned the trajectory length.
    max_trace_values: chains * draws * dimensions a sampling job keeps (its memory: 4 bytes
        each in float32, so the default 50 M is 200 MB of positions).
    max_draws_returned: chains * draws * dimensions a response may carry back.
    max_body_bytes: request body size.
    max_history: telemetry samples in one NVP history.
    max_series: histories in one NVP request.
    """

    max_dimensions: int = 4096
    max_chains: int = 1024
    max_steps: int = 100_000
    max_work: int = 500_000_000
    max_trace_values: int = 50_000_000
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
    eil: keyword arguments for `EILOptimizer(**eil)` (e.g. `db_path`, `ledger_key`,
        `horizon`); missing `db_path` / `ledger_key` come from the state directory; None:
        the EIL with all defaults; False: no EIL.
    batch_max_size, batch_max_wait_ms: NVP micro-batching: a batch is sent when it holds
        `batch_max_size` series or its first request has waited `batch_max_wait_ms`.
    max_concurrent_jobs: job worker processes: sampling / equilibrium jobs run at once
        (others queue, up to `job_queue_size`).
    sampler_cache_size: compiled samplers kept for repeated identical jobs.
    capsule_modules: extra Python modules imported at start-up, so capsules they register
        with `@capsules.register` are served (e.g. a team's own capsule package).
    state_dir: the state directory (EIL database, keys, anchors, jobs); None: resolved at
        start from `IDF_STATE_DIR` or the default (`idf_jax.runtime.state.state_dir`).
    metrics_port: also serve /metrics without a key on this port (for a Prometheus scraper;
        restrict it with a NetworkPolicy); None: only the keyed /metrics.
    dev: development mode (`idf serve --dev`): the EIL ledger is signed with the public
        development key (in its own file, `eil-dev.sqlite`), which the log announces.
    job_queue_size: jobs waiting for a worker before new ones get 429 (Retry-After).
    job_wall_s: default wall-time budget of a job, seconds (a job over it: `timeout`).
    job_memory_mb: default memory budget of a job, MB of worker RSS above its idle
        footprint (a job over it: `out_of_memory`).
    job_retention_days: finished jobs older than this are pruned from the job table (and
        their result files), at start and every `job_prune_interval_s` seconds.
    job_max_rows: at most this many finished jobs are kept (the oldest are pruned first).
    job_prune_interval_s: how often the job table is pruned.
    prewarm_workers: start the job worker processes with the app (else on the first job).
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
    state_dir: str | None = None
    metrics_port: int | None = None
    dev: bool = False
    job_queue_size: int = 64
    job_wall_s: float = 600.0
    job_memory_mb: float = 2048.0
    job_retention_days: float = 7.0
    job_max_rows: int = 10_000
    job_prune_interval_s: float = 3600.0
    prewarm_workers: bool = False
    grpc_port: int | None = None
    grpc_host: str = "127.0.0.1"
    kafka_bootstrap: str | None = None
    kafka_topic: str | None = None
    kafka_group: str = "idf-eil"
    kafka_decisions: bool = False

    def __post_init__(self):
        for i, k in enumerate(self.api_keys, start=1):
            problem = api_key_problem(k)
            if problem:
                raise ValueError(f"API key {i} of {len(self.api_keys)} refused: {problem}")
        if not self.api_keys and not self.auth_disabled:
            raise ValueError(
                "no API keys configured: set IDF_API_KEYS, or service.api_keys in the config "
                "(auth_disabled=True only for local development)"
            )
        for name in ("job_wall_s", "job_memory_mb", "job_retention_days", "job_prune_interval_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"{name} must be a number > 0, got {v!r}")
        for name in (
            "batch_max_size",
            "max_concurrent_jobs",
            "sampler_cache_size",
            "job_queue_size",
            "job_max_rows",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        mp = self.metrics_port
        if mp is not None and (
            isinstance(mp, bool) or not isinstance(mp, int) or not 0 < mp < 65536
        ):
            raise ValueError(f"metrics_port must be a port in 1..65535 or null, got {mp!r}")
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
    if env.get("IDF_METRICS_PORT"):
        try:
            data["metrics_port"] = int(env["IDF_METRICS_PORT"])
        except ValueError:
            raise ValueError(
                f"IDF_METRICS_PORT must be a port number, got {env['IDF_METRICS_PORT']!r}"
            ) from None
    if env.get("IDF_STATE_DIR"):
        data["state_dir"] = env["IDF_STATE_DIR"]
    if data.get("state_dir") is not None and not isinstance(data["state_dir"], str):
        raise ValueError(f"service.state_dir must be a folder path, got {data['state_dir']!r}")
    if env.get("IDF_NVP_MODEL") and not data.get("nvp_model_path"):
        data["nvp_model_path"] = env["IDF_NVP_MODEL"]
    return ServiceConfig(
        api_keys=tuple(dict.fromkeys(keys)),
        limits=Limits(**limits),
        eil=dict(eil) if isinstance(eil, Mapping) else eil,
        **data,
    )
