"""`JobEngine`: a bounded queue of jobs run by worker processes under budgets.

Python API (what the HTTP routes, the WebSocket and gRPC call)::

    engine = JobEngine(state_dir, limits=Limits(), workers=2, queue_size=64)
    engine.start()                                   # workers spawn on the first job
    job_id = engine.submit("sample", {"capsule": "lattice.ising", "params": {"L": 16}},
                           Budgets(wall_s=60, memory_mb=512))
    engine.status(job_id)      # JobRecord: status, progress, result, error
    engine.result(job_id)      # the result JSON of a finished job (None otherwise)
    engine.cancel(job_id)      # True if it was queued or running
    record = await engine.wait(job_id)               # or engine.wait_sync(job_id, timeout)
    async for event in engine.events(job_id): ...    # progress events, then the final status
    engine.close()

Each worker slot is a thread that owns one `WorkerProcess`: it takes the next job, sends it,
and while waiting for the answer enforces the job's budgets: past `wall_s` the worker is
killed (status `timeout`), past `memory_mb` of resident memory above the worker's idle
footprint it is killed (status `out_of_memory`); a cancelled job is asked to stop at its
next chunk and killed after a grace period. A killed worker is replaced at once. The event
loop never waits on a job: `wait` awaits a future completed by the slot thread.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import logging
import math
import queue
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from ...state import jobs_db_path
from ..config import Limits
from ..jobs import JobError
from .store import FINISHED, JobRecord, JobStatus, JobStore
from .tasks import KINDS, check_capsule
from .train_task import check_train
from .worker import WorkerProcess, WorkerSettings

__all__ = ["Budgets", "JobEngine", "QueueFull"]

log = logging.getLogger("idf_jax.runtime.service")

Event = dict[str, Any]


class QueueFull(JobError):
    """The queue holds `queue_size` jobs: try again after `retry_after` seconds (HTTP 429)."""

    def __init__(self, queue_size: int, retry_after: int):
        super().__init__(
            "job", f"the job queue is full ({queue_size} jobs waiting); retry later", 429
        )
        self.retry_after = retry_after


@dataclasses.dataclass(frozen=True)
class Budgets:
    """A job's budgets: `wall_s` seconds of wall time from its start, `memory_mb` MB of
    worker resident memory above the worker's idle footprint."""

    wall_s: float
    memory_mb: float

    def __post_init__(self) -> None:
        for name in ("wall_s", "memory_mb"):
            v = getattr(self, name)
            if (
                isinstance(v, bool)
                or not isinstance(v, (int, float))
                or not (math.isfinite(v) and v > 0)
            ):
                raise JobError(f"budgets.{name}", f"must be a finite number > 0, got {v!r}")

    def capped(self, maximum: Budgets) -> Budgets:
        """Self, or a 413 `JobError` naming the budget over `maximum`."""
        for name in ("wall_s", "memory_mb"):
            if getattr(self, name) > getattr(maximum, name):
                raise JobError(
                    f"budgets.{name}",
                    f"{getattr(self, name)} is over the service's limit {getattr(maximum, name)}",
                    413,
                )
        return self


@dataclasses.dataclass(eq=False)
class _Job:
    id: str
    kind: str
    payload: dict[str, Any]
    budgets: Budgets
    future: concurrent.futures.Future = dataclasses.field(default_factory=concurrent.futures.Future)
    cancel_requested: bool = False
    running: bool = False


class _JobQueue:
    """A bounded FIFO of jobs from which a cancelled job is removed (freeing its place)."""

    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self._items: collections.deque[_Job | None] = collections.deque()
        self._cond = threading.Condition()

    def put_nowait(self, job: _Job | None) -> None:
        with self._cond:
            if job is not None and len(self._items) >= self.maxsize:
                raise queue.Full
            self._items.append(job)
            self._cond.notify()

    def get(self) -> _Job | None:
        with self._cond:
            while not self._items:
                self._cond.wait()
            return self._items.popleft()

    def remove(self, job: _Job) -> bool:
        with self._cond:
            try:
                self._items.remove(job)
            except ValueError:
                return False
            return True

    def qsize(self) -> int:
        with self._cond:
            return sum(1 for j in self._items if j is not None)


