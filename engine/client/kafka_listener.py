"""A Kafka listener for the embedded engine (`streamhouse.open`), so a notebook or script
can point a Kafka client at the engine it runs in-process. Usually through `open` itself:

    sh = streamhouse.open("./data", kafka_port=0)   # sh.kafka_bootstrap == "127.0.0.1:<port>"
    confluent_kafka.Producer({"bootstrap.servers": sh.kafka_bootstrap})
    sh.close()                                      # stops the listener, then the engine

or on an engine already open:

    kafka = serve_kafka(sh, port=0)                 # kafka.bootstrap == "127.0.0.1:<port>"
    kafka.close()                                   # or leave it to sh.close()

The listener runs on the embedded engine's own event loop (its background thread), next
to the AgentService it serves (EmbeddedTransport.start_kafka).
"""

from __future__ import annotations

from typing import Any

from streamhouse.client.client import Client
from streamhouse.client.embedded import EmbeddedTransport
from streamhouse.kafka.server import KafkaServer
from streamhouse.storage.errors import InvalidInputError


class EmbeddedKafka:
    def __init__(self, transport: EmbeddedTransport, server: KafkaServer) -> None:
        self._transport = transport
        self.server = server
        self._closed = False

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def bootstrap(self) -> str:
        return f"{self.server.host}:{self.server.port}"

    def close(self) -> None:
        """Stops listening and drops every connection; call it before closing the client."""
        if self._closed:
            return
        self._closed = True
        if self.server in self._transport.kafka_servers:  # else the engine's close() stopped it
            self._transport.stop_kafka(self.server)

    def __enter__(self) -> EmbeddedKafka:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def serve_kafka(
    client: Client, *, port: int = 0, host: str | None = None, advertised: str | None = None
) -> EmbeddedKafka:
    """Starts a Kafka listener on an embedded client's engine (port 0: any free port; host:
    the engine's own `host` setting, 127.0.0.1 by default)."""
    transport = client.transport
    if not isinstance(transport, EmbeddedTransport):
        raise InvalidInputError("serve_kafka needs an embedded engine (streamhouse.open); agents take --kafka-port")
    return EmbeddedKafka(transport, transport.start_kafka(port=port, host=host, advertised=advertised))
