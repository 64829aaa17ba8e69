"""The SDK's face: one synchronous API whether the engine is embedded (`streamhouse.open`)
or remote (`streamhouse.connect`). Values in, Arrow tables out."""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from streamhouse.api.types import (
    Acks,
    GroupDescription,
    GroupOffset,
    JobDescription,
    ProduceResult,
    TopicDescription,
)
from streamhouse.api.values import as_table, batch_from_table, batch_from_values
from streamhouse.client.acked_read import read_acknowledged
from streamhouse.client.admin import KeysAdmin
from streamhouse.client.consumer import ConsumedRecord, Consumer, Start, empty_polled, partition_column
from streamhouse.client.progress import progress as progress_bar
from streamhouse.client.routing import ProduceRouter
from streamhouse.client.shell import register_in_running_shell
from streamhouse.client.topic_table import TopicTable
from streamhouse.client.transport import Transport
from streamhouse.sql.query.limits import parse_set
from streamhouse.storage import topic_config
from streamhouse.storage.errors import (
    InvalidInputError,
    JobLagTimeoutError,
    JobNotFoundError,
    TopicExistsError,
)
from streamhouse.storage.metadata.isolation import parse_isolation
from streamhouse.storage.model import TopicInfo

if TYPE_CHECKING:
    import pandas as pd

# The API key connect() sends when none is given (the CLI's remote commands read it too).
API_KEY_ENV = "STREAMHOUSE_API_KEY"
# produce_table converts and sends a table this many rows at a time (one progress step each).
_TABLE_CHUNK_ROWS = 100_000


@dataclass(frozen=True)
class RecordMetadata:
    """Where one produced record landed (offset -1 with acks='none')."""

    topic: str
    partition: int
    offset: int


# Clients in the order they were opened: `%sql` runs on the last one still open.
_OPENED: list[weakref.ref[Client]] = []


def latest_client() -> Client | None:
    """The client opened last that is not closed yet, if any."""
    for ref in reversed(_OPENED):
        client = ref()
        if client is not None and not client.closed:
            return client
    return None


