"""The state directory: where the service and the CLI keep what outlives a process.

One folder holds the EIL telemetry and proof ledger (``eil.sqlite``), the job table, the
signing keys (``keys/``, mode 0700; ``keys/ledger_ed25519.pem`` mode 0600 and its public
key ``keys/ledger_ed25519.pub.pem``) and the published ledger anchors (``anchors/``).
Nothing in it is deleted on shutdown.

Where it is, first match wins:

1. an explicit path (``idf serve --state-dir DIR``, ``state_dir(path)``),
2. the environment variable ``IDF_STATE_DIR``,
3. the config key ``state_dir`` (the ``service:`` section of a project ``config.yaml``),
4. ``$XDG_STATE_HOME/idf-jax``, else ``~/.local/state/idf-jax``.

`state_dir` creates the folder (mode 0700) when it does not exist.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = [
    "ANCHORS",
    "ENV",
    "LEDGER_KEY",
    "anchors_dir",
    "default_state_dir",
    "ensure_signing_key",
    "eil_db_path",
    "jobs_db_path",
    "state_dir",
]

ENV = "IDF_STATE_DIR"
LEDGER_KEY = "keys/ledger_ed25519.pem"
ANCHORS = "anchors"

log = logging.getLogger("idf_jax.runtime.state")


def default_state_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/idf-jax`` or ``~/.local/state/idf-jax``."""
    env = os.environ if env is None else env
    base = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "idf-jax"


def state_dir(
    config: Mapping[str, Any] | str | os.PathLike | None = None,
    *,
    env: Mapping[str, str] | None = None,
    create: bool = True,
) -> Path:
    """The state directory (module doc): `config` is an explicit path, or a mapping whose
    ``state_dir`` key is used when ``$IDF_STATE_DIR`` is not set."""
    env = os.environ if env is None else env
    if isinstance(config, str | os.PathLike):
        chosen: Any = config
    elif env.get(ENV):
        chosen = env[ENV]
    elif isinstance(config, Mapping) and config.get("state_dir"):
        chosen = config["state_dir"]
    else:
        chosen = default_state_dir(env)
    if not isinstance(chosen, str | os.PathLike) or not str(chosen).strip():
        raise ValueError(f"state_dir must be a folder path, got {chosen!r}")
    path = Path(chosen).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"state_dir {str(path)!r} exists and is not a folder")
    if create and not path.exists():
        path.mkdir(mode=0o700, parents=True)
    return path


def eil_db_path(root: Path) -> Path:
    """The EIL database (telemetry and proof ledger) in the state directory."""
    return root / "eil.sqlite"


def jobs_db_path(root: Path) -> Path:
    """The job table in the state directory."""
    return root / "jobs.sqlite"


def anchors_dir(root: Path) -> Path:
    """Where the service writes the ledger anchors it publishes."""
    return root / ANCHORS


def ensure_signing_key(root: Path) -> tuple[Ed25519PrivateKey, bool]:
    """(the service's Ed25519 ledger key, whether it was created now): read from
    ``root/keys/ledger_ed25519.pem``, or generated there on first start (mode 0600, with
    its public key beside it). A key file that other users may read is refused; group bits
    (which a volume's fsGroup may add) are removed again, with a warning."""
    from ..eil.keys import generate_key, load_private_key, save_private_key

    path = root / LEDGER_KEY
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o007:
            raise ValueError(
                f"ledger key file {str(path)!r} has mode {mode:o}: others may read it; "
                f"check who did, then run chmod 600 {path}"
            )
        if mode & 0o070:
            log.warning("ledger key file %s had mode %o; set to 600", path, mode)
            os.chmod(path, 0o600)
        return load_private_key(path.read_bytes()), False
    key = generate_key()
    keys = path.parent
    if not keys.exists():
        keys.mkdir(mode=0o700, parents=True)
    pub = save_private_key(key, path)
    log.info("created the ledger signing key %s (public key: %s)", path, pub)
    return key, True
