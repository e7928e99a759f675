"""Prometheus metrics of one service instance (its own registry, so apps never share counters).

Exposed at `/metrics` in the Prometheus text format (version 0.0.4), behind the API key;
with `metrics_port` set (`ServiceConfig.metrics_port`) also without a key on a port of its
own (`Metrics.serve`), for a Prometheus scraper that a NetworkPolicy lets in:
- idf_http_requests_total{route, method, status}, idf_http_request_duration_seconds{route}
- idf_http_requests_in_flight
- idf_samples_drawn_total{kind}: chain-draws returned by sample / equilibrium jobs
- idf_sampler_steps_total: chain-steps run
- idf_nvp_predictions_total, idf_nvp_batch_size (series per vmapped call)
- idf_eil_readings_total, idf_eil_decisions_total{type}, idf_eil_proofs_total{valid},
  idf_eil_pft_minted_total
- idf_ledger_verification_failures_total{where}: ledger verifications that failed (an alert:
  `startup` against the last anchor, `request` on /v1/ledger/verify)
- idf_ws_connections (open WebSocket streams)
- idf_jobs_queued, idf_jobs_running, idf_job_workers_alive, idf_job_workers: the job
  engine's queue and worker processes, read when scraped (`bind_engine`)
- idf_jobs_finished_total{kind, status}: jobs that ended, by kind and final status (done,
  failed, cancelled, timeout, out_of_memory)
- idf_jobs_pruned_total: finished jobs pruned from the job table (retention)
- idf_kafka_messages_total{outcome}: telemetry messages consumed (stored, duplicate, malformed)
- idf_kafka_malformed_total{reason}: malformed messages sent to the dead-letter topic
- idf_kafka_consumer_lag{partition}: messages on the broker not yet consumed
- idf_kafka_connected: 1 while the telemetry consumer reaches its broker
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["Metrics", "CONTENT_TYPE_LATEST"]

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


class Metrics:
    """The counters, gauges and histograms of one app."""

    def __init__(self):
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "idf_http_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "idf_http_request_duration_seconds",
            "HTTP request latency (seconds) by route",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "idf_http_requests_in_flight", "HTTP requests being served", registry=r
        )
        self.samples = Counter(
            "idf_samples_drawn", "Chain-draws produced by sampling jobs", ["kind"], registry=r
        )
        self.steps = Counter("idf_sampler_steps", "Chain-steps run by sampling jobs", registry=r)
        self.predictions = Counter("idf_nvp_predictions", "NVP predictions served", registry=r)
        self.batch_size = Histogram(
            "idf_nvp_batch_size",
            "Series per vmapped NVP call",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.readings = Counter(
            "idf_eil_readings", "Telemetry readings accepted by EIL", registry=r
        )
        self.decisions = Counter(
            "idf_eil_decisions", "EIL decisions by action type", ["type"], registry=r
        )
        self.proofs = Counter("idf_eil_proofs", "EIL proofs by validity", ["valid"], registry=r)
        self.pft = Counter("idf_eil_pft_minted", "Proof-of-prediction tokens minted", registry=r)
        self.ledger_alerts = Counter(
            "idf_ledger_verification_failures",
            "Proof-ledger verifications that failed (tampering, truncation or rollback)",
            ["where"],
            registry=r,
        )
        self.ws = Gauge("idf_ws_connections", "Open WebSocket streams", registry=r)
        self.kafka_messages = Counter(
            "idf_kafka_messages", "Telemetry messages consumed by outcome", ["outcome"], registry=r
        )
        self.kafka_malformed = Counter(
            "idf_kafka_malformed",
            "Malformed telemetry messages (sent to the dead-letter topic) by reason",
            ["reason"],
            registry=r,
        )
        self.kafka_lag = Gauge(
            "idf_kafka_consumer_lag",
            "Telemetry messages on the broker not yet consumed, by topic partition",
            ["partition"],
            registry=r,
        )
        self.kafka_connected = Gauge(
            "idf_kafka_connected", "1 while the telemetry consumer reaches its broker", registry=r
        )

        self.jobs_queued = Gauge("idf_jobs_queued", "Jobs waiting for a worker", registry=r)
        self.jobs_running = Gauge("idf_jobs_running", "Jobs running in a worker", registry=r)
        self.workers_alive = Gauge(
            "idf_job_workers_alive", "Job worker processes alive", registry=r
        )
        self.workers = Gauge("idf_job_workers", "Job worker slots configured", registry=r)
        self.jobs_finished = Counter(
            "idf_jobs_finished",
            "Jobs that ended, by kind and status",
            ["kind", "status"],
            registry=r,
        )
        self.jobs_pruned = Counter(
            "idf_jobs_pruned", "Finished jobs pruned from the job table", registry=r
        )
        self.bind_engine(lambda: None)

    def bind_engine(self, engine: Callable[[], Any]) -> None:
        """Read the job gauges from `engine()` (a `JobEngine`, or None: all 0) when scraped."""

        def stat(key: str) -> Callable[[], float]:
            def read() -> float:
                e = engine()
                return 0.0 if e is None else float(e.stats()[key])

            return read

        self.jobs_queued.set_function(stat("queued"))
        self.jobs_running.set_function(stat("running"))
        self.workers_alive.set_function(stat("workers_alive"))
        self.workers.set_function(stat("workers"))

    def job_finished(self, kind: str, status: str) -> None:
        """Count a job's end (the engine's `on_finish`)."""
        self.jobs_finished.labels(kind, status).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def serve(self, port: int, host: str = "0.0.0.0") -> Callable[[], None]:
        """Serve this registry at http://host:port/metrics in a daemon thread; returns the
        function that stops it."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

        return stop
