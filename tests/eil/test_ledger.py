"""Proof ledger: hash chain, Ed25519 signatures, tamper detection, anchors, crash consistency."""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from idf_jax.eil.keys import dev_key, generate_key, load_private_key, private_key_pem
from idf_jax.eil.ledger import KEY_ENV, Ledger

KEY = bytes(range(1, 33))  # a fixed 32-byte seed (32 distinct bytes: not a placeholder)


@pytest.fixture
def ledger(tmp_path):
    lg = Ledger(str(tmp_path / "l.sqlite"), KEY)
    for i in range(5):
        lg.append("prediction", f"p{i}", {"i": i, "energy": 100.0 + i})
    yield lg
    lg.close()


def _raw(path):
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER ledger_no_update")
    conn.execute("DROP TRIGGER ledger_no_delete")
    return conn


def test_chain_and_verify(ledger):
    recs = ledger.records()
    assert [r.seq for r in recs] == [1, 2, 3, 4, 5]
    assert recs[0].prev_hash == "0" * 64
    assert all(b.prev_hash == a.hash for a, b in zip(recs, recs[1:]))
    res = ledger.verify()
    assert res.ok and res.count == 5 and res.head_hash == recs[-1].hash
    assert ledger.verify(expected_head=(3, recs[2].hash)).ok
    assert not ledger.verify(expected_head=(3, recs[1].hash)).ok


def test_duplicate_is_not_appended(ledger):
    assert ledger.append("prediction", "p1", {"x": 1}) is None
    assert ledger.append("proof", "p1", {"x": 1}) is not None
    assert ledger.append("proof", "p1", {"x": 2}) is None
    assert len(ledger) == 6 and ledger.verify().ok


def test_triggers_refuse_update_and_delete(ledger):
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        ledger._conn.execute("UPDATE ledger SET payload = '{}' WHERE seq = 2")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        ledger._conn.execute("DELETE FROM ledger WHERE seq = 2")


def test_detects_edit(ledger):
    conn = _raw(ledger.path)
    conn.execute("""UPDATE ledger SET payload = '{"energy":1.0,"i":2}' WHERE seq = 3""")
    res = ledger.verify()
    assert not res.ok and any("record 3" in e and "edited" in e for e in res.errors)


def test_detects_edit_with_recomputed_hash(ledger):
    """Re-hashing the edited record does not help: the signature needs the key."""
    from idf_jax.eil.ledger import _record_hash

    conn = _raw(ledger.path)
    seq, kind, pid, created, prev = conn.execute(
        "SELECT seq, kind, prediction_id, created, prev_hash FROM ledger WHERE seq = 5"
    ).fetchone()
    payload = '{"energy":1.0,"i":4}'
    h = _record_hash(seq, kind, pid, payload, created, prev)
    conn.execute("UPDATE ledger SET payload = ?, hash = ? WHERE seq = 5", (payload, h))
    res = ledger.verify()
    assert not res.ok and any("signature" in e for e in res.errors)


def test_detects_reorder(ledger):
    conn = _raw(ledger.path)
    rows = conn.execute(
        "SELECT seq, kind, prediction_id, payload, created, prev_hash, hash,"
        " signature FROM ledger WHERE seq IN (2, 3) ORDER BY seq"
    ).fetchall()
    conn.execute("DELETE FROM ledger WHERE seq IN (2, 3)")
    conn.execute("INSERT INTO ledger VALUES (2, ?, ?, ?, ?, ?, ?, ?)", rows[1][1:])
    conn.execute("INSERT INTO ledger VALUES (3, ?, ?, ?, ?, ?, ?, ?)", rows[0][1:])
    res = ledger.verify()
    assert not res.ok and any("prev_hash" in e for e in res.errors)


@pytest.mark.parametrize("seq", [1, 3, 5])
def test_detects_delete(ledger, seq):
    conn = _raw(ledger.path)
    conn.execute("DELETE FROM ledger WHERE seq = ?", (seq,))
    res = ledger.verify()
    assert not res.ok and res.count == 4


def test_detects_tail_truncation_with_head_rollback_forgery(ledger):
    conn = _raw(ledger.path)
    rec4 = ledger.records()[3]
    conn.execute("DELETE FROM ledger WHERE seq = 5")
    conn.execute("UPDATE ledger_head SET count = 4, hash = ?", (rec4.hash,))  # unsigned
    res = ledger.verify()
    assert not res.ok and any("head" in e for e in res.errors)


