"""State directory, signing keys, anchors and the ledger across restarts; weak keys; --dev."""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import stat

import pytest
from _runtime_helpers import API_KEY
from fastapi.testclient import TestClient

from idf_jax.runtime.cli import main
from idf_jax.runtime.service import ServiceConfig, create_app, load_config
from idf_jax.runtime.state import ENV, ensure_signing_key, state_dir

AUTH = {"Authorization": f"Bearer {API_KEY}"}
READING = {"source": "datacenter-01", "metrics": {"cpu": 0.85, "power": 920, "temp": 76}}


def _app(state, **kw):
    return create_app(
        ServiceConfig(api_keys=(API_KEY,), nvp_model_path=None, state_dir=str(state), **kw)
    )


def _decide(client, n=1):
    for _ in range(n):
        assert client.post("/v1/eil/sense", json=READING, headers=AUTH).status_code == 200
        r = client.post("/v1/eil/act", json={"goal": "minimize_energy"}, headers=AUTH)
        assert r.status_code == 200, r.text


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


# -- the state directory and the key -----------------------------------------------------


def test_state_dir_precedence_and_mode(tmp_path):
    explicit, from_env, from_cfg = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert state_dir(explicit, env={ENV: str(from_env)}) == explicit
    assert state_dir({"state_dir": str(from_cfg)}, env={ENV: str(from_env)}) == from_env
    assert state_dir({"state_dir": str(from_cfg)}, env={}) == from_cfg
    assert _mode(explicit) == 0o700
    default = state_dir(env={"XDG_STATE_HOME": str(tmp_path / "xdg")})
    assert default == tmp_path / "xdg" / "idf-jax" and default.is_dir()
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="not a folder"):
        state_dir(tmp_path / "file")


def test_signing_key_is_created_once_with_mode_0600(tmp_path):
    key, created = ensure_signing_key(tmp_path)
    assert created
    pem = tmp_path / "keys" / "ledger_ed25519.pem"
    assert _mode(pem) == 0o600 and _mode(pem.parent) == 0o700
    assert (
        (tmp_path / "keys" / "ledger_ed25519.pub.pem")
        .read_text()
        .startswith("-----BEGIN PUBLIC KEY")
    )
    again, created = ensure_signing_key(tmp_path)
    assert not created and again.public_key() == key.public_key()
    os.chmod(pem, 0o644)
    with pytest.raises(ValueError, match="others may read it"):
        ensure_signing_key(tmp_path)


# -- restart, anchors, alerts ------------------------------------------------------------


def test_restart_keeps_the_ledger_and_verifies_it(tmp_path, caplog):
    state = tmp_path / "state"
    with TestClient(_app(state)) as client:
        _decide(client, 2)
        first = client.get("/v1/ledger/verify", headers=AUTH).json()
        assert first["ok"] and first["count"] == 2 and not first["dev_key"]
        assert first["anchor"] == "published"  # checked against the service's own anchor
    assert (state / "eil.sqlite").exists()  # nothing deleted on shutdown
    assert _mode(state / "keys" / "ledger_ed25519.pem") == 0o600
    latest = json.loads((state / "anchors" / "latest.json").read_text())
    assert latest["count"] == 2
    with caplog.at_level(logging.INFO, logger="idf_jax"):
        with TestClient(_app(state)) as client:
            v = client.get("/v1/ledger/verify", headers=AUTH).json()
            assert (
                v["ok"] and v["count"] == 2 and v["public_key_sha256"] == first["public_key_sha256"]
            )
            _decide(client)
            assert client.get("/v1/ledger/verify", headers=AUTH).json()["count"] == 3
    assert "VERIFICATION FAILED" not in caplog.text


def _break(state, how, old_copy):
    db = state / "eil.sqlite"
    for suffix in ("-wal", "-shm"):
        if os.path.exists(f"{db}{suffix}"):
            os.remove(f"{db}{suffix}")
    if how == "truncate":
        db.write_bytes(b"")
    elif how == "wipe":
        db.unlink()
    else:
        shutil.copy(old_copy, db)


@pytest.mark.parametrize("how", ["truncate", "wipe", "rollback"])
def test_tampering_between_runs_raises_the_alert(tmp_path, caplog, how):
    state = tmp_path / "state"
    with TestClient(_app(state)) as client:
        _decide(client)
    shutil.copy(state / "eil.sqlite", tmp_path / "old.sqlite")
    with TestClient(_app(state)) as client:
        _decide(client, 2)
    _break(state, how, tmp_path / "old.sqlite")
    with caplog.at_level(logging.ERROR, logger="idf_jax"):
        with TestClient(_app(state)) as client:
            assert client.get("/readyz").status_code == 200  # serving, but alerting
            v = client.get("/v1/ledger/verify", headers=AUTH).json()
            assert not v["ok"] and any("removed" in e for e in v["errors"]), v
            r = client.get("/v1/ledger/anchor", headers=AUTH)
            assert r.status_code == 409  # never signs over the damage
            text = client.get("/metrics", headers=AUTH).text
    assert 'idf_ledger_verification_failures_total{where="startup"} 1.0' in text
    assert 'idf_ledger_verification_failures_total{where="request"} 1.0' in text
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert any("VERIFICATION FAILED (startup)" in r.getMessage() for r in errors)
    assert json.loads((state / "anchors" / "latest.json").read_text())["count"] == 3


