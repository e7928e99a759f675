"""Telemetry messages from Kafka: one JSON object per message,
`{"source": str, "timestamp": number, "metrics": {channel: number}}` (optionally
`"interval_s"`). The timestamp is required: (source, timestamp) identifies a reading, so a
redelivered message is recognised and never stored twice."""

from __future__ import annotations

import math
from typing import Any

import orjson

__all__ = ["Malformed", "parse_message"]

_KEYS = {"source", "timestamp", "metrics", "interval_s"}


class Malformed(ValueError):
    """A message that cannot be a reading; `kind` labels the metric, the text is the reason."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def parse_message(value: bytes | None) -> dict[str, Any]:
    """The reading of a message's value; `Malformed` naming the problem otherwise (the
    store then checks the channels and their plausible ranges)."""
    if not value:
        raise Malformed("json", "empty message")
    try:
        msg = orjson.loads(value)
    except orjson.JSONDecodeError as e:
        raise Malformed("json", f"not JSON: {e}") from e
    if not isinstance(msg, dict):
        raise Malformed("schema", f"a JSON object is expected, got {type(msg).__name__}")
    extra = sorted(set(msg) - _KEYS)
    if extra:
        raise Malformed("schema", f"unknown keys {extra}; allowed: {sorted(_KEYS)}")
    source = msg.get("source")
    if not isinstance(source, str) or not source:
        raise Malformed("schema", "source: a non-empty string is required")
    if not _number(msg.get("timestamp")):
        raise Malformed(
            "schema", "timestamp: a finite number (seconds since the epoch) is required"
        )
    metrics = msg.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise Malformed("schema", "metrics: a non-empty object of channel -> number is required")
    for k, v in metrics.items():
        if not _number(v):
            raise Malformed("schema", f"metrics.{k}: a finite number is required, got {v!r}")
    if "interval_s" in msg and not _number(msg["interval_s"]):
        raise Malformed("schema", "interval_s: a finite number is required")
    return msg
