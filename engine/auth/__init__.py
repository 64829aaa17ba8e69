"""Identities and API-key authentication (issue 15), shared by every front end.

Token format: an API key is `<key_id>.<secret>`, where `key_id` is `shk_` + 16 lowercase hex
digits (not secret: it names the key in `auth list`, logs and metrics) and `secret` is 43
characters of URL-safe base64 (256 random bits). Neither part contains '.' or ':', so the token
travels unchanged as
- gRPC metadata `authorization: Bearer <key_id>.<secret>`,
- HTTP `Authorization: Bearer <key_id>.<secret>`, or HTTP Basic with user `<key_id>` and password
  `<secret>` (what Confluent's `basic.auth.user.info` sends),
- and, in the coming Kafka slice, SASL/PLAIN username `<key_id>`, password `<secret>`.

Every front end verifies through the one `Authenticator.authenticate` (authenticator.py): the
HTTP guard (engine/server/http/auth.py) and the gRPC interceptor (engine/server/grpc/auth.py)
today, Kafka SASL next. The secret is shown once, when the key is created (admin.py); the store
keeps only a salted scrypt hash (secret_hash.py).
"""

from streamhouse.auth.authenticator import CACHE_TTL_S, REASONS, Authenticator, Principal

__all__ = ["CACHE_TTL_S", "REASONS", "Authenticator", "Principal"]
