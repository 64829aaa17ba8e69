"""One agent process: the gRPC server (StreamHouse services, health, reflection), the HTTP
health/metrics endpoint and the AgentService behind both, with graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import functools
import logging
import os
import signal
import socket
from collections.abc import Sequence
from pathlib import Path

from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from streamhouse.agent.config import AgentConfig
from streamhouse.agent.metrics import AgentMetrics
from streamhouse.api.committed_front import read_committed
from streamhouse.api.contract import FrontEnd
from streamhouse.api.guarded import GuardedFrontEnd
from streamhouse.api.quota_front import metered
from streamhouse.api.tls import ClientTls, ServerTls, server_tls
from streamhouse.auth.quota_gate import QuotaGate
from streamhouse.auth.quota_storage import StorageQuotas, UsageGauges
from streamhouse.auth.quota_usage import UsageReport
from streamhouse.client.forward import forward_to_leader
from streamhouse.node import AgentNode
from streamhouse.registry.routes import registry_router
from streamhouse.registry.service import RegistryService
from streamhouse.rpc.convert import MAX_MESSAGE_BYTES
from streamhouse.server.agent_auth import AgentAuth
from streamhouse.server.agent_quota import quota_gate, store_limits
from streamhouse.server.grpc.quota import QuotaInterceptor
from streamhouse.server.grpc.services import add_services
from streamhouse.server.http.server import HttpServer
from streamhouse.storage.errors import AddressInUseError, DirectoryInUseError
from streamhouse.storage.metadata.txn_reads import shared_reads

log = logging.getLogger(__name__)
_DIR_LOCK = "agent.lock"  # next to the WAL's own wal.lock, which is only taken later
_GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),
]


class AgentServer:
    def __init__(self, config: AgentConfig, node: AgentNode, grpc_server: aio.Server, http: HttpServer | None) -> None:
        self.config = config
        self.node = node
        self.service = node.service
        self.grpc_server = grpc_server
        self.http = http
        self._health = health.aio.HealthServicer()
        self._stopped = asyncio.Event()
        self._dir_lock: int | None = None
        self.auth: AgentAuth | None = None  # API keys (engine/server/agent_auth.py)
        self.tls: ServerTls | None = None  # TLS on every port (gRPC, HTTP, Kafka) when set
        self.quotas: QuotaGate | None = None  # rate quotas per org, shared by every face
        self.storage_quotas: StorageQuotas | None = None  # and storage/partition quotas

    @classmethod
    async def start(cls, config: AgentConfig, *, other_ports: Sequence[tuple[int, str]] = ()) -> AgentServer:
        """`other_ports`: (port, what) pairs the caller binds afterwards (Kafka), checked up
        front so a taken one fails before anything starts."""
        # TLS files first: a wrong path or a key of another certificate is one line naming the
        # file, before anything is locked or bound.
        tls = server_tls(config.tls_cert, config.tls_key, config.tls_client_ca, config.tls_ca)
        peer = tls.peer_client(config.tls_ca or None) if tls is not None else None
        # The directory first: a second agent on the same data dir must say so, not fail on
        # a port the first one holds.
        dir_lock = lock_data_dir(config.resolved_wal_dir)
        try:
            if config.http_port > 0:
                _check_port_free(config.host, config.http_port, "HTTP health/metrics")
            for port, what in other_ports:
                _check_port_free(config.host, port, what)
            server = await cls._start(config, tls, peer)
        except BaseException:
            os.close(dir_lock)
            raise
        server._dir_lock = dir_lock  # held while the agent runs; the OS drops it if it dies
        return server

    @classmethod
    async def _start(cls, config: AgentConfig, tls: ServerTls | None, peer: ClientTls | None) -> AgentServer:
        auth = AgentAuth(config)  # before the server: its interceptor is fixed at construction
        quotas = quota_gate(config)  # rate quotas per org (engine/auth/quota_gate.py), after auth
        grpc_server = aio.server(options=_GRPC_OPTIONS, interceptors=[*auth.interceptors(), QuotaInterceptor(quotas)])
        address = f"{config.host}:{config.grpc_port}"
        _check_port_free(config.host, config.grpc_port, "gRPC")
        try:
            if tls is None:
                port = grpc_server.add_insecure_port(address)
            else:
                port = grpc_server.add_secure_port(address, tls.grpc_credentials())
        except RuntimeError:  # grpc >= 1.60 raises where older versions returned 0
            port = 0
        if port == 0:
            raise AddressInUseError(f"cannot listen on {address} (gRPC): the port is in use or the host is not local")
        # Port 0 asks for any free port: the lease holder must carry the real one.
        config = dataclasses.replace(config, grpc_port=port)
        metrics = AgentMetrics()
        # The agent and its jobs (engine/node/); held WAL records reach other leaders over gRPC.
        # With TLS, that client connects as peer says (engine/api/tls.py, ServerTls.peer_client).
        forward = auth.forward(functools.partial(forward_to_leader, tls=peer))
        node = await AgentNode.start(config, metrics=metrics, forward=forward)
        service = node.service
        # Fetches read committed (api/committed_front.py), on the stored names the guard passes in.
        front: FrontEnd = read_committed(service, shared_reads(service.manager.metadata))
        # With auth on, every face's calls pass the ACL check first (engine/api/guarded.py).
        front = front if auth.authenticator is None else GuardedFrontEnd(front)
        storage_quotas = StorageQuotas(quotas, service.manager.metadata)  # storage/partitions per org
        front = metered(front, storage_quotas)  # (engine/api/quota_front.py)
        service.sql_topics.admin = metered(service, storage_quotas)  # SQL CREATE / ALTER TOPIC too
        service.usage_report = UsageReport(quotas, storage_quotas, service.manager.metadata)  # SHOW USAGE
        http: HttpServer | None = None
        try:
            await auth.bind(service.manager.metadata, metrics.registry, service.config.agent_id)
            quotas.bind(store_limits(service.manager.metadata), metrics.registry)
            service.background_faults.append(quotas.faults)  # a quota store that keeps failing
            if config.http_port >= 0:
                # The schema registry (issue 13) on the agent's metadata store, under /registry.
                schemas = RegistryService(service.manager.metadata)  # also REST's AVRO produce
                registry = registry_router(schemas)
                http = HttpServer(
                    config.host,
                    config.http_port,
                    ready=service.ready,
                    metrics=lambda: _render(node),
                    front=front,
                    routers=[registry],
                    registry=schemas,
                    auth=auth.authenticator,
                    tls=tls.ssl_context() if tls is not None else None,
                    peer_tls=peer,
                    quotas=quotas,  # 429 + Retry-After on /v1 and /registry (http/quota.py)
                )
                try:
                    await http.start()
                except OSError as exc:
                    raise AddressInUseError(
                        f"cannot listen on {config.host}:{config.http_port} (HTTP health/metrics): {exc.strerror}"
                    ) from None
            server = cls(service.config, node, grpc_server, http)
            server.auth = auth
            server.quotas = quotas
            server.storage_quotas = storage_quotas
            metrics.registry.register(UsageGauges(storage_quotas))  # storage bytes, partitions per org
            server.tls = tls
            names = add_services(grpc_server, front)
            health_pb2_grpc.add_HealthServicer_to_server(server._health, grpc_server)
            reflection.enable_server_reflection(
                [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
                grpc_server,
            )
            await grpc_server.start()
            for name in ("", *names):
                await server._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        except BaseException:
            if http is not None:
                await http.stop()  # a no-op unless it started
            await node.close(flush=False)
            raise
        log.info("agent %s serving gRPC on %s", service.config.holder, service.config.address)
        if tls is not None:
            mutual = " with client certificates required (mutual TLS)" if tls.mutual else ""
            # Said once at start: forwarding to a peer whose CA is not trusted fails later, per request.
            peers = config.tls_ca or config.tls_client_ca or "the system's CAs (--tls-ca for a private CA)"
            log.info("TLS on every port%s: certificate %s; peers verified against %s", mutual, tls.cert_path, peers)
        return server

    @property
    def address(self) -> str:
        return self.config.address

    @property
    def http_port(self) -> int | None:
        return self.http.port if self.http is not None else None

    async def stop(self, grace_s: float = 5.0) -> None:
        """Graceful: stop taking requests, let in-flight ones finish, flush every led
        partition into segments and release its lease."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self.http is not None:
            self.http.stopping.set()  # REST event streams end now, before the node they read from closes
        await self._health.enter_graceful_shutdown()
        await self.grpc_server.stop(grace_s)
        if self.auth is not None:
            await self.auth.close()  # the agent's own key, revoked
        await self.node.close(flush=True)
        if self.http is not None:
            await self.http.stop()
        if self._dir_lock is not None:
            os.close(self._dir_lock)
            self._dir_lock = None

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


