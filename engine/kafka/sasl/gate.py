"""Kafka SASL authentication on the listener (issue 15): which requests a connection may send,
and the SaslHandshake / SaslAuthenticate answers, as Kafka's SaslServerAuthenticator gives them.

With authentication on (`KafkaServer(authenticator=...)`), a connection starts unauthenticated:
it may send ApiVersions, then SaslHandshake (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) and the
mechanism's tokens, in SaslAuthenticate requests after handshake v1 or as bare size-prefixed
frames after v0. Anything else before the login completes closes the connection without an
answer (Kafka's IllegalSaslStateException), counted as reason "missing". A refused login is
answered SASL_AUTHENTICATION_FAILED (58) with one message whatever the reason (unknown key,
wrong secret, revoked, expired; the metric has the reason), then, 100 ms later (Kafka's
connection.failed.authentication.delay.ms), the connection is closed: one failed attempt per
connection. An unknown mechanism is answered UNSUPPORTED_SASL_MECHANISM (33) with the list, then
closed. Before the login: frames of at most `pre_auth_max_frame` bytes (the listener's
FrameConnection refuses larger prefixes unread; Kafka's sasl.server.max.receive.size), at most
MAX_PRE_AUTH_REQUESTS requests, and `pre_auth_timeout_s` to finish.

A connection authenticates once. A revoked key is refused at its next login; connections it
already opened stay until their session ends. The session ends at the key's expiry and, with
`max_reauth_ms` > 0 (Kafka's connections.max.reauth.ms; 0 by default, as in Kafka), after that
long (`serve --kafka-max-reauth-ms`): SaslAuthenticate v1+ tells the client
(session_lifetime_ms) and clients with KIP-368 re-authenticate on the same connection (same
mechanism, same principal), where a revoked or expired key is refused and the connection closed.
A request after the session ended closes the connection, as Kafka does, also for clients that
cannot re-authenticate (v0). PLAIN goes through the Authenticator's 5 s cache (a revocation
reaches a PLAIN login within it); SCRAM reads the key and its credential at every login
(login.py).
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from streamhouse.auth import Authenticator, Principal
from streamhouse.kafka.connection import FrameConnection
from streamhouse.kafka.errors import KafkaProtocolError
from streamhouse.kafka.handlers import Body, Context, Handler
from streamhouse.kafka.protocol.api import Request, encode_response
from streamhouse.kafka.sasl.login import FRONT, KeyStore, Login, PlainLogin, ScramLogin
from streamhouse.storage.errors import AuthenticationError

T = TypeVar("T")
SASL_HANDSHAKE, API_VERSIONS, SASL_AUTHENTICATE = 17, 18, 36
UNSUPPORTED_SASL_MECHANISM, ILLEGAL_SASL_STATE, SASL_AUTHENTICATION_FAILED = 33, 34, 58
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
# Enough for any ApiVersions, handshake or PLAIN/SCRAM token; a produce cannot come before the
# login, so nothing legitimate is larger (Kafka allows 512 KiB, sized for Kerberos tokens).
PRE_AUTH_MAX_FRAME = 64 * 1024
MAX_PRE_AUTH_REQUESTS = 8  # ApiVersions (+ a retry), handshake, two SCRAM tokens, with room
PRE_AUTH_TIMEOUT_S = 30.0
# Kafka's connection.failed.authentication.delay.ms: clients read the refusal before the close
# (kafka-python reports a bare disconnect otherwise), and a guesser gets one try per 100 ms.
FAILED_LOGIN_DELAY_S = 0.1
_SIZE = struct.Struct(">i")


class SaslStateError(KafkaProtocolError):
    """A request the connection's SASL state does not allow: the connection is closed."""

    error_code = ILLEGAL_SASL_STATE


async def _never(body: Body, version: int, ctx: Context) -> Body:
    raise SaslStateError("SASL requests are answered by the connection's gate", api="SASL")


