"""Series metadata: round trip, mismatch messages, physical and training-range checks, time."""

import numpy as np
import pytest

from idf_jax.nvp import checkpoint
from idf_jax.nvp.metadata import (
    SeriesMeta,
    check_matches,
    check_physical,
    check_time_order,
    out_of_training_range,
)

X = np.array([[0.2, 500.0, 20.0], [0.8, 900.0, 24.0]])
CH = ("cpu", "power", "temp")


def _meta():
    return SeriesMeta.from_data(
        [X], CH, {"cpu": "fraction", "power": "kW", "temp": "degC"}, 900.0, controls=()
    )


def test_from_data_measures_ranges_and_round_trips():
    m = _meta()
    assert m.ranges == {"cpu": (0.2, 0.8), "power": (500.0, 900.0), "temp": (20.0, 24.0)}
    assert SeriesMeta.from_json(m.to_json()) == m


def test_mismatch_names_every_problem():
    m = SeriesMeta.from_data([X], CH, {"cpu": "fraction", "power": "W", "temp": "degF"}, 300.0)
    src = {"cpu": "fraction", "power": "kW", "temp": "degC"}
    with pytest.raises(ValueError) as e:
        check_matches(m, units=src, interval_s=900.0, what="source 'row-1'")
    msg = str(e.value)
    assert "'power' is in W, source 'row-1' reports kW" in msg
    assert "'temp' is in degF" in msg and "300 s" in msg and "900 s" in msg
    check_matches(_meta(), units=src, interval_s=900.0)  # a match passes
    with pytest.raises(ValueError, match="no series metadata"):
        check_matches(None, units=src, interval_s=900.0)


def test_physical_and_training_range_checks():
    m = _meta()
    check_physical(m, X, CH)
    with pytest.raises(ValueError, match="'cpu' at step 0 is 1.5 fraction"):
        check_physical(m, np.array([[1.5, 600.0, 22.0]]), CH)
    assert out_of_training_range(m, np.array([[0.5, 700.0, 22.0]]), CH) == []
    assert out_of_training_range(m, np.array([[0.5, 700.0, 30.0]]), CH) == ["temp"]


@pytest.mark.parametrize(
    "t, match",
    [
        ([0, 900, 900, 2700], "duplicate timestamp at row 2"),
        ([0, 1800, 900, 2700], "out of order at row 2"),
        ([0, 900, 2700, 3600], "uneven sampling at row 2"),
    ],
)
def test_time_order_errors(t, match):
    with pytest.raises(ValueError, match=match):
        check_time_order(np.array(t, float), 900.0)


def test_time_order_infers_interval():
    assert check_time_order(np.arange(5) * 300.0) == 300.0


def test_bad_metadata_is_refused():
    with pytest.raises(ValueError, match="interval_s must be > 0"):
        SeriesMeta(CH, {c: "kW" for c in CH}, 0.0)
    with pytest.raises(ValueError, match="controls"):
        SeriesMeta(CH, {c: "kW" for c in CH}, 60.0, controls=("setpoint",))
    with pytest.raises(ValueError, match="units lacks"):
        SeriesMeta(CH, {"cpu": "fraction"}, 60.0)


def test_rewrite_series_keeps_weights(tmp_path):
    import os

    # a three-channel checkpoint (the packaged one before the setpoint became an input)
    v1 = os.path.join(os.path.dirname(__file__), "data", "rack_fixed_setpoint_v1.ckpt")
    path = tmp_path / "m.ckpt"
    with open(v1, "rb") as f:
        path.write_bytes(f.read())
    h0, p0 = checkpoint.read_header(str(path))
    m = SeriesMeta.from_data([X], CH, {"cpu": "fraction", "power": "W", "temp": "degF"}, 60.0)
    checkpoint.rewrite_series(str(path), m)
    h1, p1 = checkpoint.read_header(str(path))
    assert p1 == p0 and checkpoint.series_of(h1) == m


def test_read_series_csv_checks_time(tmp_path):
    from idf_jax.nvp.data import read_series_csv

    p = tmp_path / "a.csv"
    p.write_text("timestamp,cpu\n2026-01-01T00:00:00,0.1\n2026-01-01T00:15:00,0.2\n")
    x, ch, step = read_series_csv(p, ["cpu"])
    assert step == 900.0 and x.shape == (2, 1)
    p.write_text("timestamp,cpu\n900,0.1\n0,0.2\n")
    with pytest.raises(ValueError, match="out of order"):
        read_series_csv(p, ["cpu"])
    p.write_text("cpu\n0.1\n0.2\n")
    with pytest.raises(ValueError, match="no 'timestamp' column"):
        read_series_csv(p, ["cpu"])
    assert read_series_csv(p, ["cpu"], interval_s=60.0)[2] == 60.0