def test_verify_route_checks_a_given_anchor(tmp_path):
    state = tmp_path / "state"
    with TestClient(_app(state)) as client:
        _decide(client, 2)
        anchor = client.get("/v1/ledger/anchor", headers=AUTH).json()
        assert anchor["count"] == 2 and anchor["signature"]
        text = json.dumps(anchor)
        v = client.get("/v1/ledger/verify", params={"anchor": text}, headers=AUTH).json()
        assert v["ok"] and v["anchor"] == "request"
        b64 = base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
        assert client.get("/v1/ledger/verify", params={"anchor": b64}, headers=AUTH).json()["ok"]
        forged = json.dumps(dict(anchor, count=5))
        r = client.get("/v1/ledger/verify", params={"anchor": forged}, headers=AUTH)
        assert r.status_code == 422 and "signature" in r.text  # the client's error, no alert
        r = client.get("/v1/ledger/verify", params={"anchor": "{nope"}, headers=AUTH)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "anchor"]
        pem = client.get("/v1/ledger/public-key", headers=AUTH).text
    # the same key over a wiped database: the anchor shows the loss
    (state / "eil.sqlite").unlink()
    shutil.rmtree(state / "anchors")
    with TestClient(_app(state)) as client:
        v = client.get("/v1/ledger/verify", params={"anchor": text}, headers=AUTH).json()
        assert not v["ok"] and any("has 0 records" in e for e in v["errors"])
        assert client.get("/v1/ledger/public-key", headers=AUTH).text == pem


def test_offline_cli_verification_with_the_public_key_only(tmp_path, capsys):
    state = tmp_path / "state"
    with TestClient(_app(state)) as client:
        _decide(client, 2)
        anchor = client.get("/v1/ledger/anchor", headers=AUTH).json()
        pem = client.get("/v1/ledger/public-key", headers=AUTH).text
    (tmp_path / "pub.pem").write_text(pem)
    (tmp_path / "anchor.json").write_text(json.dumps(anchor))
    copy = tmp_path / "copy.sqlite"
    shutil.copy(state / "eil.sqlite", copy)
    args = ["ledger", "verify", str(copy), "--public-key", str(tmp_path / "pub.pem")]
    assert main([*args, "--anchor", str(tmp_path / "anchor.json")]) == 0
    assert "ledger OK: 2 records" in capsys.readouterr().out
    assert main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 2
    copy.write_bytes(b"")  # truncated to 0 bytes
    assert main(args) == 1
    assert main([*args, "--anchor", str(tmp_path / "anchor.json")]) == 1
    err = capsys.readouterr().err
    assert "0 bytes" in err and "FAILED" in err
    assert main(["ledger", "keygen", "--out", str(tmp_path / "k" / "new.pem")]) == 0
    assert _mode(tmp_path / "k" / "new.pem") == 0o600
    assert main(["ledger", "keygen", "--out", str(tmp_path / "k" / "new.pem")]) == 2


# -- dev mode and weak keys --------------------------------------------------------------


def test_dev_flag_is_announced_and_kept_apart(tmp_path, caplog):
    state = tmp_path / "state"
    with caplog.at_level(logging.WARNING, logger="idf_jax"):
        with TestClient(_app(state, dev=True)) as client:
            v = client.get("/v1/ledger/verify", headers=AUTH).json()
    assert v["dev_key"] is True
    assert any(
        r.levelno == logging.WARNING and "PUBLIC development key" in r.getMessage()
        for r in caplog.records
    )
    assert (state / "eil-dev.sqlite").exists() and not (state / "keys").exists()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="idf_jax"):
        with TestClient(_app(state)) as client:  # without --dev: its own key, no warning
            assert client.get("/v1/ledger/verify", headers=AUTH).json()["dev_key"] is False
    assert "development key" not in caplog.text
    with pytest.raises(ValueError, match="only used with --dev"):
        with TestClient(_app(state, eil={"allow_dev_key": True})):
            pass


@pytest.mark.parametrize(
    "key, why",
    [
        ("short-key-1", "characters long"),
        ("a" * 40, "distinct characters"),
        ("change-me-please-change-me-please-1234", "placeholder"),
        ("0123456789abcdefghijklmnopqrstuv wxyz", "whitespace"),
    ],
)
def test_weak_api_keys_are_refused_with_the_reason(key, why, capsys, monkeypatch):
    with pytest.raises(ValueError, match=why):
        ServiceConfig(api_keys=(key,))
    with pytest.raises(ValueError, match=why):
        load_config({}, env={"IDF_API_KEYS": key})
    monkeypatch.setenv("IDF_API_KEYS", key)
    assert main(["serve", "--port", "1"]) == 1
    err = capsys.readouterr().err
    assert why in err and key not in err  # the reason, never the key


def test_tampered_state_key_file_is_refused(tmp_path):
    state = tmp_path / "state"
    ensure_signing_key(state)
    pem = state / "keys" / "ledger_ed25519.pem"
    os.chmod(pem, 0o660)  # group bits (a volume's fsGroup): taken away again
    with TestClient(_app(state)) as client:
        assert client.get("/v1/ledger/verify", headers=AUTH).json()["ok"]
    assert _mode(pem) == 0o600
    os.chmod(pem, 0o604)
    with pytest.raises(ValueError, match="others may read it"):
        with TestClient(_app(state)):
            pass
