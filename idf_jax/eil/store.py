"""Sense: validate telemetry readings and keep a per-source history in SQLite.

A reading is ``{'source': str, 'metrics': {channel: number}}`` with optional
``'timestamp'`` (seconds since the epoch) and ``'interval_s'`` (seconds the reading
covers). Channels and their units (plausible ranges are enforced):

=================  ======================================  ===============
channel            meaning                                 unit, range
=================  ======================================  ===============
cpu (required)     mean utilisation of the powered servers fraction [0, 1]
power (required)   total facility power                    kW [0, 1e6]
temp (required)    mean server (CPU) temperature           °C [-20, 130]
temp_0 .. temp_63  per-rack temperatures along a row       °C [-20, 130]
inlet_temp         cold-aisle / room supply temperature    °C [-20, 60]
outside_temp       outside dry-bulb temperature            °C [-60, 60]
it_power           IT (server) power                       kW [0, 1e6]
cooling_power      cooling plant power                     kW [0, 1e6]
setpoint           cooling supply setpoint                 °C [5, 40]
power_cap          per-server power cap                    fraction [0.1, 1]
servers_on         powered servers                         count [0, 1e7]
demand             offered load, share of full fleet       fraction [0, 2]
=================  ======================================  ===============

Energy representation (stored with every reading): over the interval ``dt`` the
facility consumes ``energy = power * dt`` [kJ]; all of it leaves the building as heat
rejected at the outside temperature ``T_out``, carrying entropy
``entropy = energy / T_out`` [kJ/K] (Clausius, dS = dQ/T, T in kelvin). When
``outside_temp`` is not reported, the source's configured default is used.

Storage: one SQLite database (WAL journal), table ``readings``; each accepted reading is
written in its own transaction. A reading is identified by (source, timestamp): storing one
again (a redelivered message) writes nothing, so ingestion may be at-least-once. The store
uses ``synchronous=NORMAL`` by default (atomic, survives a killed process; a power cut may
drop the last readings), the proof ledger ``FULL``; pass ``synchronous='FULL'`` for fully
durable telemetry. A rejected reading raises ``ValueError`` naming the problem and writes
nothing.
"""

from __future__ import annotations

import collections
import json
import math
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..nvp.physics import KELVIN, P_IDLE_KW, P_PEAK_KW

__all__ = [
    "CHANNELS",
    "REQUIRED_CHANNELS",
    "ChannelSpec",
    "SourceConfig",
    "EnergyReading",
    "TelemetryStore",
    "validate_reading",
    "to_energy",
    "connect",
    "KELVIN",
]


@dataclass(frozen=True)
class ChannelSpec:
    """A telemetry channel: its unit and the plausible closed range [lo, hi]."""

    unit: str
    lo: float
    hi: float
    description: str = ""


CHANNELS: dict[str, ChannelSpec] = {
    "cpu": ChannelSpec("fraction", 0.0, 1.0, "mean utilisation of powered servers"),
    "power": ChannelSpec("kW", 0.0, 1e6, "total facility power"),
    "temp": ChannelSpec("degC", -20.0, 130.0, "mean server (CPU) temperature"),
    "inlet_temp": ChannelSpec("degC", -20.0, 60.0, "cold-aisle supply temperature"),
    "outside_temp": ChannelSpec("degC", -60.0, 60.0, "outside dry-bulb temperature"),
    "it_power": ChannelSpec("kW", 0.0, 1e6, "IT (server) power"),
    "cooling_power": ChannelSpec("kW", 0.0, 1e6, "cooling plant power"),
    "cooling_load": ChannelSpec("kW", 0.0, 1e6, "heat removed by the cooling plant"),
    "setpoint": ChannelSpec("degC", 5.0, 40.0, "cooling supply setpoint"),
    "power_cap": ChannelSpec("fraction", 0.1, 1.0, "per-server power cap"),
    "servers_on": ChannelSpec("count", 0.0, 1e7, "powered servers"),
    "demand": ChannelSpec("fraction", 0.0, 2.0, "offered load as share of full fleet"),
}
# rack temperatures along a row (temp_0 ... temp_63), °C
CHANNELS.update(
    {f"temp_{i}": ChannelSpec("degC", -20.0, 130.0, f"rack {i} temperature") for i in range(64)}
)
REQUIRED_CHANNELS = ("cpu", "power", "temp")


