"""The service's state directory: where telemetry, the ledger, jobs and keys live.

`state_dir(configured)` resolves, in order: an explicit path (the config's `state_dir`),
the `IDF_STATE_DIR` environment variable, `$XDG_STATE_HOME/idf`, `~/.local/state/idf`.
The folder is created (mode 0700) and never deleted by the service.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["state_dir"]


def state_dir(
    configured: str | os.PathLike | None = None, *, env: Mapping[str, str] | None = None
) -> Path:
    """The state directory (created if missing); see the module for the order of sources."""
    env = os.environ if env is None else env
    if configured:
        path = Path(configured)
    elif env.get("IDF_STATE_DIR"):
        path = Path(env["IDF_STATE_DIR"])
    elif env.get("XDG_STATE_HOME"):
        path = Path(env["XDG_STATE_HOME"]) / "idf"
    else:
        path = Path.home() / ".local" / "state" / "idf"
    path = path.expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        raise ValueError(f"state_dir: cannot create {str(path)!r}: {e}") from e
    if not os.access(path, os.W_OK):
        raise ValueError(f"state_dir: {str(path)!r} is not writable")
    return path
