"""SCRAM-SHA-256 / SCRAM-SHA-512 (RFC 5802, RFC 7677) for API keys, IO-free.

`credentials(secret)` derives what the store keeps per mechanism (salt, iterations, StoredKey,
ServerKey; storage/metadata/scram_sql.py). It runs when a key is created (engine/auth/admin.py),
the only moment the secret is known: SCRAM cannot use the scrypt hash, as the client proves
knowledge of PBKDF2(secret, salt) and the server checks that proof against StoredKey.

`ScramServer` is the server side of one exchange, as a state machine the caller feeds:

    user = s.client_first(token)            # "n,,n=<key id>,r=<client nonce>"
    reply = s.server_first(credential)      # "r=<nonce>,s=<salt>,i=<n>" (look the key up between)
    reply = s.client_final(token)           # checks the proof; "v=<server signature>"

Every refusal is an AuthenticationError: "malformed" (with a message saying what is wrong, never
echoing the input) or, after the proof is checked, the reason the caller gave at server_first
(unknown_key, revoked, expired) or "wrong_secret", all with one message so a caller cannot tell
them apart. A key id that does not exist still gets a server-first message, with a salt derived
from the id and a per-process secret (stable, like a real key's), so existence is not revealed
before the proof step either.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets

from streamhouse.storage.errors import AuthenticationError
from streamhouse.storage.metadata.scram_sql import MECHANISMS, MIN_ITERATIONS, ScramCredential

__all__ = ["MECHANISMS", "ScramServer", "credentials", "derive"]

HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
# The secret has 256 random bits, so iterations only slow down a stolen table, as scrypt does
# for the other hash; Kafka's (and RFC 7677's) minimum keeps every client happy and makes a
# client's login cost ~2 ms.
ITERATIONS = MIN_ITERATIONS
_SALT_BYTES = 24
MAX_MESSAGE_BYTES = 2048  # a real client-first is ~60 bytes, a client-final ~200
_REFUSED = "invalid credential: the API key is unknown, wrong, revoked or expired"
_NONCE_RE = re.compile(r"^[\x21-\x2b\x2d-\x7e]{8,256}$")  # printable but ','
_EXT_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]*=.*$")


def derive(secret: str, mechanism: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> ScramCredential:
    """The stored credential for `secret`. Our secrets are URL-safe base64, which SASLprep
    leaves unchanged, so no normalisation is needed."""
    name = HASHES[mechanism]
    salt = os.urandom(_SALT_BYTES) if salt is None else salt
    salted = hashlib.pbkdf2_hmac(name, secret.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", name)
    return ScramCredential(
        mechanism=mechanism,
        salt=salt,
        iterations=iterations,
        stored_key=hashlib.new(name, client_key).digest(),
        server_key=hmac.digest(salted, b"Server Key", name),
    )


def credentials(secret: str) -> tuple[ScramCredential, ...]:
    """One credential per mechanism, each with its own salt."""
    return tuple(derive(secret, m) for m in MECHANISMS)


def _malformed(what: str) -> AuthenticationError:
    return AuthenticationError(f"malformed SCRAM message: {what}", reason="malformed")


def _text(message: bytes) -> str:
    if len(message) > MAX_MESSAGE_BYTES:
        raise _malformed(f"longer than {MAX_MESSAGE_BYTES} bytes")
    try:
        return message.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed("not UTF-8") from None


def _saslname(value: str) -> str:
    """RFC 5802's saslname: ',' and '=' travel as '=2C' and '=3D'; any other '=' is wrong."""
    out = value.replace("=2C", ",").replace("=3D", "=")
    if "=" in value.replace("=2C", "").replace("=3D", ""):
        raise _malformed("bad '=' escape in the user name")
    return out


def _attr(part: str, letter: str) -> str:
    if not part.startswith(letter + "="):
        raise _malformed(f"expected the attribute {letter}=")
    return part[2:]


def _extensions(parts: list[str]) -> None:
    for ext in parts:
        if not _EXT_RE.match(ext):
            raise _malformed("bad extension")
        if ext.lower() == "tokenauth=true":  # Kafka's delegation tokens: not issued here
            raise _malformed("delegation tokens are not supported")


