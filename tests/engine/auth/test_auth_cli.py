"""`streamhouse auth …` (in process, on a SQLite store): create-key prints only the token on
stdout (pipes cleanly) and says what it is on stderr; list and revoke never show a secret or a
hash; bad input is one error line. `serve` without auth refuses a non-loopback --host unless
--insecure; the SDK's admin surface works embedded and says how to do it remotely."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

import streamhouse
from streamhouse.auth.exposure import check_exposure, is_loopback
from streamhouse.cli.main import main
from streamhouse.storage.errors import InvalidInputError


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_create_list_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    where = ("--metadata", f"sqlite:///{tmp_path / 'm.db'}")
    assert cli(capsys, "auth", "create-org", "acme", *where) == (0, "acme\n", "")
    code, out, err = cli(capsys, "auth", "create-key", "--org", "acme", "--principal", "ops", "--admin", *where)
    token = out.strip()
    assert code == 0 and out == token + "\n" and token.startswith("shk_") and len(token) == 64
    key_id, secret = token.split(".")
    assert key_id in err and "(admin)" in err and secret not in err
    code, out, _ = cli(capsys, "auth", "create-key", "--org", "acme", "--principal", "ci", "--expires-in", "2h", *where)
    other = out.strip().split(".")[0]
    code, out, _ = cli(capsys, "auth", "revoke", other, *where)
    assert code == 0 and out.startswith(f"{other} revoked at ")
    code, out, _ = cli(capsys, "auth", "list", "--format", "json", *where)
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["key_id"], r["principal"], r["admin"], r["state"]) for r in rows] == [
        (other, "ci", False, "revoked"),
        (key_id, "ops", True, "active"),
    ]
    assert rows[0]["expires"] and not rows[1]["expires"]
    assert secret not in out and "scrypt" not in out
    code, _, err = cli(capsys, "auth", "create-key", "--org", "nobody", "--principal", "x", *where)
    assert code == 1 and err.strip() == "error: organisation 'nobody' does not exist"
    assert cli(capsys, "auth", "revoke", "shk_0000000000000000", *where)[0] == 1
    with pytest.raises(SystemExit):
        main(["auth", "create-key", "--org", "acme", "--principal", "x", "--expires-in", "soon", *where])


def test_serve_refuses_non_loopback_without_auth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path), "--kafka-port", "0")
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1
    assert "refusing to serve gRPC and HTTP without authentication" in err and "--insecure" in err
    assert not (tmp_path / "wal").exists()  # refused before anything started
    logging.getLogger().handlers.clear()  # serve's basicConfig, gone before the next test
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("")
    assert check_exposure("127.0.0.1", "none", kafka_port=9092, insecure=False) == []
    assert check_exposure("0.0.0.0", "api-key", kafka_port=9092, insecure=False) == []
    warned = check_exposure("0.0.0.0", "none", kafka_port=9092, insecure=True)
    assert len(warned) == 1 and "Kafka" in warned[0] and "without authentication" in warned[0]
    with pytest.raises(InvalidInputError):
        check_exposure("127.0.0.1", "password", kafka_port=0, insecure=False)


def test_sdk_admin(tmp_path: Path) -> None:
    with streamhouse.open(str(tmp_path / "data")) as client:
        client.auth.create_org("acme")
        created = client.auth.create_key("acme", "alice", expires_in_s=60)
        assert created.token.split(".")[1] not in repr(created)
        assert [(k.key_id, k.state) for k in client.auth.keys("acme")] == [(created.key.key_id, "active")]
        assert client.auth.revoke(created.key.key_id).state == "revoked"
        assert [o.name for o in client.auth.orgs()] == ["acme"]
    # a remote client.auth runs the admin SQL statements: tests/engine/auth/test_admin_sql.py
