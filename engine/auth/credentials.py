"""Credentials as the wire carries them → a Token (secret_hash.py): the HTTP `Authorization`
header and gRPC's `authorization` metadata, `Bearer <key_id>.<secret>` or `Basic
base64(<key_id>:<secret>)`. Anything else is AuthenticationError('missing' or 'malformed'),
never an echo of what was sent."""

from __future__ import annotations

import base64
import binascii

from streamhouse.auth.secret_hash import MAX_TOKEN_CHARS, Token, checked, parse_token
from streamhouse.storage.errors import AuthenticationError

# The header's own budget: the scheme, a space and base64 of the longest token.
_MAX_HEADER_CHARS = 16 + MAX_TOKEN_CHARS * 4 // 3 + 4


def token_from_header(header: str | None) -> Token:
    if header is None or not header.strip():
        raise AuthenticationError(reason="missing")
    if len(header) > _MAX_HEADER_CHARS:
        raise AuthenticationError("malformed credential: too long", reason="malformed")
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return parse_token(value)
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthenticationError("malformed credential: bad Basic encoding", reason="malformed") from None
        key_id, sep, secret = decoded.partition(":")
        if not sep:
            raise AuthenticationError("malformed credential: Basic needs <key id>:<secret>", reason="malformed")
        return checked(key_id, secret)
    raise AuthenticationError("unsupported authorization scheme: use Bearer or Basic", reason="malformed")
