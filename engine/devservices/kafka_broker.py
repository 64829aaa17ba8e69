"""A real Apache Kafka broker (single node, KRaft, loopback) as a child process: the peer of
`streamhouse bench kafka`. Its jars are resolved from Maven Central once (`mvn
dependency:copy-dependencies` on a generated pom, cached under ~/.cache/streamhouse), then
the storage is formatted and `kafka.Kafka` runs on a generated server.properties."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from streamhouse.devservices.ports import free_port
from streamhouse.storage.errors import StreamHouseError

KAFKA_VERSION = "4.4.0"
START_TIMEOUT_S = 90.0
MAVEN_TIMEOUT_S = 900.0

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>streamhouse</groupId>
  <artifactId>kafka-broker-peer</artifactId>
  <version>1</version>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{version}</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId><artifactId>slf4j-simple</artifactId><version>1.7.36</version>
    </dependency>
  </dependencies>
</project>
"""


class KafkaBrokerError(StreamHouseError):
    """The reference broker could not be resolved, formatted or started (see its log)."""


@dataclass(frozen=True)
class KafkaBroker:
    """A running broker child; `bootstrap` is its PLAINTEXT listener on loopback."""

    proc: subprocess.Popen[bytes]
    bootstrap: str
    version: str
    log_path: Path

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM is Kafka's controlled shutdown; kill only if it does not finish in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def java_command() -> str:
    """$JAVA_HOME/bin/java if set, else `java` on PATH (Kafka 4.x brokers need Java 17+)."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).exists():
        raise KafkaBrokerError("no `java` found (set JAVA_HOME or put Java 17+ on PATH) to run the Kafka broker")
    return java


def resolve_jars(version: str = KAFKA_VERSION, cache_dir: Path | None = None) -> Path:
    """The directory holding kafka_2.13-<version> and its runtime dependencies; fetched once."""
    root = cache_dir or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "streamhouse"
    build = root / f"kafka-{version}"
    lib = build / "lib"
    if (lib / f"kafka_2.13-{version}.jar").exists():
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaBrokerError("`mvn` is not on PATH: it is needed once to fetch the Kafka broker jars")
    build.mkdir(parents=True, exist_ok=True)
    (build / "pom.xml").write_text(_POM.format(version=version))
    # Into a scratch dir first, renamed at the end: an interrupted fetch never looks complete.
    scratch = build / "lib.partial"
    shutil.rmtree(scratch, ignore_errors=True)
    done = subprocess.run(
        [mvn, "-q", "-B", "dependency:copy-dependencies", f"-DoutputDirectory={scratch}"],
        cwd=build,
        capture_output=True,
        text=True,
        timeout=MAVEN_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
        raise KafkaBrokerError(f"mvn could not resolve org.apache.kafka:kafka_2.13:{version}: " + " | ".join(tail))
    shutil.rmtree(lib, ignore_errors=True)
    scratch.rename(lib)
    return lib


def _properties(port: int, controller_port: int, log_dir: Path) -> str:
    # One node that is both broker and controller; internal topics with one replica, since
    # there is no other broker to place a second one on.
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
            f"log.dirs={log_dir}",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "",
        ]
    )


def start_kafka_broker(
    workdir: Path, *, version: str = KAFKA_VERSION, heap: str = "1g", timeout_s: float = START_TIMEOUT_S
) -> KafkaBroker:
    """Format a fresh KRaft log dir under `workdir` and start the broker; returns once its
    client port accepts connections (it opens only after the broker has started)."""
    lib = resolve_jars(version)
    java = java_command()
    workdir.mkdir(parents=True, exist_ok=True)
    port, controller_port = free_port(), free_port()
    config = workdir / "server.properties"
    config.write_text(_properties(port, controller_port, workdir / "data"))
    log_path = workdir / "broker.log"
    classpath = ["-cp", f"{lib}/*", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn"]
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    with open(log_path, "ab") as log:
        formatted = subprocess.run(
            [java, *classpath, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config)],
            stdout=log,
            stderr=log,
            timeout=120,
            check=False,
        )
        if formatted.returncode != 0:
            raise KafkaBrokerError(f"kafka-storage format failed (exit {formatted.returncode}); see {log_path}")
        proc = subprocess.Popen(
            [java, f"-Xms{heap}", f"-Xmx{heap}", *classpath, "kafka.Kafka", str(config)],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    broker = KafkaBroker(proc, f"127.0.0.1:{port}", version, log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise KafkaBrokerError(f"Kafka broker exited with code {proc.returncode} at start; see {log_path}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return broker
        except OSError:
            time.sleep(0.2)
    broker.stop(5)
    raise KafkaBrokerError(f"Kafka broker did not listen within {timeout_s:.0f} s; see {log_path}")
