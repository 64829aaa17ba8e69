"""API key ids, secrets, tokens and the salted slow hash the store keeps instead of a secret.

The hash is scrypt (hashlib, RFC 7914) with a per-key random salt; the parameters are written
into the stored text, `scrypt$<log2 n>$<r>$<p>$<salt>$<hash>` (base64 without padding), so new
keys can get stronger parameters later while every old key still verifies with its own. One
verification costs tens of ms of CPU on purpose (a stolen table is slow to attack), which is why
authenticator.py keeps verified keys in a short-lived cache.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass

from streamhouse.storage.errors import AuthenticationError

KEY_ID_PREFIX = "shk_"
SEPARATOR = "."
# Longer tokens are refused before any parsing or hashing: a real one is 64 characters.
MAX_TOKEN_CHARS = 256
# n = 2**14, r = 8: 16 MiB of memory and ~20-50 ms per hash on a 2020s core (OWASP's minimum
# for scrypt is n = 2**17 with r = 8 only for password hashing; API secrets carry 256 random
# bits, so the hash guards against nothing but a stolen table, and this is plenty for that).
LOG2_N, R, P = 14, 8, 1
_SALT_BYTES = 16
_HASH_BYTES = 32
_MAXMEM = 64 << 20
_KEY_ID_RE = re.compile(r"^shk_[0-9a-f]{16}$")
_SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")


@dataclass(frozen=True)
class Token:
    key_id: str
    secret: str


def new_key_id() -> str:
    return KEY_ID_PREFIX + secrets.token_hex(8)


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def format_token(key_id: str, secret: str) -> str:
    return f"{key_id}{SEPARATOR}{secret}"


def parse_token(token: str) -> Token:
    """`<key_id>.<secret>` → Token; AuthenticationError('malformed') otherwise (never echoing it)."""
    if len(token) > MAX_TOKEN_CHARS:
        raise AuthenticationError("malformed credential: too long", reason="malformed")
    key_id, sep, secret = token.partition(SEPARATOR)
    if not sep:
        raise AuthenticationError("malformed credential: expected <key id>.<secret>", reason="malformed")
    return checked(key_id, secret)


def checked(key_id: str, secret: str) -> Token:
    """A key id and secret of the right shape (as Basic auth or SASL/PLAIN give them apart)."""
    if not _KEY_ID_RE.match(key_id) or not _SECRET_RE.match(secret):
        raise AuthenticationError("malformed credential: not a StreamHouse API key", reason="malformed")
    return Token(key_id, secret)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hash_secret(secret: str, *, log2_n: int = LOG2_N, r: int = R, p: int = P) -> str:
    """The text the store keeps for `secret`: a fresh salt each call, so two hashes of one
    secret differ."""
    salt = os.urandom(_SALT_BYTES)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=1 << log2_n, r=r, p=p, maxmem=_MAXMEM, dklen=_HASH_BYTES)
    return f"scrypt${log2_n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_secret(secret: str, stored: str) -> bool:
    """Whether `secret` is the one `stored` was made from, compared in constant time. A stored
    text this code cannot read (another scheme, damaged) verifies nothing."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return False
    try:
        log2_n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, expected = _unb64(parts[4]), _unb64(parts[5])
        if not (1 <= log2_n <= 20 and 1 <= r <= 32 and 1 <= p <= 16):
            return False
        digest = hashlib.scrypt(
            secret.encode(), salt=salt, n=1 << log2_n, r=r, p=p, maxmem=_MAXMEM, dklen=len(expected)
        )
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(digest, expected)


def fast_digest(secret: str) -> bytes:
    """What the in-memory cache compares a warm request's secret against: SHA-256 is enough
    there (the secret has 256 random bits, and this digest never leaves the process)."""
    return hashlib.sha256(secret.encode()).digest()
