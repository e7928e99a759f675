"""Micro-batching: concurrent requests' items are gathered into one batched call.

Items that arrive while a batch is open join it; a batch is sent when it holds
`max_size` items or its first item has waited `max_wait_s`. The batched function runs
in one worker thread (JAX releases the GIL while it computes), so the event loop keeps
accepting requests meanwhile; items arriving during a call form the next batch. Batches
are padded to a power of two (repeating the last item) so a jitted, vmapped callee sees
only log2(max_size) + 1 batch shapes and never recompiles in steady state.

If a batched call raises a `ValueError`, its items are retried one by one so only the
bad item's request fails.

The pending items are a plain list; the runner sleeps on one future that `submit` resolves
(first item, or a full batch) or a `call_later` timer resolves (the first item's wait is
over), so a request costs one list append and one future, with no queue or timeout task.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["MicroBatcher", "BatcherClosed"]


class BatcherClosed(RuntimeError):
    """Raised for items submitted after `close()`."""


class MicroBatcher:
    """Gather items from concurrent coroutines into calls of `fn(list_of_items) -> list`.

    Args:
        fn: batched function; returns one result per item, in order.
        max_size: most items in one call (>= 1).
        max_wait_s: longest an item waits for companions before its batch is sent.
        pad_pow2: pad every batch to the next power of two (results of pads are dropped).
        on_batch: optional `on_batch(n_items)` called after every successful call.
    """

    def __init__(
        self,
        fn: Callable[[list[Any]], Sequence[Any]],
        *,
        max_size: int = 64,
        max_wait_s: float = 0.002,
        pad_pow2: bool = True,
        on_batch: Callable[[int], None] | None = None,
    ):
        if max_size < 1:
            raise ValueError(f"max_size must be >= 1, got {max_size}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
        self.fn = fn
        self.max_size = int(max_size)
        self.max_wait_s = float(max_wait_s)
        self.pad_pow2 = pad_pow2
        self.on_batch = on_batch
        self._pending: list[tuple[Any, asyncio.Future, float]] = []
        self._wake: asyncio.Future | None = None  # set when the runner should look again
        self._full = False  # the runner is waiting for companions; wake it when full
        self._task: asyncio.Task | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="idf-batch")
        self._closed = False
        self.calls = 0
        self.items = 0

    def _ensure_started(self, loop):
        if self._task is None:
            self._task = loop.create_task(self._run())

    def _poke(self):
        w = self._wake
        if w is not None and not w.done():
            w.set_result(None)

    async def submit(self, item: Any) -> Any:
        """Queue one item and wait for its result (exceptions propagate to the caller)."""
        if self._closed:
            raise BatcherClosed("the batcher is shutting down")
        loop = asyncio.get_running_loop()
        self._ensure_started(loop)
        fut = loop.create_future()
        pending = self._pending
        pending.append((item, fut, loop.time()))
        # wake the runner when it sleeps for lack of items, or waits for companions and
        # the batch just filled up (a plain list and one future: no queue, no timer task)
        if len(pending) == 1 or (self._full and len(pending) >= self.max_size):
            self._poke()
        return await fut

    async def submit_many(self, items: Sequence[Any]) -> list[Any]:
        return list(await asyncio.gather(*(self.submit(i) for i in items)))

    async def _run(self):
        loop = asyncio.get_running_loop()
        pending = self._pending
        while True:
            if not pending:
                if self._closed:
                    return
                self._wake = loop.create_future()
                await self._wake
                continue
            wait = pending[0][2] + self.max_wait_s - loop.time()
            if len(pending) < self.max_size and wait > 0 and not self._closed:
                # the batch's first item waits up to max_wait_s for companions
                self._wake = wake = loop.create_future()
                timer = loop.call_later(wait, self._poke)
                self._full = True
                try:
                    await wake
                finally:
                    self._full = False
                    timer.cancel()
            batch = pending[: self.max_size]
            del pending[: self.max_size]
            await self._dispatch(loop, batch)

    async def _dispatch(self, loop, batch):
        live = [(i, f) for i, f, _ in batch if not f.cancelled()]
        if not live:
            return
        items = [i for i, _ in live]
        n = len(items)
        padded = items
        if self.pad_pow2:
            size = 1 << (n - 1).bit_length()
            padded = items + [items[-1]] * (size - n)
        try:
            results = await loop.run_in_executor(self._executor, self.fn, padded)
            results = list(results)[:n]
            if len(results) != n:
                raise RuntimeError(
                    f"batched function returned {len(results)} results for {n} items"
                )
            self.calls += 1
            self.items += n
            if self.on_batch is not None:
                self.on_batch(n)
            for (_, f), r in zip(live, results):
                if not f.done():
                    f.set_result(r)
        except ValueError:
            if n == 1:
                await self._fail_one(loop, live[0])
            else:
                for pair in live:
                    await self._fail_one(loop, pair)
        except BaseException as e:  # noqa: BLE001 - every waiter must hear about it
            for _, f in live:
                if not f.done():
                    f.set_exception(e)

    async def _fail_one(self, loop, pair):
        item, f = pair
        try:
            r = (await loop.run_in_executor(self._executor, self.fn, [item]))[0]
            self.calls += 1
            self.items += 1
            if self.on_batch is not None:
                self.on_batch(1)
            if not f.done():
                f.set_result(r)
        except BaseException as e:  # noqa: BLE001
            if not f.done():
                f.set_exception(e)

    async def close(self):
        """Stop accepting items, finish every queued one, and stop the worker."""
        self._closed = True
        if self._task is not None:
            self._poke()
            await self._task
        self._executor.shutdown(wait=True)