@dataclass(frozen=True)
class SourceConfig:
    """Static facts about one telemetry source (a datacenter).

    Attributes:
        name: the source id used in readings.
        num_servers: servers installed.
        idle_kw, peak_kw: per-server power at 0 and 100 % utilisation [kW].
        interval_s: default seconds one reading covers (decision horizon) [s].
        outside_temp: default outside temperature when not reported [°C].
        setpoint: default cooling setpoint when not reported [°C].
        temp_max: default upper limit on predicted server temperature [°C].
        demand_sigma: floor of the demand noise used for the uptime constraint
            [share of all servers per interval].
        plant: the planning model (`idf_jax.eil.plant.PlantModel`); None builds a
            single-zone model from the fields above (`SourceConfig.plant_model`).
        channels: channels this source may report (defaults to all known ones).
    """

    name: str
    num_servers: int = 3000
    idle_kw: float = P_IDLE_KW
    peak_kw: float = P_PEAK_KW
    interval_s: float = 900.0
    outside_temp: float = 20.0
    setpoint: float = 22.0
    temp_max: float = 85.0
    demand_sigma: float = 0.04
    plant: Any = None
    channels: tuple[str, ...] = tuple(CHANNELS)

    def plant_model(self):
        """The planning model: `plant` if given, else a one-zone hall of `num_servers`
        servers whose server temperature runs ~P_IT/UA above the supply air."""
        if self.plant is not None:
            return self.plant
        from .plant import PlantModel

        n = self.num_servers
        ua = 5.0 * n / 1000.0  # kW/K: ~50 K rise at full load (0.25 kW/server)
        return PlantModel(
            num_racks=1,
            servers_per_rack=n,
            dt=float(self.interval_s),
            p_idle_kw=self.idle_kw,
            p_peak_kw=self.peak_kw,
            heat_capacity_kj_per_k=1800.0 * ua,
            ua_kw_per_k=ua,
            envelope_kw_per_k=0.05 * ua,
            cooling_capacity_kw=1.5 * n * self.peak_kw,
            fan_kw=0.01 * n * self.peak_kw,
            demand_sigma=self.demand_sigma,
        )

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("source name must be a non-empty string")
        if self.num_servers <= 0:
            raise ValueError(f"num_servers must be positive, got {self.num_servers}")
        if not (0 <= self.idle_kw < self.peak_kw):
            raise ValueError("need 0 <= idle_kw < peak_kw")
        if not (self.interval_s > 0):
            raise ValueError(f"interval_s must be positive, got {self.interval_s}")
        unknown = set(self.channels) - set(CHANNELS)
        if unknown:
            raise ValueError(f"unknown channels in source config: {sorted(unknown)}")
        missing = set(REQUIRED_CHANNELS) - set(self.channels)
        if missing:
            raise ValueError(f"source config must allow required channels {sorted(missing)}")