def test_wrong_key_fails_verification(tmp_path, ledger):
    other = Ledger(ledger.path, generate_key())
    res = other.verify()
    assert not res.ok and any("signature" in e for e in res.errors)
    other.close()


def test_key_configuration(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ValueError, match="no ledger signing key"):
        Ledger(str(tmp_path / "a.sqlite"))
    with pytest.raises(ValueError, match="32 bytes"):
        Ledger(str(tmp_path / "a.sqlite"), b"short")
    with pytest.raises(ValueError, match="placeholder"):
        Ledger(str(tmp_path / "a.sqlite"), "00" * 32)
    with pytest.raises(ValueError, match="HMAC"):
        Ledger(str(tmp_path / "a.sqlite"), "an old HMAC passphrase")
    with pytest.raises(ValueError, match="development key"):
        Ledger(str(tmp_path / "a.sqlite"), dev_key())
    dev = Ledger(str(tmp_path / "b.sqlite"), allow_dev_key=True)
    assert dev.is_dev_key
    dev.close()
    seed = KEY.hex()
    monkeypatch.setenv(KEY_ENV, seed)
    lg = Ledger(str(tmp_path / "c.sqlite"))
    assert lg.key_fingerprint == Ledger(str(tmp_path / "d.sqlite"), KEY).key_fingerprint
    assert not lg.is_dev_key
    lg.close()
    pem = private_key_pem(load_private_key(KEY)).decode()
    monkeypatch.setenv(KEY_ENV, pem)  # PEM text works too
    assert Ledger(str(tmp_path / "e.sqlite")).key_fingerprint == lg.key_fingerprint


def test_bad_arguments(ledger):
    with pytest.raises(ValueError, match="kind"):
        ledger.append("mint", "p", {})
    with pytest.raises(ValueError):
        ledger.append("proof", "p", {"x": float("nan")})
    assert ledger.verify().ok and len(ledger) == 5


WRITER = textwrap.dedent("""
    import sys, time
    from idf_jax.eil.ledger import Ledger
    path, key = sys.argv[1], sys.argv[2]
    lg = Ledger(path, key)
    n = 0
    def hook():
        # first 3 records commit normally; the 4th stalls inside its transaction
        if n == 3:
            print("IN_TRANSACTION", flush=True)
            time.sleep(60)
    lg._between_insert_and_head = hook
    for i in range(10):
        lg.append("prediction", f"w{i}", {"i": i})
        n += 1
        print("COMMITTED", i, flush=True)
""")


def test_writer_killed_mid_transaction_leaves_consistent_ledger(tmp_path):
    path = str(tmp_path / "crash.sqlite")
    Ledger(path, KEY).close()
    env = dict(
        os.environ,
        PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""),
        JAX_PLATFORMS="cpu",
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, path, KEY.hex()],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines = []
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.strip())
            if line.startswith("IN_TRANSACTION"):
                break
        assert lines and lines[-1] == "IN_TRANSACTION", lines
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    lg = Ledger(path, KEY)
    res = lg.verify()
    assert res.ok, res.errors
    assert res.count == 3  # the half-written 4th record was rolled back
    assert [r.prediction_id for r in lg.records()] == ["w0", "w1", "w2"]
    # and the ledger keeps working
    lg.append("prediction", "after", {"ok": True})
    assert lg.verify().ok and len(lg) == 4
    lg.close()


# -- signed anchors and offline verification ------------------------------------------


def _file_ledger(tmp_path, n=3, key=KEY):
    path = tmp_path / "ledger.sqlite"
    lg = Ledger(str(path), key)
    for i in range(n):
        lg.append("prediction", f"a{i}", {"i": i})
    return path, lg


def _public_pem(key=KEY):
    from idf_jax.eil.keys import public_key_pem

    return public_key_pem(load_private_key(key))


