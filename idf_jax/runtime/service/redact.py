"""Secrets never reach a log line: a logging filter that redacts keys in place.

`install_redaction(secrets)` attaches one `RedactSecrets` filter to the loggers the service
writes through (``uvicorn``, ``uvicorn.error``, ``uvicorn.access``, ``idf_jax``). It edits
each record before any handler sees it (the console, a file, pytest's capture), replacing

- the value of a query parameter named like a key (``api_key=``, ``apikey=``, ``token=``,
  ``access_token=``, ``key=``): the WebSocket's ``?api_key=<key>`` in uvicorn's access and
  connection lines,
- a ``Bearer <token>``,
- every configured secret (the service's API keys, a ledger key from the config),

with ``[REDACTED]``. The record keeps its shape (uvicorn's access formatter unpacks its
arguments), only string arguments change.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

__all__ = ["LOGGERS", "REDACTED", "RedactSecrets", "install_redaction", "redact"]

REDACTED = "[REDACTED]"
LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "idf_jax")
_QUERY = re.compile(r"(?i)\b((?:api[_-]?key|access[_-]?token|token|key)=)[^&\s\"'#]+")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s\"',]+")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with key-like query values, bearer tokens and every secret replaced."""
    for s in sorted(secrets, key=len, reverse=True):
        if s:
            text = text.replace(s, REDACTED)
    text = _QUERY.sub(lambda m: m[1] + REDACTED, text)
    return _BEARER.sub(lambda m: m[1] + REDACTED, text)


class RedactSecrets(logging.Filter):
    """Redact the message and string arguments of every record (module doc)."""

    def __init__(self, secrets: Iterable[str] = ()):
        super().__init__()
        self.secrets: set[str] = {s for s in secrets if isinstance(s, str) and s}

    def _clean(self, value: Any) -> Any:
        return redact(value, self.secrets) if isinstance(value, str) else value

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = self._clean(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self._clean(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: self._clean(v) for k, v in record.args.items()}
        return True


_FILTER = RedactSecrets()


def install_redaction(secrets: Iterable[str] = ()) -> RedactSecrets:
    """Attach the shared filter to `LOGGERS` (once) and add `secrets` to what it redacts."""
    _FILTER.secrets.update(s for s in secrets if isinstance(s, str) and s)
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    return _FILTER
