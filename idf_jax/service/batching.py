"""Micro-batching: concurrent requests' items are gathered into one batched call.

Items that arrive while a batch is open join it; a batch is sent when it holds
`max_size` items or its first item has waited `max_wait_s`. The batched function runs
in one worker thread (JAX releases the GIL while it computes), so the event loop keeps
accepting requests meanwhile; items arriving during a call form the next batch. Batches
are padded to a power of two (repeating the last item) so a jitted, vmapped callee sees
only log2(max_size) + 1 batch shapes and never recompiles in steady state.

If a batched call raises a `ValueError`, its items are retried one by one so only the
bad item's request fails.
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
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="idf-batch")
        self._closed = False
        self.calls = 0
        self.items = 0

    def _ensure_started(self):
        if self._task is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def submit(self, item: Any) -> Any:
        """Queue one item and wait for its result (exceptions propagate to the caller)."""
        if self._closed:
            raise BatcherClosed("the batcher is shutting down")
        self._ensure_started()
        fut = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, fut))
        return await fut

    async def submit_many(self, items: Sequence[Any]) -> list[Any]:
        return list(await asyncio.gather(*(self.submit(i) for i in items)))

    async def _run(self):
        loop = asyncio.get_running_loop()
        q = self._queue
        while True:
            first = await q.get()
            if first is None:
                return
            batch = [first]
            deadline = loop.time() + self.max_wait_s
            stop = False
            while len(batch) < self.max_size:
                try:
                    nxt = q.get_nowait()
                except asyncio.QueueEmpty:
                    timeout = deadline - loop.time()
                    if timeout <= 0:
                        break
                    try:
                        nxt = await asyncio.wait_for(q.get(), timeout)
                    except TimeoutError:
                        break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            await self._dispatch(loop, batch)
            if stop:
                # drain what is left before stopping
                while not q.empty():
                    rest = [q.get_nowait() for _ in range(min(q.qsize(), self.max_size))]
                    rest = [r for r in rest if r is not None]
                    if rest:
                        await self._dispatch(loop, rest)
                return

    async def _dispatch(self, loop, batch):
        live = [(i, f) for i, f in batch if not f.cancelled()]
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
            self._queue.put_nowait(None)
            await self._task
        self._executor.shutdown(wait=True)
