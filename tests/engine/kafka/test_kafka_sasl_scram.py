"""SCRAM-SHA-256/512 for API keys (engine/auth/scram.py) and SASL/PLAIN's message
(engine/kafka/sasl/login.py), IO-free, plus the SCRAM credentials in the metadata store
(migration 0008) over SQLite and PostgreSQL.

The server side is checked against RFC 7677's own example exchange and against a third-party
client (kafka-python's ScramClient) for both mechanisms; wrong proofs, unknown keys, refusals
and every malformed message end in AuthenticationError (never another exception), and an unknown
key id gets a stable server-first message indistinguishable in shape from a real key's."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.net.sasl.scram import ScramClient

from streamhouse.auth import scram
from streamhouse.auth.admin import AuthAdmin
from streamhouse.kafka.sasl.login import parse_plain
from streamhouse.storage.errors import AuthenticationError, OrganisationNotFoundError
from streamhouse.storage.metadata import MetadataStore
from streamhouse.storage.metadata.auth_sql import NewApiKey

FAKE_KEY = b"k" * 32
SECRET = "A" * 43


def _exchange(mechanism: str, user: str, password: str, credential: scram.ScramCredential | None) -> bytes:
    client = ScramClient(user, password, mechanism)
    server = scram.ScramServer(mechanism, FAKE_KEY)
    assert server.client_first(client.first_message()) == user
    client.process_server_first_message(server.server_first(credential))
    final = server.client_final(client.final_message())
    client.process_server_final_message(final)  # raises unless the server signature is right
    assert server.done
    return final


def test_rfc7677_example_exchange() -> None:
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    credential = scram.derive("pencil", "SCRAM-SHA-256", salt=salt, iterations=4096)
    server = scram.ScramServer("SCRAM-SHA-256", FAKE_KEY, nonce="%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
    assert server.client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO") == "user"
    first = server.server_first(credential)
    assert first == b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    final = server.client_final(
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    )
    assert final == b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_a_third_party_client_logs_in_and_a_wrong_secret_does_not(mechanism: str) -> None:
    credential = scram.derive(SECRET, mechanism)
    assert credential.iterations == 4096 and len(credential.salt) == 24
    assert _exchange(mechanism, "shk_00000000000000aa", SECRET, credential).startswith(b"v=")
    with pytest.raises(AuthenticationError) as refused:
        _exchange(mechanism, "shk_00000000000000aa", "B" * 43, credential)
    assert refused.value.reason == "wrong_secret"
    # Another mechanism's credential never verifies this one.
    other = scram.derive(SECRET, "SCRAM-SHA-512" if mechanism == "SCRAM-SHA-256" else "SCRAM-SHA-256")
    with pytest.raises(AuthenticationError):
        _exchange(mechanism, "shk_00000000000000aa", SECRET, other)


def test_unknown_revoked_and_expired_keys_fail_after_the_proof_with_one_message() -> None:
    messages = set()
    for credential, refusal in [(None, None), (scram.derive(SECRET, "SCRAM-SHA-256"), "revoked")]:
        with pytest.raises(AuthenticationError) as refused:
            client = ScramClient("shk_00000000000000bb", SECRET, "SCRAM-SHA-256")
            server = scram.ScramServer("SCRAM-SHA-256", FAKE_KEY)
            server.client_first(client.first_message())
            first = server.server_first(credential, refusal)
            assert b",s=" in first and first.endswith(b",i=4096")  # a real-looking challenge
            client.process_server_first_message(first)
            server.client_final(client.final_message())
        assert refused.value.reason == (refusal or "unknown_key")
        messages.add(str(refused.value))
    with pytest.raises(AuthenticationError) as wrong:
        _exchange("SCRAM-SHA-256", "u", "B" * 43, scram.derive(SECRET, "SCRAM-SHA-256"))
    assert messages == {str(wrong.value)}
    # The fake salt of an unknown id is stable (as a real key's is), and differs per id.
    salts = []
    for user in ("shk_1111111111111111", "shk_1111111111111111", "shk_2222222222222222"):
        server = scram.ScramServer("SCRAM-SHA-256", FAKE_KEY)
        server.client_first(f"n,,n={user},r=abcdefghij".encode())
        salts.append(server.server_first(None).split(b",")[1])
    assert salts[0] == salts[1] != salts[2]


@pytest.mark.parametrize(
    ("message", "what"),
    [
        (b"p=tls-unique,,n=u,r=abcdefghij", "channel binding"),
        (b"n,,m=x,n=u,r=abcdefghij", "mandatory extensions"),
        (b"n,,n=u,r=abcdefghij,tokenauth=true", "delegation tokens"),
        (b"n,a=other,n=u,r=abcdefghij", "authorization id"),
        (b"n,,n=u=41,r=abcdefghij", "escape"),
        (b"n,,n=u,r=short", "nonce"),
        (b"n,,n=u,r=abc,defghijk", "bad extension"),
        (b"\xff\xfe", "UTF-8"),
        (b"n,,n=u," + b"r" * 3000, "longer than"),
        (b"n,n=u", "gs2-header"),
    ],
)
def test_malformed_client_first_messages_are_named(message: bytes, what: str) -> None:
    with pytest.raises(AuthenticationError, match=what) as refused:
        scram.ScramServer("SCRAM-SHA-256", FAKE_KEY).client_first(message)
    assert refused.value.reason == "malformed"
    assert "abcdefghij" not in str(refused.value)  # never an echo of the input


def test_client_final_checks_binding_nonce_and_proof_shape() -> None:
    credential = scram.derive(SECRET, "SCRAM-SHA-256")
    for final, what in [
        (b"c=eSws,r={nonce},p=AAAA", "channel binding"),
        (b"c=biws,r=abcdefghijX,p=AAAA", "nonce"),
        (b"c=biws,r={nonce},p=!!", "base64"),
        (b"c=biws,r={nonce},p=AAAA", "32 bytes"),
        (b"c=biws,r={nonce}", "proof"),
    ]:
        server = scram.ScramServer("SCRAM-SHA-256", FAKE_KEY, nonce="SERVERNONCE")
        server.client_first(b"n,,n=u,r=abcdefghij")
        server.server_first(credential)
        with pytest.raises(AuthenticationError, match=what):
            server.client_final(final.replace(b"{nonce}", b"abcdefghijSERVERNONCE"))
        with pytest.raises(AuthenticationError, match="unexpected message"):
            server.client_final(b"c=biws")  # one attempt: the exchange is over
    with pytest.raises(AuthenticationError, match="unexpected message"):
        scram.ScramServer("SCRAM-SHA-256", FAKE_KEY).client_final(b"c=biws,r=x,p=AAAA")


@settings(max_examples=300, deadline=None)
@given(first=st.binary(max_size=300), final=st.binary(max_size=300))
def test_any_bytes_end_in_authentication_errors_only(first: bytes, final: bytes) -> None:
    server = scram.ScramServer("SCRAM-SHA-512", FAKE_KEY)
    try:
        server.client_first(first)
        server.server_first(scram.derive(SECRET, "SCRAM-SHA-512", iterations=4096))
        server.client_final(final)
    except AuthenticationError as exc:
        assert exc.reason in ("malformed", "wrong_secret")
    assert not server.done


def test_plain_messages() -> None:
    assert parse_plain(b"\x00shk_1\x00s3cret") == ("shk_1", "s3cret")
    assert parse_plain(b"shk_1\x00shk_1\x00s3cret") == ("shk_1", "s3cret")
    for bad, what in [
        (b"shk_1\x00s3cret", "expected"),
        (b"other\x00shk_1\x00s3cret", "authorization id"),
        (b"\x00\xff\x00x", "UTF-8"),
        (b"\x00a\x00" + b"x" * 2000, "longer than"),
    ]:
        with pytest.raises(AuthenticationError, match=what) as refused:
            parse_plain(bad)
        assert refused.value.reason == "malformed" and "s3cret" not in str(refused.value)


async def test_credentials_are_stored_with_the_key_and_only_with_it(metadata_store: MetadataStore) -> None:
    store = metadata_store
    await store.auth_create_org("acme")
    created = await AuthAdmin(store).create_key("acme", "alice")
    key_id, secret = created.token.split(".")
    for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
        credential = await store.auth_scram_credential(key_id, mechanism)
        assert credential is not None and credential.mechanism == mechanism
        assert _exchange(mechanism, key_id, secret, credential)
    assert await store.auth_scram_credential(key_id, "SCRAM-SHA-1") is None
    assert await store.auth_scram_credential("shk_ffffffffffffffff", "SCRAM-SHA-256") is None
    # A refused key creation stores no credential either (one transaction).
    refused = NewApiKey("shk_eeeeeeeeeeeeeeee", "nobody", "bob", False, "h", scram=scram.credentials(secret))
    with pytest.raises(OrganisationNotFoundError):
        await store.auth_create_key(refused)
    assert await store.auth_scram_credential("shk_eeeeeeeeeeeeeeee", "SCRAM-SHA-256") is None
    # Snapshots carry the credentials (they verify proofs, they cannot make one), never the secret.
    dump = await store.export_tables()
    table = dump.table("auth_scram_credentials")
    assert table is not None and len(table.rows) == 2
    assert secret not in repr(dump.tables)
