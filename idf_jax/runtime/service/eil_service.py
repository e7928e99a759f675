"""The EIL decision loop behind /v1/eil/* and /v1/ledger/*, kept in the state directory.

`EILService.from_config` opens the EIL database ``<state>/eil.sqlite`` (telemetry and the
proof ledger) signed with the service's own Ed25519 key (``eil.ledger_key``, else
``$IDF_EIL_LEDGER_KEY``, else ``<state>/keys/ledger_ed25519.pem``, created on first start).
``dev=True`` (``idf serve --dev``) signs ``<state>/eil-dev.sqlite`` with the public
development key instead and says so in the log at WARNING.

Anchors: at start the ledger is verified against the last anchor the service published
(``<state>/anchors/latest.json``; ``<db_path>.anchors/`` for a database given as
``eil.db_path``); a ledger that fails (edited, truncated, wiped, rolled
back) is an alert: a log line at ERROR and ``idf_ledger_verification_failures_total``; the
service then stops publishing anchors, so it never signs over the damage. Otherwise it
publishes a signed anchor at start, after every decision or proof, and at shutdown.
Nothing is deleted on shutdown.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from ...eil import EILOptimizer
    from .config import ServiceConfig
    from .metrics import Metrics

__all__ = ["EILService", "LedgerFrozen", "eil_importable"]

log = logging.getLogger("idf_jax.runtime.service")
_WRITES = frozenset(("act", "prove"))  # calls that may append to the ledger

T = TypeVar("T")


def eil_importable() -> bool:
    """Whether `idf_jax.eil` is installed."""
    try:
        from ...eil import EILOptimizer  # noqa: F401
    except ImportError:
        return False
    return True


class LedgerFrozen(RuntimeError):
    """The ledger failed verification at start: no anchor is published over it."""


class EILService:
    """One `EILOptimizer(**kwargs)` used from one dedicated thread (SQLite connections are
    per thread): every call runs there, in order. `anchors`: the folder of published anchors
    (None: none kept); `metrics`: where verification failures are counted."""

    def __init__(
        self,
        kwargs: Mapping[str, Any],
        *,
        anchors: Path | None = None,
        metrics: Metrics | None = None,
    ):
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="idf-eil")
        self._kwargs = dict(kwargs)
        self.anchors = anchors
        self.metrics = metrics
        self.frozen: str | None = None  # why anchors are no longer published
        self.eil: EILOptimizer | None = None

    @classmethod
    def from_config(cls, config: ServiceConfig, metrics: Metrics | None = None) -> EILService:
        """The service's EIL in its state directory (module doc)."""
        from ...eil.keys import KEY_ENV
        from ..state import anchors_dir, eil_db_path, ensure_signing_key, state_dir

        root = state_dir(config.state_dir) if config.state_dir else state_dir()
        kwargs = dict(config.eil) if isinstance(config.eil, Mapping) else {}
        if config.dev:
            log.warning(
                "--dev: the EIL ledger %s is signed with the PUBLIC development key; its "
                "proofs are worthless to anyone else. Never use --dev in production.",
                root / "eil-dev.sqlite",
            )
            kwargs.setdefault("db_path", str(root / "eil-dev.sqlite"))
            kwargs.setdefault("allow_dev_key", True)
            return cls(kwargs, anchors=root / "anchors-dev", metrics=metrics)
        if kwargs.get("allow_dev_key"):
            raise ValueError(
                "service.eil.allow_dev_key: the public development key is only used with "
                "--dev (service.dev: true), which the log announces"
            )
        anchors = anchors_dir(root)
        if kwargs.get("db_path"):  # a database of its own: its anchors beside it
            anchors = Path(f"{kwargs['db_path']}.anchors")
        kwargs.setdefault("db_path", str(eil_db_path(root)))
        if kwargs.get("ledger_key") is None and not os.environ.get(KEY_ENV):
            kwargs["ledger_key"], _ = ensure_signing_key(root)
        return cls(kwargs, anchors=anchors, metrics=metrics)

    async def start(self) -> None:
        """Build the optimizer (opens its store) in the EIL thread, verify the ledger against
        the last published anchor, and publish a new one."""

        def make() -> EILOptimizer:
            from ...eil import EILOptimizer

            return EILOptimizer(**self._kwargs)

        self.eil = await asyncio.get_running_loop().run_in_executor(self._executor, make)
        await asyncio.get_running_loop().run_in_executor(self._executor, self._check_at_start)

    def _check_at_start(self) -> None:
        from ...eil.anchor import latest_anchor

        eil = self._started()
        log.info(
            "EIL ledger %s: %d records, public key sha256 %s",
            eil.db_path,
            len(eil.ledger),
            eil.ledger.key_fingerprint[:16],
        )
        anchor = None
        if self.anchors is not None:
            try:
                anchor = latest_anchor(self.anchors)
            except (ValueError, OSError) as e:
                self._alert("startup", [f"the last anchor cannot be read: {e}"])
                return
        res = eil.verify_ledger(anchor=anchor)
        if not res["ok"]:
            self._alert("startup", res["errors"])
            return
        self._publish(history=True)

    def _alert(self, where: str, errors: list[str]) -> None:
        """Log at ERROR and count a failed verification; freeze anchors at start-up."""
        if self.metrics is not None:
            self.metrics.ledger_alerts.labels(where).inc()
        log.error("EIL LEDGER VERIFICATION FAILED (%s): %s", where, "; ".join(errors))
        if where == "startup" and self.frozen is None:
            self.frozen = "; ".join(errors)
            log.error("anchors are no longer published until the ledger is restored")

    def _publish(self, *, history: bool) -> dict[str, Any]:
        """Sign the current head; write it to the anchors folder (in the EIL thread)."""
        from ...eil.anchor import write_anchor

        if self.frozen is not None:
            raise LedgerFrozen(f"the ledger failed verification at start: {self.frozen}")
        anchor = self._started().anchor()
        if self.anchors is not None:
            write_anchor(self.anchors, anchor, history=history)
        return anchor

    def _started(self) -> EILOptimizer:
        if self.eil is None:
            raise RuntimeError("the EIL service is not started")
        return self.eil

    @property
    def optimizer(self) -> EILOptimizer:
        """The started optimizer (RuntimeError before `start`)."""
        return self._started()

    async def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """`eil.<name>(*args, **kwargs)`, run in the EIL thread (then the new head anchored)."""
        fn = getattr(self._started(), name)

        def run() -> Any:
            out = fn(*args, **kwargs)
            if name in _WRITES and self.frozen is None:
                self._publish(history=False)
            return out

        return await asyncio.get_running_loop().run_in_executor(self._executor, run)

    async def anchor(self) -> dict[str, Any]:
        """A signed anchor of the current head, also kept in the anchors folder."""
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, lambda: self._publish(history=True)
        )

    async def run(self, fn: Callable[[EILOptimizer], T]) -> T:
        """`fn(eil)`, run in the EIL thread (several calls in one step, in order)."""
        eil = self._started()
        return await asyncio.get_running_loop().run_in_executor(self._executor, lambda: fn(eil))

    async def verify(self, anchor: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Re-check the hash chain and signatures of the whole ledger, against `anchor`
        (else the last anchor this service published); a failure raises the alert."""
        from ...eil.anchor import latest_anchor

        eil = self._started()

        def run() -> dict[str, Any]:
            used, source = anchor, "request"
            if used is None and self.anchors is not None:
                used, source = latest_anchor(self.anchors), "published"
            res = eil.verify_ledger(anchor=dict(used) if used is not None else None)
            res["anchor"] = source if used is not None else None
            if self.frozen is not None:
                res["ok"] = False
                res["errors"] = [*res["errors"], f"failed at start: {self.frozen}"]
            if not res["ok"]:
                self._alert("request", res["errors"])
            return res

        return await asyncio.get_running_loop().run_in_executor(self._executor, run)

    async def close(self) -> None:
        """Publish a last anchor, close the optimizer's store (in its thread), stop the
        thread. The database, keys and anchors stay in the state directory."""
        if self.eil is not None:

            def finish() -> None:
                eil = self._started()
                try:
                    if self.frozen is None:
                        self._publish(history=True)
                finally:
                    eil.close()

            await asyncio.get_running_loop().run_in_executor(self._executor, finish)
        self._executor.shutdown(wait=True)
