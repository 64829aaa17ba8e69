"""TLS for every port of an agent and for everything that connects to one (issue 15).

One certificate and key serve all three listeners: gRPC (grpc.ssl_server_credentials), HTTP
(REST, schema registry, metrics, health; uvicorn with an ssl.SSLContext) and Kafka (asyncio's
server with the same kind of context: Kafka clients' security.protocol=SSL). A client CA turns
on mutual TLS on all three: a client must present a certificate that CA signed.

The files are read and checked once, at startup, so a wrong path, a file that is not PEM or a
key that does not belong to the certificate is one InvalidInputError naming the file, before
any port is bound, instead of a handshake failure at the first client. The PEM bytes are kept
(gRPC wants bytes, not paths) and the contexts are built from them.

Clients (the SDK's remote transport, the CLI, and agents reaching other agents: WAL hand-over
and REST produce forwarding) use ClientTls: the CA to trust (none = the system's roots), and
the certificate to present when the agent asks for one.

Protocol floor TLS 1.2 on the contexts built here (Python's default floor too, stated so it
cannot drift); ciphers are Python's/OpenSSL's defaults; gRPC's own TLS stack has the same floor.
No principal is taken from a client certificate yet: mutual TLS decides who may connect at
all, API keys (engine/auth/) decide who is asking.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from streamhouse.storage.errors import InvalidInputError

if TYPE_CHECKING:
    import grpc

_MIN_VERSION = ssl.TLSVersion.TLSv1_2


@dataclass(frozen=True)
class ServerTls:
    """The agent's certificate chain and key (PEM), and the CA client certificates must chain
    to (mutual TLS) or None. Build with ServerTls.load, which checks the files."""

    cert_path: str
    key_path: str
    client_ca_path: str | None
    cert_pem: bytes
    key_pem: bytes = field(repr=False)  # a stray log or error of this value must not show the key
    client_ca_pem: bytes | None

    @classmethod
    def load(cls, cert: str, key: str, client_ca: str | None = None) -> ServerTls:
        cert_pem = _read(cert, "TLS certificate (--tls-cert)")
        key_pem = _read(key, "TLS key (--tls-key)")
        _check_certificates(cert, cert_pem, "TLS certificate (--tls-cert)")
        ca_pem = None
        if client_ca:
            ca_pem = _read(client_ca, "TLS client CA (--tls-client-ca)")
            _check_certificates(client_ca, ca_pem, "TLS client CA (--tls-client-ca)")
        tls = cls(cert, key, client_ca or None, cert_pem, key_pem, ca_pem)
        tls.ssl_context()  # the key is checked against the certificate here, once
        return tls

    @property
    def mutual(self) -> bool:
        return self.client_ca_pem is not None

    def ssl_context(self) -> ssl.SSLContext:
        """A server context for the HTTP and Kafka listeners."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = _MIN_VERSION
        _load_chain(ctx, self.cert_path, self.key_path)
        if self.client_ca_pem is not None:
            ctx.load_verify_locations(cadata=self.client_ca_pem.decode("ascii"))
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def grpc_credentials(self) -> grpc.ServerCredentials:
        import grpc

        return grpc.ssl_server_credentials(
            [(self.key_pem, self.cert_pem)],
            root_certificates=self.client_ca_pem,
            require_client_auth=self.mutual,
        )

    def peer_client(self, ca: str | None = None) -> ClientTls:
        """How this agent connects to other agents of its cluster (which share the CA): trusting
        `ca` (--tls-ca), else the client CA (with mutual TLS every agent's certificate is signed
        by it), else the system's roots; presenting its own certificate when mutual TLS is on."""
        ca_pem = _read(ca, "TLS CA (--tls-ca)") if ca else self.client_ca_pem
        if ca:
            assert ca_pem is not None
            _check_certificates(ca, ca_pem, "TLS CA (--tls-ca)")
        if not self.mutual:
            return ClientTls(ca_pem=ca_pem)
        return ClientTls(ca_pem, self.cert_pem, self.key_pem, self.cert_path, self.key_path)


