"""Sense: validation, energy representation and SQLite history."""

import math
import sqlite3

import numpy as np
import pytest

from idf_jax.eil.store import KELVIN, SourceConfig, TelemetryStore


@pytest.fixture
def store(tmp_path):
    s = TelemetryStore(str(tmp_path / "t.sqlite"), {"dc": SourceConfig("dc", interval_s=60.0)})
    yield s
    s.close()


def test_energy_representation_and_history(store, tmp_path):
    rec = store.append(
        {
            "source": "dc",
            "metrics": {"cpu": 0.5, "power": 100.0, "temp": 40.0, "outside_temp": 27.0},
            "timestamp": 0.0,
        }
    )
    assert rec.energy == pytest.approx(100.0 * 60.0)  # kW * s = kJ
    assert rec.entropy == pytest.approx(6000.0 / (27.0 + KELVIN))
    store.append(
        {
            "source": "dc",
            "metrics": {"cpu": 0.6, "power": 110, "temp": 41},
            "interval_s": 30,
            "timestamp": 5.0,
        }
    )
    h = store.history("dc")
    assert [r.metrics["cpu"] for r in h] == [0.5, 0.6]
    assert h[1].energy == pytest.approx(110 * 30)
    # default outside temperature from the source config (20 °C)
    assert h[1].entropy == pytest.approx(3300 / (20 + KELVIN))
    # persisted: a fresh connection sees both rows, journal is WAL
    conn = sqlite3.connect(str(tmp_path / "t.sqlite"))
    assert conn.execute("SELECT COUNT(*) FROM readings").fetchone()[0] == 2
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


BAD = [
    ({"source": "nope", "metrics": {"cpu": 0.5, "power": 1, "temp": 20}}, "unknown source"),
    ({"source": "dc", "metrics": {"cpu": 0.5, "power": 1}}, "required"),
    (
        {"source": "dc", "metrics": {"cpu": 0.5, "power": 1, "temp": 20, "volts": 3}},
        "unknown channel",
    ),
    ({"source": "dc", "metrics": {"cpu": "high", "power": 1, "temp": 20}}, "number"),
    ({"source": "dc", "metrics": {"cpu": True, "power": 1, "temp": 20}}, "number"),
    ({"source": "dc", "metrics": {"cpu": math.nan, "power": 1, "temp": 20}}, "finite"),
    ({"source": "dc", "metrics": {"cpu": 0.5, "power": math.inf, "temp": 20}}, "finite"),
    ({"source": "dc", "metrics": {"cpu": 85, "power": 1, "temp": 20}}, "plausible"),
    ({"source": "dc", "metrics": {"cpu": 0.5, "power": -3, "temp": 20}}, "plausible"),
    ({"source": "dc", "metrics": {"cpu": 0.5, "power": 1, "temp": 900}}, "plausible"),
    (
        {"source": "dc", "metrics": {"cpu": 0.5, "power": 1, "temp": 20}, "interval_s": 0},
        "interval_s",
    ),
    ({"source": "dc", "metrics": {}}, "non-empty"),
    ({"source": "dc", "metrics": {"cpu": 0.5, "power": 1, "temp": 20}, "extra": 1}, "unknown"),
    (
        {"source": "dc", "metrics": {"cpu": 0.5, "power": 1, "temp": 20, "servers_on": 1e6}},
        "exceeds",
    ),
    ("not a dict", "dict"),
]


@pytest.mark.parametrize("reading,match", BAD)
def test_bad_reading_rejected_and_nothing_stored(store, reading, match):
    with pytest.raises(ValueError, match=match):
        store.append(reading)
    assert store.count() == 0


def test_numpy_scalars_accepted(store):
    rec = store.append(
        {"source": "dc", "metrics": {"cpu": np.float32(0.25), "power": np.int64(7), "temp": 30.0}}
    )
    assert rec.metrics["power"] == 7.0
    with pytest.raises(ValueError, match="scalar"):
        store.append({"source": "dc", "metrics": {"cpu": np.ones(2), "power": 7, "temp": 3}})
    assert store.count("dc") == 1


def test_source_config_checks():
    with pytest.raises(ValueError):
        SourceConfig("x", num_servers=0)
    with pytest.raises(ValueError):
        SourceConfig("x", idle_kw=0.3, peak_kw=0.2)
    with pytest.raises(ValueError, match="unknown channels"):
        SourceConfig("x", channels=("cpu", "power", "temp", "bogus"))


def test_recent_history_from_memory_equals_the_database(store, tmp_path):
    for t in range(3):
        store.append(
            {
                "source": "dc",
                "timestamp": float(t),
                "metrics": {"cpu": 0.1 * t, "power": 100.0 + t, "temp": 40.0},
            }
        )
    assert [r.timestamp for r in store.history("dc", limit=2)] == [1.0, 2.0]  # seeds the tail
    for t in range(3, 80):  # past the in-memory tail's length
        store.append(
            {
                "source": "dc",
                "timestamp": float(t),
                "metrics": {"cpu": 0.01 * t, "power": 100.0 + t, "temp": 40.0},
            }
        )
    fresh = TelemetryStore(str(tmp_path / "t.sqlite"), store.sources)
    try:
        for limit in (1, 17, 64, 65, None):
            a, b = store.history("dc", limit=limit), fresh._query("dc", limit)
            assert [(r.timestamp, r.metrics, r.energy, r.entropy) for r in a] == [
                (r.timestamp, r.metrics, r.energy, r.entropy) for r in b
            ]
        with pytest.raises(ValueError, match="positive"):
            store.history("dc", limit=0)
    finally:
        fresh.close()


def test_time_order_duplicates_and_gaps(tmp_path):
    s = TelemetryStore(str(tmp_path / "t.sqlite"), {"dc": SourceConfig("dc", interval_s=900)})
    m = {"cpu": 0.5, "power": 100.0, "temp": 40.0}
    assert s.append({"source": "dc", "metrics": m, "timestamp": 0.0}).flags == ()
    assert s.append({"source": "dc", "metrics": m, "timestamp": 900.0}).flags == ()
    # redelivered: nothing stored, flagged
    assert s.append({"source": "dc", "metrics": m, "timestamp": 900.0}).flags == ("duplicate",)
    assert s.count("dc") == 2
    # older than the latest: rejected, naming both times
    with pytest.raises(ValueError, match="older than the latest stored one \\(900\\)"):
        s.append({"source": "dc", "metrics": m, "timestamp": 450.0})
    # three intervals missing: stored and flagged
    rec = s.append({"source": "dc", "metrics": m, "timestamp": 4500.0})
    assert rec.flags == ("gap",) and s.count("dc") == 3
    s.close()