class Client:
    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.closed = False
        self._router = ProduceRouter(transport)
        # The session's SET values (statement_timeout, query_memory), sent with every statement.
        self._settings: dict[str, str] = {}
        _OPENED[:] = [ref for ref in _OPENED if ref() is not None]
        _OPENED.append(weakref.ref(self))
        register_in_running_shell()

    # -- topics ---------------------------------------------------------------------------------
    def create_topic(
        self,
        name: str,
        partitions: int = 1,
        *,
        config: Mapping[str, str] | None = None,
        value_schema: str | None = None,
        exist_ok: bool = False,
    ) -> TopicInfo:
        """`config`: topic settings (storage/topic_config.py); an unknown key is refused with
        the closest known one as a suggestion, a Kafka key nothing enforces yet as not supported."""
        checked = topic_config.create_config(config, f"create_topic {name}")
        try:
            info = self.transport.create_topic(name, partitions, checked, value_schema)
        except TopicExistsError:
            if not exist_ok:
                raise
            return self.describe(name).info
        self._router.remember(name, info.partitions)
        return info

    def alter_topic(
        self,
        topic: str,
        *,
        set: Mapping[str, str] | None = None,  # the SQL word; shadows the builtin only in here
        reset: Sequence[str] = (),
        add_partitions: int | None = None,
    ) -> TopicInfo:
        """ALTER TOPIC: `set` settings (e.g. {"json.ignore-errors": "true"}), `reset` them to
        their defaults, or `add_partitions` more partitions (the count only grows; keyed records
        then hash over the new count, existing records stay where they are). All of it or
        nothing; returns the topic as it now is."""
        info = self.transport.alter_topic(topic, set if set is not None else {}, reset, add_partitions)
        self._router.remember(topic, info.partitions)
        return info

    def topics(self) -> list[TopicInfo]:
        return self.transport.list_topics()

    def describe(self, topic: str) -> TopicDescription:
        description = self.transport.describe_topic(topic)
        self._router.remember(topic, description.info.partitions)
        return description

    def table(self, topic: str) -> TopicTable:
        """The topic as a table: `.to_pandas()`, `.to_arrow()`, `.append(df)`, `len()`."""
        self.describe(topic)  # TopicNotFoundError now, not at first use
        return TopicTable(self, topic)

    def delete_topic(self, topic: str) -> None:
        self.transport.delete_topic(topic)
        self._router.forget(topic)

    def _partition_count(self, topic: str) -> int:
        return self._router.partition_count(topic)

    # -- produce --------------------------------------------------------------------------------
    def produce(
        self,
        topic: str,
        value: object,
        *,
        key: object = None,
        headers: Mapping[str, bytes | str | None] | Sequence[tuple[str, bytes | str | None]] | None = None,
        timestamp: int | datetime | None = None,
        partition: int | None = None,
        acks: Acks = "leader",
    ) -> RecordMetadata:
        """One record: bytes, str, or anything JSON-serialisable (dicts become JSON)."""
        results = self.produce_batch(
            topic,
            [value],
            keys=None if key is None else [key],
            headers=None if headers is None else [headers],
            timestamps=None if timestamp is None else [timestamp],
            partition=partition,
            acks=acks,
        )
        r = results[0]
        return RecordMetadata(topic, r.partition, r.base_offset)

    def produce_batch(
        self,
        topic: str,
        values: Sequence[object],
        *,
        keys: Sequence[object] | None = None,
        headers: Sequence[Mapping[str, bytes | str | None] | Sequence[tuple[str, bytes | str | None]] | None]
        | None = None,
        timestamps: Sequence[int | datetime | None] | None = None,
        partition: int | None = None,
        acks: Acks = "leader",
    ) -> list[ProduceResult]:
        """Many records at once; returns where each partition's share landed."""
        batch = batch_from_values(values, keys=keys, headers=headers, timestamps=timestamps)
        return self.produce_arrow(topic, batch, partition=partition, acks=acks)

    def produce_table(
        self,
        topic: str,
        data: pa.Table | pa.RecordBatch | pd.DataFrame,
        *,
        key_column: str | None = None,
        timestamp_column: str | None = None,
        value_column: str | None = None,
        partition: int | None = None,
        acks: Acks = "leader",
        progress: bool | None = None,
    ) -> list[ProduceResult]:
        """A whole table: each row becomes a JSON value (or `value_column` is the value),
        optionally keyed and timestamped by columns. Converted column-wise, not row by row, a
        chunk of rows at a time; `progress` draws a bar (default: only in Jupyter)."""
        data = as_table(data)
        results: list[ProduceResult] = []
        with progress_bar(data.num_rows, f"produce {topic}", progress) as advance:
            for start in range(0, max(data.num_rows, 1), _TABLE_CHUNK_ROWS):
                chunk = data.slice(start, _TABLE_CHUNK_ROWS)
                batch = batch_from_table(
                    chunk, key_column=key_column, timestamp_column=timestamp_column, value_column=value_column
                )
                results.extend(self.produce_arrow(topic, batch, partition=partition, acks=acks))
                advance(chunk.num_rows)
        return results

    def produce_arrow(
        self, topic: str, batch: pa.RecordBatch | pa.Table, *, partition: int | None = None, acks: Acks = "leader"
    ) -> list[ProduceResult]:
        """Record-schema rows as they are: keys pick partitions with Kafka's murmur2, rows
        without a key go round robin, unless `partition` is given (client/routing.py)."""
        return self._router.send(topic, batch, partition, acks)

    # -- consume --------------------------------------------------------------------------------
    def consumer(
        self,
        topic: str,
        *,
        group: str | None = None,
        start: Start = "committed",
        partitions: Sequence[int] | None = None,
        auto_commit: bool = True,
        isolation: str = "read_committed",
    ) -> Consumer:
        """`isolation="read_uncommitted"` also shows records of open and aborted Kafka
        transactions (debugging); by default only committed ones, as read_committed."""
        return Consumer(
            self, topic, group=group, start=start, partitions=partitions, auto_commit=auto_commit, isolation=isolation
        )

    def read(
        self, topic: str, *, partitions: Sequence[int] | None = None, start: int = 0, isolation: str = "read_committed"
    ) -> pa.Table:
        """Everything acknowledged so far (from offset `start` in each partition), as one
        table with a `partition` column: a bounded read, for notebooks and tests. Committed
        records only (Kafka transactions: nothing past a partition's last stable offset, no
        aborted record) unless `isolation="read_uncommitted"`."""
        isolation = parse_isolation(isolation, "isolation")
        description = self.describe(topic)
        wanted = range(description.info.partitions) if partitions is None else partitions
        starts = {s.partition: s.log_start for s in description.partitions}
        tables = []
        for p in wanted:
            offset = max(start, starts.get(p, 0))  # below the log start nothing is kept (retention)
            acked = description.end_offsets.get(p, 0)
            for records in read_acknowledged(self.transport, topic, p, offset, acked=acked, isolation=isolation):
                tables.append(records.add_column(0, "partition", partition_column(p, records.num_rows)))
        return pa.concat_tables(tables) if tables else empty_polled()

    # -- consumer groups ------------------------------------------------------------------------
    def groups(self) -> list[str]:
        return self.transport.list_groups()

    def describe_group(self, group: str) -> GroupDescription:
        return self.transport.describe_group(group)

    def committed(self, group: str, topic: str) -> list[GroupOffset]:
        return self.transport.fetch_offsets(group, topic)

    def commit(self, group: str, topic: str, offsets: Mapping[int, int]) -> None:
        self.transport.commit_offsets(group, topic, offsets)

    def reset_group(self, group: str, topic: str, to: str | int = "earliest") -> list[GroupOffset]:
        """Move a group's offsets on `topic` to "earliest" (the log start), "latest" or an
        absolute offset."""
        description = self.describe(topic)
        ends = description.durable_end_offsets  # "latest": the high watermark
        if to == "earliest":
            target = {s.partition: s.log_start for s in description.partitions}
        elif to == "latest":
            target = dict(ends)
        elif isinstance(to, int) and not isinstance(to, bool) and to >= 0:
            target = {p: min(to, end) for p, end in ends.items()}  # Kafka clamps to the valid range
        else:
            raise InvalidInputError(f"reset target must be earliest, latest or an offset >= 0, not {to!r}")
        self.transport.commit_offsets(group, topic, target)
        return self.committed(group, topic)

    # -- SQL ------------------------------------------------------------------------------------
    def sql(self, query: str) -> pa.Table:
        """Run one SQL statement: a query over topics (→ its rows), topic DDL (CREATE TOPIC …,
        DROP TOPIC …), SHOW TOPICS, DESCRIBE topic or EXPLAIN query.

        `SET statement_timeout = '10s'` / `SET query_memory = '512MB'` (and `RESET name`,
        `RESET ALL`) lower this client's limits for every later statement; the agent checks
        them and refuses a value over its own limit. Over a limit the statement raises
        QueryTimeoutError / QueryMemoryExceededError. Ctrl-C (KeyboardInterrupt) cancels the
        statement on the agent or in the embedded engine, then propagates."""
        if query.lstrip()[:5].upper() == "ALTER":  # ALTER TOPIC … ADD PARTITIONS: re-read the counts
            self._router.forget()
        setting = parse_set(query)
        table = self.transport.sql(query, self._settings)
        if setting is not None:  # the agent accepted it: keep it for this session
            if setting.value is not None:
                self._settings[setting.name] = setting.value
            elif setting.name == "all":
                self._settings.clear()
            else:
                self._settings.pop(setting.name, None)
        return table

    @property
    def settings(self) -> dict[str, str]:
        """This session's SET values (a copy)."""
        return dict(self._settings)

    # -- continuous queries ---------------------------------------------------------------------
    def create_job(self, name: str, select: str, *, into: str | None = None, **options: str) -> pa.Table:
        """A continuous query: `CREATE MATERIALIZED VIEW name AS select` (its output is a new
        topic `name`), or with `into=` an `INSERT INTO` that existing topic. Options as in SQL,
        with _ for - (emit="final", dead_letter="late", idle_timeout="10s",
        checkpoint_interval="1s", start="earliest")."""
        with_options = ", ".join(f"'{k.replace('_', '-')}' = '{v}'" for k, v in options.items())
        with_clause = f" WITH ({with_options})" if with_options else ""
        if into is not None:
            return self.sql(f'INSERT INTO "{into}"{with_clause} {select}')
        return self.sql(f'CREATE MATERIALIZED VIEW "{name}"{with_clause} AS {select}')

    def jobs(self) -> pa.Table:
        """SHOW JOBS: state, source lag, watermark, rows in/out, late rows, last checkpoint."""
        return self.sql("SHOW JOBS")

    def describe_job(self, name: str) -> JobDescription:
        """One job's row of SHOW JOBS as a value (an HTML card in Jupyter)."""
        for row in self.jobs().to_pylist():
            if row["job"] == name:
                return JobDescription.from_row(row)
        raise JobNotFoundError(name)

    def wait_for_job(self, name: str, *, timeout: float = 60.0, progress: bool | None = None) -> JobDescription:
        """Block until the job has read and checkpointed everything produced to its source so
        far (its results for the windows that closed are then visible); JobLagTimeoutError if
        it has not within `timeout` seconds. `progress` draws the lag going down."""
        deadline = time.monotonic() + timeout
        job = self.describe_job(name)
        with progress_bar(job.source_lag, f"job {name}", progress) as advance:
            behind = job.source_lag
            while not job.caught_up:
                if time.monotonic() > deadline:
                    raise JobLagTimeoutError(name, timeout, job.source_lag, job.state)
                time.sleep(0.05)
                job = self.describe_job(name)
                advance(max(0, behind - job.source_lag))
                behind = min(behind, job.source_lag)
        return job

    def drop_job(self, name: str, *, drop_topic: bool = True) -> None:
        """Stop and remove a job; a materialized view's own topic goes too unless drop_topic=False."""
        self.sql(f'DROP {"MATERIALIZED VIEW" if drop_topic else "JOB"} "{name}"')

    def subscribe(self, topic: str, *, group: str | None = None, start: Start = "latest") -> Iterator[ConsumedRecord]:
        """Every new record of a topic (a view's results, say) as it is committed, forever."""
        with self.consumer(topic, group=group, start=start) as consumer:
            yield from consumer

    @property
    def kafka_bootstrap(self) -> str | None:
        """host:port of the embedded engine's Kafka listener (`open(..., kafka_port=...)`);
        None without one, and for remote clients (the agent's --kafka-port)."""
        bootstrap: str | None = getattr(self.transport, "kafka_bootstrap", None)
        return bootstrap

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def auth(self) -> KeysAdmin:
        """Organisations and API keys (create_org, create_key, keys, revoke): engine/client/admin.py."""
        return KeysAdmin(self.transport)

    def close(self) -> None:
        self.closed = True
        self.transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<streamhouse.Client {type(self.transport).__name__}>"


