"""Fan-out of events (EIL decisions, proofs) to the subscribed WebSocket clients."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

__all__ = ["EventHub"]


class EventHub:
    """Subscribers get every published event on their own bounded queue; a slow client
    whose queue is full drops events rather than holding up the others."""

    def __init__(self, maxsize: int = 1000):
        self._subs: set[asyncio.Queue] = set()
        self._maxsize = maxsize

    def subscribe(self) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue(maxsize=self._maxsize)
        self._subs.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue) -> None:
        self._subs.discard(q)

    def publish(self, event: dict[str, Any]) -> None:
        for q in list(self._subs):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(event)
