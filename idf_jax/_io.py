"""Files and JSON, one way (private): atomic writes and a JSON sanitiser.

Atomic: the data goes to a temporary file in the destination's folder, is flushed and
fsync'd, then `os.replace`d over the destination, so a crash never leaves a half-written
file and readers see either the old or the new content.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_json", "jsonable"]


def atomic_write(
    path: str | os.PathLike, write: Callable[[str], Any], *, mode: int = 0o644
) -> None:
    """Call `write(tmp_path)` to fill a temporary file, then rename it onto `path`.

    `write` may open the temporary path itself (numpy, matplotlib, PIL do). On any error
    the temporary file is removed and the destination is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, mode: int = 0o644) -> None:
    """Write `data` to `path` atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    atomic_write(path, write, mode=mode)


def atomic_write_json(path: str | os.PathLike, data: Any, *, indent: int | None = 2) -> None:
    """`jsonable(data)` as JSON text at `path`, atomically (non-finite floats become null)."""
    text = json.dumps(jsonable(data), indent=indent, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode())


def jsonable(x: Any) -> Any:
    """Numpy / JAX scalars and arrays to JSON values; non-finite floats to None.

    Dicts keep their order (keys become strings), tuples become lists, anything else that
    is not a JSON value becomes its `str`.
    """
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        v = float(x)
        return v if math.isfinite(v) else None
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return jsonable(np.asarray(x).tolist())
    if x is None or isinstance(x, str):
        return x
    return str(x)
