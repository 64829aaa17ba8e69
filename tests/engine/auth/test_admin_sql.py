"""Admin SQL (issue 15, sql/statements/admin.py, engine/auth/sql_admin.py) on the real auth
agent of this folder: an admin manages organisations, keys and ACL rules remotely through the
SDK's `client.sql` / `client.auth` and the REST SQL endpoint; a non-admin principal is refused
(PERMISSION_DENIED / 403) with nothing changed; no secret shows in SHOW output or errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import streamhouse
from streamhouse.auth.admin import AuthAdmin
from streamhouse.sql.errors import SqlError
from streamhouse.sql.statements.admin import ChangeAcl, CreateApiKey, RevokeApiKey, ShowAcls, parse_admin
from streamhouse.storage.errors import AuthorizationError
from tests.engine.auth.conftest import AuthAgent, http_json


def _http_sql(agent: AuthAgent, token: str, statement: str) -> tuple[int, Any]:
    return http_json(agent.http, "POST", "/v1/sql", token, {"statement": statement})


def test_parse() -> None:
    assert parse_admin("SELECT 1") is None and parse_admin("SHOW TOPICS") is None
    assert parse_admin("create api key for principal 'a@b.c' in org acme admin expires in '2h' comment 'x';") == (
        CreateApiKey("acme", "a@b.c", True, 7_200_000, "x")
    )
    assert parse_admin("REVOKE API KEY 'shk_0123456789abcdef.s3cret'") == RevokeApiKey("shk_0123456789abcdef")
    assert parse_admin("GRANT ALL ON GROUP PREFIXED 'g.' TO bob IN ORG acme") == ChangeAcl(
        True, ("read", "write", "create", "delete", "alter", "describe"), "group", "prefixed", "g.", "acme", "bob"
    )
    assert parse_admin("revoke read, read on topic * from bob in org acme") == ChangeAcl(
        False, ("read",), "topic", "literal", "*", "acme", "bob"
    )
    assert parse_admin("SHOW ACLS IN ORG acme FOR PRINCIPAL bob") == ShowAcls("acme", "bob")
    bad = {
        "GRANT FLY ON TOPIC t TO bob IN ORG acme": "FLY",
        "GRANT READ ON TABLE t TO bob IN ORG acme": "TOPIC, GROUP, JOB, SUBJECT or TRANSACTIONAL_ID",
        "GRANT READ ON TOPIC t TO bob": "IN ORG",
        "CREATE API KEY FOR bob IN ORG acme EXPIRES IN '3 months'": "bad duration",
        "REVOKE API KEY": "key id",
        "SHOW API KEYS IN ORG acme extra": "end of the statement",
        "CREATE API KEY FOR bob IN ORG acme COMMENT 'shk_0123456789abcdef.s3cret' x": "end",
    }
    for sql, message in bad.items():
        with pytest.raises(SqlError, match=message) as err:
            parse_admin(sql)
        assert "s3cret" not in str(err.value)


def test_admin_statements_remote(auth_agent: AuthAgent) -> None:
    agent = auth_agent
    admin = AuthAdmin(agent.server.service.manager.metadata)
    root = agent.run(admin.create_key("acme", "sql-root", admin=True)).token
    dave = agent.run(admin.create_key("acme", "dave")).token  # no admin flag
    metadata = agent.server.service.manager.metadata

    def state() -> tuple[Any, ...]:
        return (
            agent.run(metadata.auth_list_orgs()),
            agent.run(metadata.auth_list_keys()),
            agent.run(metadata.acl_list()),
        )

    before = state()
    refused = [
        "CREATE ORG evil",
        "SHOW ORGS",
        "CREATE API KEY FOR dave IN ORG acme ADMIN",
        "SHOW API KEYS",
        f"REVOKE API KEY '{root.split('.')[0]}'",
        "GRANT ALL ON TOPIC * TO dave IN ORG acme",
        "REVOKE READ ON TOPIC * FROM alice IN ORG acme",
        "SHOW ACLS",
    ]
    with streamhouse.connect(agent.grpc, api_key=dave) as client:
        for sql in refused:
            with pytest.raises(AuthorizationError, match="admin flag"):
                client.sql(sql)
        with pytest.raises(AuthorizationError):
            client.auth.create_key("acme", "dave", admin=True)
    for sql in refused[:2]:
        status, answer = _http_sql(agent, dave, sql)
        assert (status, answer["code"]) == (403, "authorization"), answer
    assert state() == before

    with streamhouse.connect(agent.grpc, api_key=root) as client:
        org = client.auth.create_org("globex")
        assert org.name == "globex" and "globex" in {o.name for o in client.auth.orgs()}
        created = client.auth.create_key("globex", "carol", expires_in_s=3600, description="ci")
        key_id, secret = created.token.split(".")
        assert created.key.key_id == key_id and secret not in repr(created)
        keys = client.auth.keys("globex")
        assert [(k.key_id, k.principal, k.state, k.description) for k in keys] == [(key_id, "carol", "active", "ci")]
        shown = client.sql("SHOW API KEYS").to_pylist()
        assert secret not in json.dumps(shown) and not any("hash" in c for c in shown[0])
        granted = client.sql("GRANT READ, DESCRIBE ON TOPIC PREFIXED 'gx.' TO carol IN ORG globex")
        assert granted.column("changed").to_pylist() == [True, True]
        assert client.auth.revoke(created.token).state == "revoked"  # a pasted token is cut to its id
    status, answer = _http_sql(agent, root, "SHOW ACLS IN ORG globex FOR carol")
    assert status == 200, answer
    assert secret not in json.dumps(answer)
    assert agent.run(metadata.acl_list("globex", "carol"))[0].resource_name == "gx."
    status, answer = _http_sql(agent, root, "CREATE ORG IF NOT EXISTS globex")
    assert status == 200, answer


def test_embedded_runs_them(tmp_path: Path) -> None:
    """Embedded mode is open (a library in the user's process): the statements run unchecked."""
    with streamhouse.open(str(tmp_path / "data")) as client:
        client.sql("CREATE ORG acme")
        token = client.sql("CREATE API KEY FOR ci IN ORG acme ADMIN").column("token")[0].as_py()
        client.sql("GRANT WRITE ON SUBJECT 'orders-value' TO ci IN ORG acme")
        assert client.sql("SHOW ACLS FOR ci").column("resource_type").to_pylist() == ["subject"]
        assert [k.admin for k in client.auth.keys("acme")] == [True]
        with pytest.raises(SqlError, match="end of the statement"):
            client.sql("SHOW ORGS please")
        assert token.split(".")[1] not in repr(client.sql("SHOW API KEYS").to_pylist())
