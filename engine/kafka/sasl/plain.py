"""SASL/PLAIN's one message (RFC 4616): `[authzid] NUL authcid NUL passwd`, UTF-8. For
StreamHouse the user (authcid) is the API key id and the password its secret; the key is then
checked by the one verify function every front end uses (engine/auth/authenticator.py)."""

from __future__ import annotations

from streamhouse.storage.errors import AuthenticationError

MAX_MESSAGE_BYTES = 1024  # a real one is ~90 bytes (20-character id, 43-character secret)


def parse_plain(token: bytes) -> tuple[str, str]:
    """(key id, secret), or AuthenticationError('malformed') saying what is wrong (never what
    was sent)."""
    if len(token) > MAX_MESSAGE_BYTES:
        raise AuthenticationError(f"malformed PLAIN message: longer than {MAX_MESSAGE_BYTES} bytes", reason="malformed")
    parts = token.split(b"\x00")
    if len(parts) != 3:
        raise AuthenticationError(
            "malformed PLAIN message: expected [authzid] NUL user NUL password", reason="malformed"
        )
    try:
        authzid, user, password = (p.decode("utf-8") for p in parts)
    except UnicodeDecodeError:
        raise AuthenticationError("malformed PLAIN message: not UTF-8", reason="malformed") from None
    if authzid and authzid != user:  # Kafka's PlainServer: no acting as another principal
        raise AuthenticationError("malformed PLAIN message: the authorization id must be the user", reason="malformed")
    return user, password