class ScramServer:
    """One exchange for one mechanism. `fake_key` (per process) derives the salt shown for a key
    id that does not exist; `nonce` is the server's part of the nonce (random by default)."""

    def __init__(self, mechanism: str, fake_key: bytes, *, nonce: str | None = None) -> None:
        if mechanism not in HASHES:
            raise _malformed(f"unknown mechanism {mechanism!r}")
        self.mechanism = mechanism
        self._hash = HASHES[mechanism]
        self._fake_key = fake_key
        self._server_nonce = nonce if nonce is not None else secrets.token_urlsafe(24)
        self._state = "first"
        self._gs2 = ""
        self._bare = ""
        self._nonce = ""
        self._server_first = ""
        self._credential: ScramCredential | None = None
        self._refusal: str | None = None
        self.key_id = ""

    @property
    def done(self) -> bool:
        return self._state == "done"

    def client_first(self, message: bytes) -> str:
        """Parses client-first-message; returns the user name (the API key id)."""
        self._expect("first")
        text = _text(message)
        cbind, sep1, rest = text.partition(",")
        authzid, sep2, bare = rest.partition(",")
        if not (sep1 and sep2):
            raise _malformed("expected gs2-header 'n,,' then the user and nonce")
        if cbind.startswith("p="):
            raise _malformed("channel binding is not supported")
        if cbind not in ("n", "y"):
            raise _malformed("bad channel-binding flag")
        parts = bare.split(",")
        if parts[0].startswith("m="):
            raise _malformed("mandatory extensions are not supported")
        if len(parts) < 2:
            raise _malformed("expected n=<user>,r=<nonce>")
        user = _saslname(_attr(parts[0], "n"))
        nonce = _attr(parts[1], "r")
        _extensions(parts[2:])
        if not user:
            raise _malformed("empty user name")
        if not _NONCE_RE.match(nonce):
            raise _malformed("the client nonce must be 8-256 printable characters without ','")
        if authzid and _saslname(_attr(authzid, "a")) != user:
            raise _malformed("the authorization id must be the user name")
        self._gs2, self._bare, self.key_id = f"{cbind},{authzid},", bare, user
        self._nonce = nonce + self._server_nonce
        self._state = "lookup"
        return user

    def server_first(self, credential: ScramCredential | None, refusal: str | None = None) -> bytes:
        """The server-first-message for the looked-up credential (None: unknown key). A
        `refusal` reason (revoked, expired) fails the exchange after the proof, like a wrong one."""
        self._expect("lookup")
        if credential is None or credential.mechanism != self.mechanism:
            refusal = refusal or "unknown_key"
            size = hashlib.new(self._hash).digest_size
            salt = hmac.digest(self._fake_key, f"{self.mechanism}\x00{self.key_id}".encode(), "sha256")[:_SALT_BYTES]
            credential = ScramCredential(self.mechanism, salt, ITERATIONS, os.urandom(size), os.urandom(size))
        self._credential, self._refusal = credential, refusal
        salt_text = base64.b64encode(credential.salt).decode("ascii")
        self._server_first = f"r={self._nonce},s={salt_text},i={credential.iterations}"
        self._state = "final"
        return self._server_first.encode("ascii")

    def client_final(self, message: bytes) -> bytes:
        """Checks client-final-message's binding, nonce and proof; the server-final-message."""
        self._expect("final")
        self._state = "failed"  # whatever happens below, this exchange takes no further step
        text = _text(message)
        without_proof, sep, proof_text = text.rpartition(",p=")
        if not sep:
            raise _malformed("expected the proof p=")
        parts = without_proof.split(",")
        if len(parts) < 2:
            raise _malformed("expected c=<binding>,r=<nonce>")
        binding, nonce = _attr(parts[0], "c"), _attr(parts[1], "r")
        _extensions(parts[2:])
        if binding != base64.b64encode(self._gs2.encode()).decode("ascii"):
            raise _malformed("the channel binding differs from the gs2-header sent first")
        if not hmac.compare_digest(nonce.encode(), self._nonce.encode()):
            raise _malformed("the nonce differs from the one the server sent")
        try:
            proof = base64.b64decode(proof_text, validate=True)
        except (binascii.Error, ValueError):
            raise _malformed("the proof is not base64") from None
        credential = self._credential
        assert credential is not None, "set by server_first"
        if len(proof) != len(credential.stored_key):
            raise _malformed(f"the proof must be {len(credential.stored_key)} bytes")
        auth_message = f"{self._bare},{self._server_first},{without_proof}".encode()
        signature = hmac.digest(credential.stored_key, auth_message, self._hash)
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        proven = hmac.compare_digest(hashlib.new(self._hash, client_key).digest(), credential.stored_key)
        if self._refusal is not None or not proven:
            raise AuthenticationError(_REFUSED, reason=self._refusal or "wrong_secret")
        self._state = "done"
        server_signature = hmac.digest(credential.server_key, auth_message, self._hash)
        return b"v=" + base64.b64encode(server_signature)

    def _expect(self, state: str) -> None:
        if self._state != state:
            raise _malformed(f"unexpected message (the exchange is at step {self._state!r})")