def open_embedded(
    path: str = "./streamhouse-data",
    *,
    kafka_port: int | None = None,
    kafka_advertised: str | None = None,
    **settings: Any,
) -> Client:
    """The whole engine in this process, on a local folder (SQLite, local objects, WAL).
    `kafka_port` also answers Kafka clients there (0: any free port; the address is
    `client.kafka_bootstrap`), on `host` (default 127.0.0.1), until `close()`."""
    from streamhouse.agent.config import AgentConfig
    from streamhouse.client.embedded import EmbeddedTransport

    transport = EmbeddedTransport(AgentConfig(data_dir=str(path), **settings))
    if kafka_port is not None:
        try:
            transport.start_kafka(port=kafka_port, advertised=kafka_advertised)
        except BaseException:
            transport.close()  # a taken port must not leave the directory locked
            raise
    return Client(transport)


def connect(address: str | Sequence[str] = "localhost:50051", **options: Any) -> Client:
    """A running agent (or several: "a:50051,b:50051"). `api_key="<key_id>.<secret>"` for an
    agent started with `--auth api-key` (default: the STREAMHOUSE_API_KEY variable, if set)."""
    from streamhouse.client.remote import RemoteTransport

    if options.get("api_key") is None:
        options["api_key"] = os.environ.get(API_KEY_ENV) or None
    return Client(RemoteTransport(address, **options))