class GatedFrames(FrameConnection):
    """A connection whose frame limit stays small until its login completes: an oversize
    prefix before that is refused unread, so an unauthenticated peer cannot make the agent
    buffer a large frame."""

    def __init__(self, max_frame: int, opened: Callable[[FrameConnection], None], pre_auth_max_frame: int) -> None:
        super().__init__(min(max_frame, pre_auth_max_frame), opened)
        self._full_max_frame = max_frame

    def widen(self) -> None:
        self._max_frame = self._full_max_frame


class SaslGate:
    """The listener's SASL settings and what every connection shares (the authenticator, the
    metadata store, the per-process key that fakes salts for unknown SCRAM users)."""

    def __init__(
        self,
        authenticator: Authenticator,
        store: KeyStore,
        *,
        max_reauth_ms: int = 0,
        pre_auth_max_frame: int = PRE_AUTH_MAX_FRAME,
        pre_auth_timeout_s: float = PRE_AUTH_TIMEOUT_S,
        monotonic: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.authenticator = authenticator
        self.store = store
        self.max_reauth_ms = max(max_reauth_ms, 0)
        self.pre_auth_max_frame = pre_auth_max_frame
        self.pre_auth_timeout_s = pre_auth_timeout_s
        self.monotonic = monotonic
        self.wall_ms = wall_ms
        self.fake_key = os.urandom(32)
        # Entries in the listener's handler table, so ApiVersions advertises both APIs; the
        # connection's gate answers them before any handler is looked up.
        self.advertised: dict[int, Handler] = {SASL_HANDSHAKE: _never, SASL_AUTHENTICATE: _never}

    def connection(self, widen: Callable[[], None]) -> SaslConnection:
        """A new connection's state; `widen` lifts its frame limit once it is authenticated."""
        return SaslConnection(self, widen)

    def refused(self, reason: str) -> None:
        self.authenticator.failures.labels(FRONT, reason).inc()

    def login(self, mechanism: str) -> Login:
        if mechanism == "PLAIN":
            return PlainLogin(self.authenticator, self.store)
        return ScramLogin(mechanism, self.authenticator, self.store, self.fake_key, self.wall_ms)


class SaslConnection:
    def __init__(self, gate: SaslGate, widen: Callable[[], None]) -> None:
        self._gate = gate
        self._widen = widen
        self.principal: Principal | None = None
        self.closing = False  # answer this request, then close (a refused login)
        self.raw = False  # the next frame is a bare token (after SaslHandshake v0)
        self._mechanism = ""
        self._login: Login | None = None
        self._requests = 0
        self._deadline = gate.monotonic() + gate.pre_auth_timeout_s
        self._session_end: float | None = None  # monotonic; None: no end

    @property
    def authenticated(self) -> bool:
        return self.principal is not None

    def passes(self, api_key: int) -> bool:
        """Whether a request goes to the listener's handlers (else to `respond`)."""
        if api_key in (SASL_HANDSHAKE, SASL_AUTHENTICATE):
            return False
        if self.principal is None:
            if api_key != API_VERSIONS:
                return False
            self._count_request()
            return True
        return self._session_end is None or self._gate.monotonic() < self._session_end

    async def before_deadline(self, read: Awaitable[T]) -> T:
        """A frame read before the login completes: within the pre-authentication time."""
        try:
            return await asyncio.wait_for(read, max(self._deadline - self._gate.monotonic(), 0.0))
        except TimeoutError:
            self._gate.refused("missing")
            raise SaslStateError(f"not authenticated within {self._gate.pre_auth_timeout_s:g} s") from None

    async def linger(self) -> None:
        """Waits out the delay between a refused login's answer and the close."""
        await asyncio.sleep(FAILED_LOGIN_DELAY_S)

    async def respond(self, request: Request) -> bytes:
        """The answer to a SASL request, or SaslStateError for a request the state does not
        allow (the listener closes the connection)."""
        key, version = request.api.key, request.header.api_version
        if key not in (SASL_HANDSHAKE, SASL_AUTHENTICATE):
            if self.principal is None:
                self._gate.refused("missing")
                raise SaslStateError("authentication required before this request", api=request.api.name)
            raise SaslStateError("the SASL session has ended: re-authenticate", api=request.api.name)
        if self.principal is None:
            self._count_request()
        if key == SASL_HANDSHAKE:
            body = self._handshake(request.body["mechanism"], version)
        else:
            if self._login is None or self.raw:
                raise SaslStateError("SaslAuthenticate before a SaslHandshake v1", api=request.api.name)
            body = await self._authenticate(bytes(request.body["auth_bytes"]), version)
        return encode_response(request.api, version, request.header.correlation_id, body)

    async def raw_token(self, frame: bytes | bytearray | memoryview) -> bytes:
        """A bare token after SaslHandshake v0: the bare reply, size-prefixed. A refusal
        closes the connection without an answer (v0 has no way to carry one)."""
        self._count_request()
        assert self._login is not None, "raw is set with a login"
        try:
            step = await self._login.step(bytes(frame))
        except AuthenticationError as exc:
            raise SaslStateError(f"SASL login refused ({exc.reason})") from None
        if step.principal is not None:
            self.raw = False
            self._authenticated(step.principal, step.expires_at_ms)
        return _SIZE.pack(len(step.reply)) + step.reply

    def _handshake(self, mechanism: str, version: int) -> dict[str, Any]:
        if self._login is not None and self.principal is None:
            raise SaslStateError("a second SaslHandshake during a login", api="SaslHandshake")
        reauth = self.principal is not None
        if mechanism not in MECHANISMS or (reauth and (mechanism != self._mechanism or version < 1)):
            self._gate.refused("malformed")
            self.closing = True
            return {"error_code": UNSUPPORTED_SASL_MECHANISM, "mechanisms": list(MECHANISMS)}
        self._mechanism = mechanism
        self._login = self._gate.login(mechanism)
        self.raw = version == 0
        return {"error_code": 0, "mechanisms": list(MECHANISMS)}

    async def _authenticate(self, token: bytes, version: int) -> dict[str, Any]:
        assert self._login is not None
        try:
            step = await self._login.step(token)
        except AuthenticationError as exc:
            self.closing = True
            return {"error_code": SASL_AUTHENTICATION_FAILED, "error_message": str(exc), "auth_bytes": b""}
        lifetime = 0
        if step.principal is not None:
            previous = self.principal
            if previous is not None and (previous.org, previous.name) != (step.principal.org, step.principal.name):
                self._gate.refused("malformed")
                self.closing = True
                message = "re-authentication must keep the principal"
                return {"error_code": SASL_AUTHENTICATION_FAILED, "error_message": message, "auth_bytes": b""}
            lifetime = self._authenticated(step.principal, step.expires_at_ms)
        return {"error_code": 0, "error_message": None, "auth_bytes": step.reply, "session_lifetime_ms": lifetime}

    def _authenticated(self, principal: Principal, expires_at_ms: int | None) -> int:
        """Records the login; the session lifetime in ms (0: unbounded)."""
        first = self.principal is None
        self.principal = principal
        self._login = None
        limits = [self._gate.max_reauth_ms] if self._gate.max_reauth_ms > 0 else []
        if expires_at_ms is not None:
            limits.append(max(expires_at_ms - self._gate.wall_ms(), 1))
        lifetime = min(limits) if limits else 0
        self._session_end = self._gate.monotonic() + lifetime / 1000 if lifetime else None
        if first:
            self._widen()
        return lifetime

    def _count_request(self) -> None:
        self._requests += 1
        if self._requests > MAX_PRE_AUTH_REQUESTS:
            self._gate.refused("malformed")
            raise SaslStateError(f"more than {MAX_PRE_AUTH_REQUESTS} requests before authentication")