@dataclass(frozen=True)
class ClientTls:
    """What a client needs to connect over TLS: the CA to trust (None = the system's roots) and,
    for mutual TLS, its certificate chain and key (PEM)."""

    ca_pem: bytes | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = field(default=None, repr=False)  # never in a log or an error
    cert_path: str | None = None  # where cert_pem / key_pem came from (ssl loads chains from files)
    key_path: str | None = None

    @classmethod
    def load(cls, ca: str | None = None, cert: str | None = None, key: str | None = None) -> ClientTls:
        if bool(cert) != bool(key):
            raise InvalidInputError("a TLS client certificate needs its key, and a key its certificate (give both)")
        ca_pem = _read(ca, "TLS CA") if ca else None
        if ca:
            assert ca_pem is not None
            _check_certificates(ca, ca_pem, "TLS CA")
        cert_pem = key_pem = None
        cert, key = cert or None, key or None
        if cert and key:
            cert_pem, key_pem = _read(cert, "TLS client certificate"), _read(key, "TLS client key")
            _check_certificates(cert, cert_pem, "TLS client certificate")
            _load_chain(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), cert, key)  # the key matches
        return cls(ca_pem, cert_pem, key_pem, cert, key)

    def grpc_credentials(self) -> grpc.ChannelCredentials:
        import grpc

        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_pem, private_key=self.key_pem, certificate_chain=self.cert_pem
        )

    def ssl_context(self) -> ssl.SSLContext:
        """A client context (HTTP clients such as httpx, tests): verifies the agent's
        certificate and its host name, presents the client certificate if there is one."""
        ctx = ssl.create_default_context(cadata=self.ca_pem.decode("ascii") if self.ca_pem else None)
        ctx.minimum_version = _MIN_VERSION
        if self.cert_path and self.key_path:
            _load_chain(ctx, self.cert_path, self.key_path)
        return ctx


def server_tls(cert: str, key: str, client_ca: str = "", peer_ca: str = "") -> ServerTls | None:
    """The agent's TLS from its settings (--tls-cert, --tls-key, --tls-client-ca, --tls-ca),
    checked; None when TLS is off. Half a setting is refused rather than silently plaintext."""
    if not cert and not key:
        for value, flag in ((client_ca, "--tls-client-ca"), (peer_ca, "--tls-ca")):
            if value:
                raise InvalidInputError(f"{flag} needs --tls-cert and --tls-key (TLS is off without them)")
        return None
    if not cert or not key:
        raise InvalidInputError("TLS needs both --tls-cert and --tls-key")
    return ServerTls.load(cert, key, client_ca or None)


def grpc_channel(address: str, tls: ClientTls | None, options: list[tuple[str, int]]) -> grpc.Channel:
    """A channel to an agent: TLS when `tls` is given, plaintext otherwise."""
    import grpc

    if tls is None:
        return grpc.insecure_channel(address, options=options)
    return grpc.secure_channel(address, tls.grpc_credentials(), options=options)


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None


def _check_certificates(path: str, pem: bytes, what: str) -> None:
    """One or more PEM certificates, parsed for real (OpenSSL), so a key given as the
    certificate or a damaged file is named here rather than at the first handshake."""
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise InvalidInputError(f"the {what} {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=pem.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInputError(f"the {what} {path} is not a valid PEM certificate: {_reason(exc)}") from None


def _no_password() -> bytes:
    # OpenSSL would otherwise prompt on the terminal for an encrypted key.
    raise InvalidInputError("encrypted private keys are not supported; give the key unencrypted (PEM)")


def _load_chain(ctx: ssl.SSLContext, cert: str, key: str) -> None:
    try:
        ctx.load_cert_chain(cert, key, password=_no_password)
    except InvalidInputError as exc:
        raise InvalidInputError(f"the TLS key {key}: {exc}") from None
    except OSError as exc:  # ssl.SSLError is an OSError
        if isinstance(exc, ssl.SSLError) and exc.reason == "KEY_VALUES_MISMATCH":
            raise InvalidInputError(f"the TLS key {key} does not belong to the certificate {cert}") from None
        raise InvalidInputError(f"the TLS key {key} is not a valid PEM private key: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text.split(" (_ssl.c")[0]  # OpenSSL's reason, without CPython's source line