def test_offline_verification_needs_only_the_public_key(tmp_path):
    from idf_jax.eil.ledger import verify_ledger_file

    path, lg = _file_ledger(tmp_path)
    anchor = lg.anchor()
    lg.close()
    pub = tmp_path / "ledger.pub.pem"
    pub.write_bytes(_public_pem())
    res = verify_ledger_file(path, pub, anchor=anchor)
    assert res.ok and res.count == 3, res.errors
    # another key's public key does not verify it
    from idf_jax.eil.keys import public_key_pem

    other = verify_ledger_file(path, public_key_pem(generate_key()))
    assert not other.ok and any("signature" in e for e in other.errors)
    # an edit is found offline too
    conn = _raw(str(path))
    conn.execute("""UPDATE ledger SET payload = '{"i":7}' WHERE seq = 2""")
    conn.close()
    assert not verify_ledger_file(path, pub).ok


def test_anchor_detects_truncation_to_zero_bytes(tmp_path):
    from idf_jax.eil.ledger import verify_ledger_file

    path, lg = _file_ledger(tmp_path)
    anchor = lg.anchor()
    lg.close()
    path.write_bytes(b"")
    res = verify_ledger_file(path, _public_pem(), anchor=anchor)
    assert not res.ok and res.count == 0
    assert any("0 bytes" in e for e in res.errors)
    assert any("3" in e and "removed" in e for e in res.errors)


def test_anchor_detects_wipe(tmp_path):
    from idf_jax.eil.ledger import verify_ledger_file

    path, lg = _file_ledger(tmp_path)
    anchor = lg.anchor()
    lg.close()
    path.unlink()
    res = verify_ledger_file(path, _public_pem(), anchor=anchor)
    assert not res.ok and any("does not exist" in e for e in res.errors)
    # a fresh, empty ledger in its place is still short of the anchor
    Ledger(str(path), KEY).close()
    res = verify_ledger_file(path, _public_pem(), anchor=anchor)
    assert not res.ok and any("has 0 records" in e for e in res.errors)
    assert verify_ledger_file(path, _public_pem()).ok  # without the anchor it looks fine


def test_anchor_detects_rollback_to_an_older_copy(tmp_path):
    import shutil

    from idf_jax.eil.ledger import verify_ledger_file

    path, lg = _file_ledger(tmp_path)
    lg.close()
    shutil.copy(path, tmp_path / "old.sqlite")
    lg = Ledger(str(path), KEY)
    lg.append("proof", "a0", {"valid": True})
    lg.append("prediction", "a9", {"i": 9})
    anchor = lg.anchor()
    lg.close()
    shutil.copy(tmp_path / "old.sqlite", path)
    assert verify_ledger_file(path, _public_pem()).ok  # consistent in itself...
    res = verify_ledger_file(path, _public_pem(), anchor=anchor)
    assert not res.ok and any("rolled back" in e for e in res.errors)  # ...but not the anchor's


def test_anchor_detects_a_rewritten_record_at_its_position(tmp_path):
    path, lg = _file_ledger(tmp_path)
    anchor = lg.anchor()
    recs = lg.records()
    expected = (3, recs[1].hash)  # a (count, hash) that does not match record 3
    assert not lg.verify(expected_head=expected).ok
    assert lg.verify(anchor=anchor).ok
    lg.append("prediction", "later", {})
    assert lg.verify(anchor=anchor).ok  # growth after the anchor is fine
    lg.close()


def test_forged_or_foreign_anchors_are_refused(tmp_path):
    path, lg = _file_ledger(tmp_path)
    anchor = lg.anchor()
    forged = dict(anchor, count=1, head_hash=lg.records()[0].hash)
    res = lg.verify(anchor=forged)
    assert not res.ok and any("signature does not verify" in e for e in res.errors)
    foreign = Ledger(str(tmp_path / "other.sqlite"), generate_key()).anchor()
    res = lg.verify(anchor=foreign)
    assert not res.ok and any("another key" in e for e in res.errors)
    res = lg.verify(anchor={"count": 3})
    assert not res.ok and any("lacks fields" in e for e in res.errors)
    lg.close()


def test_anchor_files(tmp_path):
    from idf_jax.eil.anchor import latest_anchor, load_anchor, write_anchor

    path, lg = _file_ledger(tmp_path)
    assert latest_anchor(tmp_path / "anchors") is None
    p = write_anchor(tmp_path / "anchors", lg.anchor())
    assert p.name == "anchor-000000000003.json"
    assert latest_anchor(tmp_path / "anchors") == load_anchor(p)
    assert lg.verify(anchor=load_anchor(str(p))).ok
    lg.close()
