"""Kafka telemetry ingestion: an aiokafka consumer in the service's event loop that stores
readings in the EIL's telemetry store.

At-least-once: a partition's offset is committed only after its messages are stored (or
dead-lettered); a reading already stored (same source and timestamp) is skipped, so a
redelivery after a crash or a rebalance never duplicates one. A malformed message (not
JSON, wrong shape, rejected by the store's validation) is counted in
`idf_kafka_malformed_total{reason}` and copied to `<topic>.dlq` with the reason in its
`idf-dlq-reason` header (and its origin in `idf-dlq-topic`, `-partition`, `-offset`); the
messages around it are stored as usual. When the broker is lost the consumer reports
it (`/readyz`, `idf_kafka_connected`) and reconnects, resuming from the committed offsets.
Consumer lag per partition is `idf_kafka_consumer_lag`. With `kafka_decisions`, EIL
decisions (POST /v1/eil/act) are published as JSON to `<topic>.decisions`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from ..._io import jsonable
from .context import ServiceContext
from .kafka_messages import Malformed, parse_message

if TYPE_CHECKING:
    from ...eil import EILOptimizer

__all__ = ["KafkaIngest", "start_kafka"]

log = logging.getLogger("idf_jax.runtime.service")

_PROBE_S = 1.0  # how often the broker is checked while no messages arrive
_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)


def _store(eil: EILOptimizer, reading: dict[str, Any]) -> bool:
    """In the EIL thread: sense `reading` unless its (source, timestamp) is stored already;
    True when stored now. A reading the store rejects raises `Malformed`."""
    from ...eil.store import validate_reading

    try:
        validate_reading(reading, eil.sources)
        if eil.store.has(reading["source"], float(reading["timestamp"])):
            return False
        eil.sense(reading)
    except ValueError as e:
        raise Malformed("rejected", str(e)) from e
    return True


class KafkaIngest:
    """The consumer (and the producer of dead letters and decisions) of one service."""

    def __init__(self, ctx: ServiceContext):
        config = ctx.config
        assert config.kafka_bootstrap is not None and config.kafka_topic is not None
        self.ctx = ctx
        self.bootstrap = config.kafka_bootstrap
        self.topic = config.kafka_topic
        self.group = config.kafka_group
        self.dlq_topic = f"{self.topic}.dlq"
        self.decisions_topic = f"{self.topic}.decisions" if config.kafka_decisions else None
        self.connected = False
        self.last_error: str | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._tasks: list[asyncio.Task] = []
        self._abandoned: set[asyncio.Future] = set()  # client stops still running
        self._stopping = False

    def status(self) -> dict[str, Any]:
        """For /readyz: whether the broker is reachable, and the last error if not."""
        out: dict[str, Any] = {"connected": self.connected, "topic": self.topic}
        if not self.connected and self.last_error:
            out["error"] = self.last_error
        return out

    def _set_connected(self, ok: bool, error: str | None = None) -> None:
        if ok != self.connected:
            log.info("Kafka broker %s %s", self.bootstrap, "reachable" if ok else "lost")
        self.connected = ok
        self.last_error = error
        self.ctx.metrics.kafka_connected.set(1 if ok else 0)

    async def start(self) -> None:
        """Start consuming in the background (connecting, and reconnecting, as needed)."""
        self._tasks.append(asyncio.create_task(self._run(), name="idf-kafka-consumer"))
        if self.decisions_topic is not None:
            self._tasks.append(asyncio.create_task(self._publish_decisions()))

    async def stop(self) -> None:
        """Stop consuming (offsets of stored messages are committed as they are stored)."""
        self._stopping = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self._close()
        self._set_connected(False, "stopped")

    async def _close(self) -> None:
        """Stop the clients, waiting at most 10 s: with the broker gone, aiokafka's consumer
        stop can hang in a fetch retry (and swallow a cancellation, so no `wait_for`); a stop
        that does not finish is left to finish in the background."""
        stops = [asyncio.ensure_future(c.stop()) for c in (self._consumer, self._producer) if c]
        self._consumer = self._producer = None
        if stops:
            done, pending = await asyncio.wait(stops, timeout=10.0)
            for t in done:
                if not t.cancelled() and t.exception() is not None:
                    log.debug("Kafka client stop: %r", t.exception())
            self._abandoned.update(pending)
            for t in pending:
                t.add_done_callback(self._abandoned.discard)

    async def _open(self) -> tuple[AIOKafkaConsumer, AIOKafkaProducer]:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
            request_timeout_ms=5000,
        )
        self._producer, self._consumer = producer, consumer
        await producer.start()
        await consumer.start()
        return consumer, producer

    async def _run(self) -> None:
        attempt = 0
        while not self._stopping:
            try:
                consumer, producer = await self._open()
                self._set_connected(True)
                attempt = 0
                await self._consume(consumer, producer)
            except asyncio.CancelledError:
                raise
            except (TimeoutError, KafkaError, OSError) as e:
                self._set_connected(False, f"{type(e).__name__}: {e}")
                log.warning("Kafka consumer: %s; reconnecting", self.last_error)
            except Exception as e:  # noqa: BLE001 - never let the consumer die
                self._set_connected(False, f"{type(e).__name__}: {e}")
                log.exception("Kafka consumer failed; reconnecting")
            await self._close()
            await asyncio.sleep(_BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)])
            attempt += 1

    async def _consume(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        idle = 0.0
        while True:
            batch = await consumer.getmany(timeout_ms=200, max_records=500)
            for tp, records in batch.items():
                for rec in records:
                    await self._handle(rec, producer)
                await consumer.commit({tp: records[-1].offset + 1})
            await self._update_lag(consumer)
            idle = 0.0 if batch else idle + 0.2
            if idle >= _PROBE_S:  # nothing arrived for a while: is the broker still there?
                idle = 0.0
                # fetches fail quietly while the broker is away: a metadata request
                # raises once the connection is refused
                await asyncio.wait_for(consumer.topics(), 5.0)

    async def _handle(self, rec: ConsumerRecord, producer: AIOKafkaProducer) -> None:
        metrics = self.ctx.metrics
        try:
            value = rec.value if isinstance(rec.value, bytes) else None
            reading = parse_message(value)
            stored = await self.ctx.eil().run(lambda eil: _store(eil, reading))
        except Malformed as e:
            await self._dead_letter(rec, producer, e)
            return
        metrics.kafka_messages.labels("stored" if stored else "duplicate").inc()
        if stored:
            metrics.readings.inc()

    async def _dead_letter(self, rec: ConsumerRecord, producer: AIOKafkaProducer, e: Malformed):
        headers = [
            ("idf-dlq-reason", e.reason.encode()),
            ("idf-dlq-topic", rec.topic.encode()),
            ("idf-dlq-partition", str(rec.partition).encode()),
            ("idf-dlq-offset", str(rec.offset).encode()),
        ]
        value = rec.value if isinstance(rec.value, bytes) else b""
        key = rec.key if isinstance(rec.key, bytes) else None
        await producer.send_and_wait(self.dlq_topic, value, key=key, headers=headers)
        self.ctx.metrics.kafka_malformed.labels(e.kind).inc()
        self.ctx.metrics.kafka_messages.labels("malformed").inc()
        log.info(
            "Kafka message %s/%d@%d to %s: %s",
            rec.topic,
            rec.partition,
            rec.offset,
            self.dlq_topic,
            e.reason,
        )

    async def _update_lag(self, consumer: AIOKafkaConsumer) -> None:
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is None:
                continue
            pos = await consumer.position(tp)
            self.ctx.metrics.kafka_lag.labels(partition_name(tp)).set(max(high - pos, 0))

    async def _publish_decisions(self) -> None:
        """Forward the EIL decisions published on the service's event hub."""
        q = self.ctx.hub.subscribe()
        try:
            while True:
                event = await q.get()
                if event.get("type") != "decision" or self._producer is None or not self.connected:
                    continue
                body = orjson.dumps(jsonable(event["decision"]))
                try:
                    await self._producer.send_and_wait(self.decisions_topic, body)
                except KafkaError as e:
                    log.warning("Kafka: decision not published to %s: %s", self.decisions_topic, e)
        finally:
            self.ctx.hub.unsubscribe(q)


async def start_kafka(ctx: ServiceContext) -> KafkaIngest:
    """Start ingesting `config.kafka_topic` (the EIL must be part of this service)."""
    if ctx.state["eil"] is None:
        raise ValueError("kafka_bootstrap: Kafka ingestion needs the EIL (service.eil is false)")
    ingest = KafkaIngest(ctx)
    await ingest.start()
    return ingest


def partition_name(tp: TopicPartition) -> str:
    """The `partition` label of a topic partition in /metrics."""
    return f"{tp.topic}/{tp.partition}"