def _check_port_free(host: str, port: int, what: str) -> None:
    """Bind and release the port first: gRPC's own failure is a C-core log line plus a
    RuntimeError without the reason, where the user needs one line naming the port."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise AddressInUseError(f"cannot listen on {host}:{port} ({what}): {exc.strerror}") from None
    family, kind, proto, _name, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # SO_REUSEADDR as the real servers use it: a port in TIME_WAIT is free, a listener is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(sockaddr)
        except OSError as exc:
            raise AddressInUseError(f"cannot listen on {host}:{port} ({what}): {exc.strerror}") from None


def lock_data_dir(directory: Path) -> int:
    """Lock `directory` (the agent's WAL directory, under its data dir) for this process, or
    raise DirectoryInUseError naming the directory and the holder's pid."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / _DIR_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        by = f" (pid {holder})" if holder.isdigit() else ""
        raise DirectoryInUseError(
            f"{directory} is in use by another agent{by}; give each agent its own --data-dir or --wal-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


async def _render(node: AgentNode) -> tuple[bytes, str]:
    service = node.service
    assert service.metrics is not None
    led, buffered = service.gauges()
    service.metrics.set_gauges(led, buffered, service.manager.wal.disk_bytes)
    await service.metrics.jobs.refresh(node.jobs.show)
    return service.metrics.render()


def _kafka_advertised(config: AgentConfig, kafka_port: int) -> str | None:
    """Without --kafka-advertised, Kafka clients go to the host gRPC clients are sent to
    (--advertised-address: a NAT, a container, a --host of 0.0.0.0), on the Kafka port."""
    host = config.advertised_address.rpartition(":")[0]
    return f"{host}:{kafka_port}" if host else None


async def serve(
    config: AgentConfig,
    *,
    ready_line: bool = True,
    kafka_port: int = 0,
    kafka_advertised: str | None = None,
    kafka_max_reauth_ms: int = 0,
) -> None:
    """Run an agent until SIGINT/SIGTERM, then shut down gracefully. `kafka_port` > 0 also
    answers the Kafka wire protocol there (engine/kafka/server.py)."""
    server = await AgentServer.start(config, other_ports=[(kafka_port, "Kafka")] if kafka_port > 0 else [])
    kafka = None
    if kafka_port > 0:
        from streamhouse.kafka.server import KafkaServer

        advertised = kafka_advertised or _kafka_advertised(config, kafka_port)
        kafka_tls = server.tls.ssl_context() if server.tls is not None else None  # clients: security.protocol=SSL
        # With --auth api-key the listener asks for SASL (PLAIN / SCRAM) through the agent's one Authenticator.
        authenticator = server.auth.authenticator if server.auth is not None else None
        kafka = KafkaServer(
            server.service,
            host=config.host,
            port=kafka_port,
            advertised=advertised,
            tls=kafka_tls,
            authenticator=authenticator,
            max_reauth_ms=kafka_max_reauth_ms,  # SASL sessions (engine/kafka/sasl/gate.py)
            quotas=server.quotas,  # throttle_time_ms + a muted connection (engine/kafka/throttle.py)
            storage_quotas=server.storage_quotas,
        )
        try:
            await kafka.start()
        except OSError as exc:
            await server.stop()
            raise AddressInUseError(f"cannot listen on {config.host}:{kafka_port} (Kafka): {exc.strerror}") from None
        except BaseException:
            await server.stop()
            raise
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    if ready_line:
        # One parseable line: tests and scripts wait for it to know the ports.
        # kafka= comes last and only when on, so readers of the first two fields are unaffected.
        tail = f" kafka={config.host}:{kafka.port}" if kafka is not None else ""
        print(f"streamhouse agent listening grpc={server.address} http={server.http_port or '-'}{tail}", flush=True)
    try:
        await stop.wait()
    finally:
        if kafka is not None:
            await kafka.close()
        await server.stop()
