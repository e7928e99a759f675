"""Self-contained NVP checkpoint files: one JSON header line plus Equinox-serialised leaves.

Layout: ``b"IDF-NVP-CKPT 1\\n" + json_header + b"\\n" + payload``, where the payload is written
by `eqx.tree_serialise_leaves` and the header holds the architecture (`config`), the
normalisation statistics, the balance spec, training metadata, the series metadata
(`idf_jax.nvp.metadata.SeriesMeta`: channels, units, sampling interval, controls, training
ranges) and the payload's SHA-256, so a truncated or edited file is reported instead of
silently loading wrong weights, and a model is never applied to data it was not trained for.
"""

from __future__ import annotations

import hashlib
import io
import json
import os

import equinox as eqx
import jax

from .._io import atomic_write_bytes
from .metadata import SeriesMeta
from .model import Normalizer, NVPConfig, NVPModel

MAGIC = b"IDF-NVP-CKPT 1\n"


def save(
    path: str,
    model: NVPModel,
    cfg: NVPConfig,
    norm: Normalizer,
    spec: dict | None,
    extra: dict | None = None,
    series: SeriesMeta | None = None,
) -> None:
    if series is not None and tuple(series.channels) != tuple(cfg.channels):
        raise ValueError(
            f"series metadata channels {list(series.channels)} differ from the model's "
            f"{list(cfg.channels)}"
        )
    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, model)
    payload = buf.getvalue()
    header = dict(
        format="idf-nvp",
        config=cfg.to_json(),
        normalizer=norm.to_json(),
        balance_spec=spec,
        extra=extra or {},
        series=None if series is None else series.to_json(),
        payload_sha256=hashlib.sha256(payload).hexdigest(),
        payload_bytes=len(payload),
    )
    atomic_write_bytes(path, MAGIC + json.dumps(header).encode() + b"\n" + payload, mode=0o644)


def read_header(path: str) -> tuple[dict, bytes]:
    if not os.path.exists(path):
        raise FileNotFoundError(f"NVP checkpoint not found: {path}")
    with open(path, "rb") as f:
        raw = f.read()
    if not raw.startswith(MAGIC):
        raise ValueError(f"{path} is not an NVP checkpoint (bad magic header)")
    body = raw[len(MAGIC) :]
    nl = body.find(b"\n")
    if nl < 0:
        raise ValueError(f"corrupt NVP checkpoint {path}: header line is truncated")
    try:
        header = json.loads(body[:nl])
        need = ("config", "normalizer", "payload_sha256", "payload_bytes")
        if not isinstance(header, dict) or any(k not in header for k in need):
            raise ValueError("missing fields")
    except ValueError as e:
        raise ValueError(f"corrupt NVP checkpoint {path}: bad JSON header ({e})") from None
    payload = body[nl + 1 :]
    if len(payload) != header["payload_bytes"] or (
        hashlib.sha256(payload).hexdigest() != header["payload_sha256"]
    ):
        raise ValueError(
            f"corrupt NVP checkpoint {path}: weights payload does not match its "
            f"SHA-256 / size ({len(payload)} of {header['payload_bytes']} bytes)"
        )
    return header, payload


def series_of(header: dict) -> SeriesMeta | None:
    """The checkpoint's series metadata (None for checkpoints written without it)."""
    raw = header.get("series")
    return None if raw is None else SeriesMeta.from_json(raw)


def rewrite_series(path: str, series: SeriesMeta) -> None:
    """Add or replace the series metadata of an existing checkpoint (weights untouched)."""
    header, payload = read_header(path)
    if tuple(series.channels) != tuple(header["config"]["channels"]):
        raise ValueError(f"series channels {list(series.channels)} differ from {path}'s model")
    header["series"] = series.to_json()
    atomic_write_bytes(path, MAGIC + json.dumps(header).encode() + b"\n" + payload, mode=0o644)


def load(path: str) -> tuple[NVPModel, NVPConfig, Normalizer, dict | None, dict]:
    """(model, config, normalizer, balance_spec, header); ValueError if corrupt or mismatched."""
    header, payload = read_header(path)
    try:
        cfg = NVPConfig.from_json(header["config"])
        norm = Normalizer.from_json(header["normalizer"])
    except (TypeError, KeyError, ValueError) as e:
        raise ValueError(f"NVP checkpoint {path} has an invalid config/normalizer: {e}") from None
    c = cfg.num_channels
    if any(getattr(norm, k).shape != (c,) for k in ("mean", "std", "diff_std")):
        raise ValueError(f"NVP checkpoint {path}: normalizer does not match {c} channels")
    skeleton = eqx.filter_eval_shape(NVPModel, cfg, key=jax.random.key(0))  # shapes only
    try:
        model = eqx.tree_deserialise_leaves(io.BytesIO(payload), skeleton)
    except Exception as e:  # shape / dtype / count mismatch reported by equinox or numpy
        raise ValueError(
            f"NVP checkpoint {path}: weights do not match its config ({type(e).__name__}: {e})"
        ) from None
    return model, cfg, norm, header.get("balance_spec"), header