class JobEngine:
    """Jobs in worker processes, under budgets, recorded in `state_dir/jobs.sqlite`.

    workers: worker processes (jobs run at once). queue_size: jobs waiting before `submit`
    raises `QueueFull`. budgets: the default and largest budgets of a job. modules: modules
    each worker imports (capsule registrations); the modules of capsules registered in this
    process are added when a worker starts. sampler_cache_size: built samplers a worker
    keeps (compiled runs of repeated job shapes). cancel_grace_s: how long a cancelled job may
    take to stop at a chunk boundary before its worker is killed. retention_s, max_rows:
    finished jobs older than `retention_s` seconds, and beyond the newest `max_rows`
    finished ones, are pruned from the job table (with their result files) at `start` and
    every `prune_interval_s` seconds (None: no such bound). on_finish(kind, status) is called
    when a job ends, on_prune(n) when n jobs were pruned (the service's metrics).
    """

    def __init__(
        self,
        state_dir: str | Path,
        *,
        limits: Limits | None = None,
        workers: int = 2,
        queue_size: int = 64,
        budgets: Budgets | None = None,
        modules: tuple[str, ...] = (),
        sampler_cache_size: int = 32,
        cancel_grace_s: float = 2.0,
        poll_s: float = 0.02,
        start_timeout_s: float = 300.0,
        retention_s: float | None = 7 * 86400.0,
        max_rows: int | None = 10_000,
        prune_interval_s: float = 3600.0,
        on_finish: Callable[[str, str], None] | None = None,
        on_prune: Callable[[int], None] | None = None,
    ):
        self.state_dir = Path(state_dir)
        self.limits = limits or Limits()
        self.num_workers = int(workers)
        self.queue_size = int(queue_size)
        self.max_budgets = budgets or Budgets(wall_s=600.0, memory_mb=2048.0)
        self.modules = tuple(modules)
        self.sampler_cache_size = int(sampler_cache_size)
        self.cancel_grace_s = cancel_grace_s
        self.poll_s = poll_s
        self.start_timeout_s = start_timeout_s
        self.store = JobStore(jobs_db_path(self.state_dir))
        self._queue = _JobQueue(self.queue_size)
        self._jobs: dict[str, _Job] = {}
        self._subs: dict[str, list[Callable[[Event], None]]] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._workers: list[WorkerProcess | None] = [None] * self.num_workers
        self._closing = False
        self.replaced = 0  # workers killed (budget, cancel) and replaced
        self.retention_s = retention_s
        self.max_rows = max_rows
        self.prune_interval_s = float(prune_interval_s)
        self.pruned = 0  # finished jobs pruned from the table so far
        self.on_finish = on_finish
        self.on_prune = on_prune
        self._stop_pruning = threading.Event()
        self._pruner: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------

    def start(self, *, prewarm: bool = False) -> None:
        """Start the slot threads; with `prewarm`, each spawns its worker now (in the
        background), else on its first job."""
        if self._threads:
            return
        self.prune()
        self._pruner = threading.Thread(target=self._prune_loop, name="idf-job-pruner", daemon=True)
        self._pruner.start()
        for i in range(self.num_workers):
            t = threading.Thread(
                target=self._slot, args=(i, prewarm), name=f"idf-job-slot-{i}", daemon=True
            )
            t.start()
            self._threads.append(t)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the workers; queued and running jobs are recorded as failed (interrupted)."""
        self._closing = True
        self._stop_pruning.set()
        if self._pruner is not None:
            self._pruner.join(timeout=timeout)
        with self._lock:
            pending = [j for j in self._jobs.values() if not j.future.done()]
        for j in pending:
            j.cancel_requested = True
        for _ in self._threads:
            self._queue.put_nowait(None)
        for i, w in enumerate(self._workers):
            if w is not None:
                w.kill()
                self._workers[i] = None
        for t in self._threads:
            t.join(timeout=timeout)
        err = {"field": "job", "message": "interrupted: the service stopped", "status": 503}
        for j in pending:
            if not j.future.done():
                self._finish(j, "failed", error=err)
        self.store.close()

    # -- the API -----------------------------------------------------------------------

    def submit(self, kind: str, payload: dict[str, Any], budgets: Budgets | None = None) -> str:
        """Queue a job; its id. JobError for an unknown kind or a budget over the limit,
        `QueueFull` (429) when the queue is full."""
        if self._closing:
            raise JobError("job", "the service is shutting down", 503)
        if kind not in KINDS:
            raise JobError("kind", f"unknown job kind {kind!r}; choose one of {KINDS}")
        if not isinstance(payload, dict):
            raise JobError("payload", "must be a JSON object")
        if kind == "train":
            check_train(payload, self.state_dir)
        else:
            check_capsule(payload.get("capsule"), payload.get("params", {}))
        b = (budgets or self.max_budgets).capped(self.max_budgets)
        if not self._threads:
            self.start()
        job = _Job(uuid.uuid4().hex, kind, payload, b)
        with self._lock:
            self._jobs[job.id] = job
        self.store.insert(job.id, kind, payload, dataclasses.asdict(b))
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            with self._lock:
                self._jobs.pop(job.id, None)
            err = {"field": "job", "message": "queue full", "status": 429}
            self.store.finish(job.id, "failed", error=err)
            raise QueueFull(self.queue_size, retry_after=self._retry_after()) from None
        return job.id

    def status(self, job_id: str) -> JobRecord | None:
        """The job's record (None for an unknown id)."""
        return self.store.get(job_id)

    def result(self, job_id: str) -> Any:
        """The result of a finished job; None while it runs or when it did not succeed."""
        rec = self.store.get(job_id)
        return rec.result if rec is not None and rec.status == "done" else None

    def list(self, *, limit: int = 100, status: str | None = None) -> list[JobRecord]:
        """The newest jobs (results left out)."""
        return self.store.list(limit=limit, status=status)

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued or running job; False when it is unknown or already finished."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None or job.future.done():
            return False
        job.cancel_requested = True
        with self._lock:
            running = job.running
        if not running:  # still queued: out of the queue
            self._queue.remove(job)
            self._finish(job, "cancelled", error=_cancelled_error())
        return True

    async def wait(self, job_id: str, timeout: float | None = None) -> JobRecord:
        """Await the job's end (never blocks the loop); its final record."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is not None:
            await asyncio.wait_for(asyncio.wrap_future(job.future), timeout)
        rec = self.store.get(job_id)
        if rec is None:
            raise JobError("id", f"no job {job_id!r}", 404)
        return rec

    def wait_sync(self, job_id: str, timeout: float | None = None) -> JobRecord:
        """`wait` for threads (gRPC handlers, scripts)."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is not None:
            job.future.result(timeout)
        rec = self.store.get(job_id)
        if rec is None:
            raise JobError("id", f"no job {job_id!r}", 404)
        return rec

    def subscribe(self, job_id: str, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call `callback(event)` (from a slot thread) for each event of the job: progress
        events, then `{"type": "status", "status": ...}` at its end. Returns unsubscribe."""
        with self._lock:
            self._subs.setdefault(job_id, []).append(callback)

        def unsubscribe() -> None:
            with self._lock:
                subs = self._subs.get(job_id, [])
                if callback in subs:
                    subs.remove(callback)

        return unsubscribe

    async def events(self, job_id: str) -> AsyncIterator[Event]:
        """The job's events as an async iterator, ending with its final status event."""
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[Event] = asyncio.Queue()

        def forward(ev: Event) -> None:
            loop.call_soon_threadsafe(q.put_nowait, ev)

        unsubscribe = self.subscribe(job_id, forward)
        try:
            rec = self.store.get(job_id)
            if rec is None:
                raise JobError("id", f"no job {job_id!r}", 404)
            with self._lock:
                live = job_id in self._jobs and not self._jobs[job_id].future.done()
            if not live:
                yield {"type": "status", "status": rec.status}
                return
            while True:
                ev = await q.get()
                yield ev
                if ev.get("type") == "status" and ev.get("status") in FINISHED:
                    return
        finally:
            unsubscribe()

    def stats(self) -> dict[str, Any]:
        """Workers alive, jobs queued and running (for /readyz and /metrics)."""
        with self._lock:
            running = sum(1 for j in self._jobs.values() if j.running and not j.future.done())
        return {
            "workers": self.num_workers,
            "workers_alive": sum(1 for w in self._workers if w is not None and w.alive),
            "queued": self._queue.qsize(),
            "running": running,
            "replaced": self.replaced,
        }

    def prune(self) -> int:
        """Prune finished jobs past the retention (class doc) now; the number pruned."""
        n = self.store.prune(self.retention_s, self.max_rows)
        if n:
            self.pruned += n
            if self.on_prune is not None:
                self.on_prune(n)
            log.info("pruned %d finished jobs from the job table", n)
        return n

    def _prune_loop(self) -> None:
        while not self._stop_pruning.wait(self.prune_interval_s):
            try:
                self.prune()
            except Exception:  # noqa: BLE001 - a failed prune is retried next time
                log.exception("pruning the job table failed")

    def worker_pids(self) -> list[int | None]:
        """The pid of each slot's worker (None: not started)."""
        return [w.pid if w is not None and w.alive else None for w in self._workers]

    # -- slots ------------------------------------------------------------------------

    def _retry_after(self) -> int:
        return max(1, min(60, self._queue.qsize() // max(self.num_workers, 1)))

    def _settings(self) -> WorkerSettings:
        import capsules._base as cb

        mods = list(self.modules)
        for info in list(cb._REGISTRY.values()):
            m = getattr(info.factory, "__module__", "") or ""
            if m and m != "__main__" and not m.startswith("capsules") and m not in mods:
                mods.append(m)
        cache = self.state_dir / "jax-cache"
        return WorkerSettings(
            self.limits,
            tuple(mods),
            str(cache),
            self.sampler_cache_size,
            state_dir=str(self.state_dir),
        )

    def _spawn(self, i: int) -> WorkerProcess:
        w = WorkerProcess(self._settings())
        self._workers[i] = w
        w.wait_ready(self.start_timeout_s)
        return w

    def _slot(self, i: int, prewarm: bool) -> None:
        if prewarm:
            try:
                self._spawn(i)
            except RuntimeError:
                log.exception("job worker %d failed to start", i)
                self._workers[i] = None
        while not self._closing:
            job = self._queue.get()
            if job is None or self._closing:
                return
            if job.future.done():  # cancelled while queued
                continue
            w = self._workers[i]
            if w is None or not w.alive:
                try:
                    w = self._spawn(i)
                except RuntimeError as e:
                    self._workers[i] = None
                    self._finish(
                        job, "failed", error={"field": "job", "message": str(e), "status": 503}
                    )
                    continue
            with self._lock:
                if job.future.done():
                    continue
                job.running = True
            self.store.mark_running(job.id)
            self._notify(job.id, {"type": "status", "status": "running"})
            try:
                killed = self._run(w, job)
            except Exception as e:  # noqa: BLE001 - the slot must survive anything
                log.exception("job %s: slot error", job.id)
                killed = True
                if not job.future.done():
                    self._finish(
                        job, "failed", error={"field": "job", "message": str(e), "status": 500}
                    )
            if killed and not self._closing:
                w.kill()
                self.replaced += 1
                self._workers[i] = None
                try:
                    self._spawn(i)
                except RuntimeError:
                    if not self._closing:
                        log.exception("job worker %d failed to restart", i)
                    self._workers[i] = None

    def _run(self, w: WorkerProcess, job: _Job) -> bool:
        """Run `job` on `w` under its budgets; True when the worker had to be killed."""
        base = w.rss()
        mem_limit = base + job.budgets.memory_mb * 2**20
        t0 = time.monotonic()
        deadline = t0 + job.budgets.wall_s
        stop_asked: float | None = None
        last_progress = 0.0
        w.send(job.id, job.kind, job.payload)
        while True:
            if w.poll(self.poll_s):
                try:
                    msg = w.recv()
                except (EOFError, OSError):
                    w.kill()  # reap it
                    code = w.process.exitcode
                    if job.cancel_requested:
                        self._finish(job, "cancelled", error=_cancelled_error())
                    elif code is not None and code < 0 and -code == 9:
                        self._finish(job, "out_of_memory", error=_oom_error(job, w.rss()))
                    else:
                        err = f"the job worker exited (code {code})"
                        self._finish(
                            job, "failed", error={"field": "job", "message": err, "status": 500}
                        )
                    return True
                kind = msg[0]
                if kind == "event":
                    ev = msg[2]
                    if ev.get("type") == "progress" and ev.get("num_steps"):
                        now = time.monotonic()
                        if now - last_progress > 0.25 or ev["steps_done"] >= ev["num_steps"]:
                            last_progress = now
                            self.store.set_progress(job.id, ev["steps_done"] / ev["num_steps"])
                    self._notify(job.id, ev)
                    continue
                if kind == "done":
                    self._finish(job, "done", result=msg[2])
                elif kind == "cancelled":
                    self._finish(job, "cancelled", error=_cancelled_error())
                elif kind == "out_of_memory":
                    w.kill()
                    self._finish(job, "out_of_memory", error=msg[2])
                    return True  # a worker that ran out of memory may be in a bad state
                else:
                    self._finish(job, "failed", error=msg[2])
                return False
            now = time.monotonic()
            if job.cancel_requested or self._closing:
                if stop_asked is None:
                    stop_asked = now
                    w.request_stop()
                elif now - stop_asked > self.cancel_grace_s:
                    w.kill()
                    self._finish(job, "cancelled", error=_cancelled_error())
                    return True
            if now > deadline:
                w.kill()
                self._finish(
                    job,
                    "timeout",
                    error={
                        "field": "budgets.wall_s",
                        "message": f"the job ran past its wall-time budget of "
                        f"{job.budgets.wall_s:g} s and was stopped",
                        "status": 504,
                    },
                )
                return True
            rss = w.rss()
            if rss > mem_limit:
                w.kill()
                self._finish(job, "out_of_memory", error=_oom_error(job, rss - base))
                return True

    def _finish(
        self,
        job: _Job,
        status: JobStatus,
        *,
        result: Any = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        with self._lock:
            if job.future.done():
                return
            job.running = False
        self.store.finish(job.id, status, result=result, error=error)
        with self._lock:
            self._jobs.pop(job.id, None)
        job.future.set_result(status)
        if self.on_finish is not None:
            try:
                self.on_finish(job.kind, status)
            except Exception:  # noqa: BLE001 - metrics never break a job
                log.exception("job %s: on_finish failed", job.id)
        self._notify(job.id, {"type": "status", "status": status})
        with self._lock:
            self._subs.pop(job.id, None)

    def _notify(self, job_id: str, event: Event) -> None:
        with self._lock:
            subs = list(self._subs.get(job_id, ()))
        for cb in subs:
            try:
                cb(event)
            except Exception:  # noqa: BLE001 - a subscriber never breaks a job
                log.exception("job %s: event subscriber failed", job_id)


def _cancelled_error() -> dict[str, Any]:
    return {"field": "job", "message": "the job was cancelled", "status": 499}


def _oom_error(job: _Job, used: int) -> dict[str, Any]:
    return {
        "field": "budgets.memory_mb",
        "message": f"the job used {used / 2**20:.0f} MB, over its memory budget of "
        f"{job.budgets.memory_mb:g} MB, and was stopped",
        "status": 507,
    }