@dataclass(frozen=True)
class EnergyReading:
    """One validated reading and its energy representation."""

    source: str
    timestamp: float
    interval_s: float
    metrics: dict[str, float] = field(default_factory=dict)
    energy: float = 0.0  # kJ consumed over the interval
    entropy: float = 0.0  # kJ/K carried to the outside as rejected heat
    # what `TelemetryStore.append` noticed (not stored): "duplicate" (this (source,
    # timestamp) was stored before; nothing written), "gap" (more than 1.5 intervals since
    # the previous reading of the source)
    flags: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "timestamp": self.timestamp,
            "interval_s": self.interval_s,
            "metrics": dict(self.metrics),
            "energy": self.energy,
            "entropy": self.entropy,
            "flags": list(self.flags),
        }


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        raise ValueError(f"{name} must be a number, got boolean {value!r}")
    if not isinstance(value, int | float):
        # numpy / jax scalars: accept anything with a real __float__ that is not a string
        if isinstance(value, str | bytes) or not hasattr(value, "__float__"):
            raise ValueError(f"{name} must be a number, got {type(value).__name__} {value!r}")
        try:
            if getattr(value, "shape", ()) not in ((), None):
                raise ValueError(f"{name} must be a scalar, got shape {value.shape}")
        except AttributeError:
            pass
    try:
        v = float(value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be a number, got {value!r}") from e
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    return v


def validate_reading(reading: Any, sources: dict[str, SourceConfig]) -> tuple[SourceConfig, dict]:
    """Check a reading; return its source config and the cleaned metrics (floats).

    Raises ValueError naming the first problem found (unknown source or channel,
    missing required channel, non-numeric, non-finite or implausible value).
    """
    if not isinstance(reading, dict):
        raise ValueError(f"reading must be a dict, got {type(reading).__name__}")
    extra = set(reading) - {"source", "metrics", "timestamp", "interval_s"}
    if extra:
        raise ValueError(f"unknown reading keys {sorted(extra)}")
    source = reading.get("source")
    if not isinstance(source, str):
        raise ValueError("reading['source'] must be a string")
    if source not in sources:
        raise ValueError(f"unknown source {source!r}; known: {sorted(sources)}")
    cfg = sources[source]
    metrics = reading.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise ValueError("reading['metrics'] must be a non-empty dict of channel -> number")
    clean: dict[str, float] = {}
    for name, value in metrics.items():
        if name not in CHANNELS:
            raise ValueError(f"unknown channel {name!r}; known: {sorted(CHANNELS)}")
        if name not in cfg.channels:
            raise ValueError(f"channel {name!r} is not configured for source {source!r}")
        v = _number(f"metric {name!r}", value)
        spec = CHANNELS[name]
        if not (spec.lo <= v <= spec.hi):
            raise ValueError(
                f"metric {name!r}={v} is outside the plausible range "
                f"[{spec.lo}, {spec.hi}] {spec.unit}"
            )
        clean[name] = v
    missing = [c for c in REQUIRED_CHANNELS if c not in clean]
    if missing:
        raise ValueError(f"reading lacks required channels {missing}")
    if "servers_on" in clean and clean["servers_on"] > cfg.num_servers:
        raise ValueError(
            f"servers_on={clean['servers_on']} exceeds the {cfg.num_servers} servers of {source!r}"
        )
    for key in ("timestamp", "interval_s"):
        if key in reading:
            v = _number(key, reading[key])
            if key == "interval_s" and not (0 < v <= 86400):
                raise ValueError(f"interval_s must be in (0, 86400] s, got {v}")
            if key == "timestamp" and v < 0:
                raise ValueError(f"timestamp must be >= 0, got {v}")
    return cfg, clean


def to_energy(
    metrics: dict[str, float], cfg: SourceConfig, interval_s: float
) -> tuple[float, float]:
    """Energy [kJ] = power [kW] * dt [s]; entropy [kJ/K] = energy / T_out [K]."""
    energy = metrics["power"] * interval_s
    t_out = metrics.get("outside_temp", cfg.outside_temp) + KELVIN
    return energy, energy / t_out


def connect(path: str, synchronous: str = "FULL") -> sqlite3.Connection:
    """Open a SQLite connection in WAL mode with explicit transactions.

    ``synchronous='FULL'`` fsyncs the WAL at every commit (durable across power loss);
    ``'NORMAL'`` is atomic and survives a killed process but may lose the last commits
    on power loss (SQLite docs, "WAL mode").
    """
    if synchronous not in ("FULL", "NORMAL"):
        raise ValueError(f"synchronous must be 'FULL' or 'NORMAL', got {synchronous!r}")
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if path != ":memory:" and mode.lower() != "wal":
        raise RuntimeError(f"could not enable WAL journal on {path!r} (got {mode!r})")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    return conn


_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    timestamp REAL NOT NULL,
    interval_s REAL NOT NULL,
    metrics TEXT NOT NULL,
    energy REAL NOT NULL,
    entropy REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS readings_source ON readings(source, id);
"""
# (source, timestamp) identifies a reading; a database written before this index existed
# may hold duplicates, and then keeps a plain index (appends still skip a known pair)
_UNIQUE = "CREATE UNIQUE INDEX IF NOT EXISTS readings_source_ts ON readings(source, timestamp)"
_PLAIN = "CREATE INDEX IF NOT EXISTS readings_source_ts_plain ON readings(source, timestamp)"


_TAIL = 64  # readings per source kept in memory for `history(limit <= _TAIL)`


class TelemetryStore:
    """Per-source reading history in SQLite (one transaction per reading)."""

    def __init__(self, path: str, sources: dict[str, SourceConfig], *, synchronous: str = "NORMAL"):
        self.path = path
        self.sources = dict(sources)
        self._lock = threading.Lock()
        self._conn = connect(path, synchronous)
        self._conn.executescript(_SCHEMA)
        try:
            self._conn.execute(_UNIQUE)
        except sqlite3.IntegrityError:
            self._conn.execute(_PLAIN)
        self._last: dict[str, EnergyReading] = {}
        # the last _TAIL readings per source, read once from the database and then kept up to
        # date by `append` (this store is its sources' writer, as `latest` already assumes):
        # a planner's window no longer costs a query and JSON decoding per decision
        self._tail: dict[str, collections.deque] = {}

    def append(self, reading: dict) -> EnergyReading:
        """Validate and store one reading; return its energy representation. A reading of a
        (source, timestamp) already stored is not stored again (flag ``duplicate``); one
        older than the source's latest is rejected (ValueError: out of order); one more than
        1.5 intervals after the previous is stored with the flag ``gap``."""
        cfg, metrics = validate_reading(reading, self.sources)
        interval = float(reading.get("interval_s", cfg.interval_s))
        ts = float(reading.get("timestamp", time.time()))
        energy, entropy = to_energy(metrics, cfg, interval)
        if self.has(cfg.name, ts):  # redelivered: idempotent, flagged
            return EnergyReading(
                cfg.name, ts, interval, metrics, energy, entropy, flags=("duplicate",)
            )
        last = self.latest(cfg.name)
        flags: tuple[str, ...] = ()
        if last is not None:
            if ts < last.timestamp:
                raise ValueError(
                    f"reading of {cfg.name!r} at timestamp {ts:g} is older than the latest "
                    f"stored one ({last.timestamp:g}): out-of-order readings are rejected"
                )
            if ts - last.timestamp > 1.5 * last.interval_s:
                flags = ("gap",)
        rec = EnergyReading(cfg.name, ts, interval, metrics, energy, entropy, flags)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                cur = self._conn.execute(
                    "INSERT INTO readings (source, timestamp, interval_s, metrics, energy, entropy)"
                    " SELECT ?, ?, ?, ?, ?, ? WHERE NOT EXISTS"
                    " (SELECT 1 FROM readings WHERE source = ? AND timestamp = ?)",
                    (cfg.name, ts, interval, json.dumps(metrics, sort_keys=True), energy, entropy)
                    + (cfg.name, ts),
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            if cur.rowcount == 1:
                self._last[cfg.name] = rec
                if cfg.name in self._tail:
                    self._tail[cfg.name].append(rec)
        return rec

    def has(self, source: str, timestamp: float) -> bool:
        """Whether a reading of `source` at `timestamp` is stored."""
        with self._lock:
            row = self._conn.execute(
                "SELECT 1 FROM readings WHERE source = ? AND timestamp = ? LIMIT 1",
                (source, float(timestamp)),
            ).fetchone()
        return row is not None

    def history(self, source: str, limit: int | None = None) -> list[EnergyReading]:
        """The last `limit` readings of `source` (all when None), oldest first."""
        if source not in self.sources:
            raise ValueError(f"unknown source {source!r}")
        if limit is not None and 0 < int(limit) <= _TAIL:
            with self._lock:
                tail = self._tail.get(source)
                if tail is None:
                    tail = self._tail[source] = collections.deque(
                        self._query(source, _TAIL), maxlen=_TAIL
                    )
                return list(tail)[-int(limit) :]
        with self._lock:
            return self._query(source, limit)

    def _query(self, source: str, limit: int | None) -> list[EnergyReading]:
        q = "SELECT source, timestamp, interval_s, metrics, energy, entropy FROM readings"
        q += " WHERE source = ? ORDER BY id DESC"
        args: tuple = (source,)
        if limit is not None:
            if int(limit) <= 0:
                raise ValueError(f"limit must be positive, got {limit}")
            q += " LIMIT ?"
            args = (source, int(limit))
        rows = self._conn.execute(q, args).fetchall()
        return [EnergyReading(s, t, dt, json.loads(m), e, S) for (s, t, dt, m, e, S) in rows[::-1]]

    def between(self, source: str, t0: float, t1: float) -> list[EnergyReading]:
        """The readings of `source` stamped in [t0, t1], by timestamp (then arrival)."""
        if source not in self.sources:
            raise ValueError(f"unknown source {source!r}")
        with self._lock:
            rows = self._conn.execute(
                "SELECT source, timestamp, interval_s, metrics, energy, entropy FROM readings"
                " WHERE source = ? AND timestamp >= ? AND timestamp <= ? ORDER BY timestamp, id",
                (source, float(t0), float(t1)),
            ).fetchall()
        return [EnergyReading(s, t, dt, json.loads(m), e, S) for (s, t, dt, m, e, S) in rows]

    def latest(self, source: str) -> EnergyReading | None:
        if source in self._last:
            return self._last[source]
        h = self.history(source, limit=1)
        return h[-1] if h else None

    def count(self, source: str | None = None) -> int:
        with self._lock:
            if source is None:
                return self._conn.execute("SELECT COUNT(*) FROM readings").fetchone()[0]
            return self._conn.execute(
                "SELECT COUNT(*) FROM readings WHERE source = ?", (source,)
            ).fetchone()[0]

    def close(self):
        with self._lock:
            self._conn.close()
