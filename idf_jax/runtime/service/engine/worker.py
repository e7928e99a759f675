"""Job worker processes: one long-lived process per engine slot, spoken to over a pipe.

A worker is started with `multiprocessing`'s "spawn" method (never fork a process that
runs JAX threads), imports JAX, the capsules and the modules that registered extra
capsules once, points JAX's persistent compilation cache at the state directory, then
runs jobs one after another, so compiled samplers (`service.jobs`' cache) stay warm across
jobs of the same shapes. Messages, parent -> worker: `(job_id, kind, payload)` or None
(exit); worker -> parent: `("ready", pid)`, `("event", job_id, event)`, `("done", job_id,
result)`, `("failed", job_id, error)`, `("cancelled", job_id, None)`,
`("out_of_memory", job_id, error)`. A shared flag asks the running job to stop at its next
chunk. The parent reads the worker's resident memory from /proc and kills it (SIGKILL) to
enforce budgets; the worker dies with its parent (PR_SET_PDEATHSIG on Linux).
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing as mp
import os
import signal
import sys
import threading
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from ..config import Limits

__all__ = ["WorkerProcess", "WorkerSettings", "read_rss"]

log = logging.getLogger("idf_jax.runtime.service")


@dataclasses.dataclass(frozen=True)
class WorkerSettings:
    """What a worker needs: the limits, modules to import (capsule registrations), the
    JAX compilation cache folder (None: no persistent cache), the state directory (where
    `train` jobs read data and write checkpoints; None: no train jobs), how many built samplers
    it keeps for repeated jobs, and its scheduling niceness (jobs are batch work: the
    serving process, its health probes and predictions, goes first for the CPU)."""

    limits: Limits
    modules: tuple[str, ...] = ()
    compile_cache_dir: str | None = None
    sampler_cache_size: int = 32
    nice: int = 10
    state_dir: str | None = None


def read_rss(pid: int) -> int:
    """Resident memory of process `pid` in bytes (from /proc; 0 when unreadable)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return 0
    return 0


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, MemoryError) or "RESOURCE_EXHAUSTED" in str(e)[:2000]


def worker_main(conn: Connection, stop_flag: Any, settings: WorkerSettings) -> None:
    """The worker's loop (the target of the spawned process; see the module)."""
    _die_with_parent()
    if settings.nice:
        try:
            os.nice(settings.nice)
        except OSError:
            pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the parent, which stops us
    import importlib

    import jax

    if settings.compile_cache_dir:
        jax.config.update("jax_compilation_cache_dir", settings.compile_cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    import capsules

    capsules.registry()
    for mod in settings.modules:
        try:
            importlib.import_module(mod)
        except ImportError as e:
            print(f"idf job worker: cannot import {mod!r}: {e}", file=sys.stderr)
    from .. import jobs
    from ..jobs import JobError
    from .tasks import Cancelled, run_task

    jobs._SAMPLER_CACHE.size = settings.sampler_cache_size

    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        job_id, kind, payload = msg

        def emit(event: dict[str, Any], job_id: str = job_id) -> None:
            conn.send(("event", job_id, event))

        try:
            result = run_task(
                kind,
                payload,
                settings.limits,
                emit,
                lambda: stop_flag.value != 0,
                state_dir=None if settings.state_dir is None else Path(settings.state_dir),
            )
            reply: tuple = ("done", job_id, result)
        except Cancelled:
            reply = ("cancelled", job_id, None)
        except JobError as e:
            reply = ("failed", job_id, {"field": e.field, "message": e.message, "status": e.status})
        except Exception as e:  # noqa: BLE001 - reported as the job's error, the worker lives on
            if _is_oom(e):
                reply = (
                    "out_of_memory",
                    job_id,
                    {"field": "budgets.memory_mb", "message": f"out of memory: {e}", "status": 507},
                )
            else:
                traceback.print_exc(file=sys.stderr)
                reply = (
                    "failed",
                    job_id,
                    {"field": "job", "message": f"{type(e).__name__}: {e}", "status": 500},
                )
        try:
            conn.send(reply)
        except (OSError, ValueError):
            return


class WorkerProcess:
    """The parent's handle on one worker: start, send a job, poll, stop flag, kill."""

    def __init__(self, settings: WorkerSettings):
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._kill_lock = threading.Lock()  # kill() runs from a job's thread and from close()
        self.stop_flag = ctx.RawValue("b", 0)
        self.process = ctx.Process(
            target=worker_main,
            args=(child, self.stop_flag, settings),
            name="idf-job-worker",
            daemon=True,
        )
        self.process.start()
        child.close()
        self.pid: int = self.process.pid or 0

    def wait_ready(self, timeout: float) -> None:
        """Block until the worker has imported everything; RuntimeError if it cannot."""
        if not self._conn.poll(timeout):
            self.kill()
            raise RuntimeError(f"job worker did not start within {timeout:.0f} s")
        try:
            msg = self._conn.recv()
        except (EOFError, OSError) as e:
            self.kill()
            raise RuntimeError(
                f"job worker exited at start-up (code {self.process.exitcode})"
            ) from e
        if not (isinstance(msg, tuple) and msg[0] == "ready"):
            self.kill()
            raise RuntimeError(f"job worker sent {msg!r} at start-up")

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def rss(self) -> int:
        return read_rss(self.pid)

    def send(self, job_id: str, kind: str, payload: dict[str, Any]) -> None:
        self.stop_flag.value = 0
        self._conn.send((job_id, kind, payload))

    def poll(self, timeout: float) -> bool:
        """True when a message (or the end of the pipe) is waiting. A pipe closed by
        kill() in another thread also answers True: the next recv() raises OSError,
        which the caller handles as a dead worker."""
        try:
            return self._conn.poll(timeout)
        except (OSError, ValueError):
            return True

    def recv(self) -> tuple:
        """The next message; EOFError when the worker died."""
        return self._conn.recv()

    def request_stop(self) -> None:
        self.stop_flag.value = 1

    def kill(self) -> None:
        """SIGKILL the worker and reap it; safe to call again and from several threads
        (a cancelled job's thread and the engine's close can both get here)."""
        with self._kill_lock:
            if self.process.is_alive():
                self.process.kill()
            self.process.join(timeout=10)
            if not self._conn.closed:
                self._conn.close()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Ask an idle worker to exit; kill it if it does not."""
        try:
            self._conn.send(None)
        except (OSError, ValueError):
            pass
        self.process.join(timeout=timeout)
        self.kill()
