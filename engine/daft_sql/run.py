"""Running one query through Daft: `streamhouse sql --engine daft` (Daft's native runner in this
process) or `--engine ray://host:port` (Daft on that Ray cluster; `ray` alone: the cluster
`ray.init()` finds, or a local one).

    run_daft(client, sql, engine, storage) -> pa.Table

Topics, their segment lists and footers come from the metadata and object stores named by
`storage` (the agents' own --metadata / --object-store / --s3-endpoint), the tails through
`client`. Daft runs one runner per process, so the first query decides it; asking for another
afterwards is refused (EngineChoiceError) rather than silently running on the first.

Statements other than queries (SHOW, DESCRIBE, DDL, SET) are not for Daft: the CLI sends those
to the agent as usual.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import pyarrow as pa
from sqlglot import exp

from streamhouse.client.client import Client
from streamhouse.daft_sql.dialect import to_daft_sql
from streamhouse.daft_sql.errors import DaftNotInstalledError
from streamhouse.daft_sql.sources import TopicFiles, check_values, list_files, read_tails, topic_frame
from streamhouse.daft_sql.windows import MAX_WINDOWS_PER_ROW, WINDOW_NUMBERS
from streamhouse.sql.dialect import parse_query
from streamhouse.sql.errors import SqlError
from streamhouse.sql.query.catalog import topic_schema
from streamhouse.sql.query.pruning import TopicBounds, topic_bounds
from streamhouse.storage.errors import InvalidInputError, StreamHouseError
from streamhouse.storage.metadata import open_metadata_store
from streamhouse.storage.model import TopicInfo
from streamhouse.storage.object_store import open_object_store
from streamhouse.storage.segment.reader import SegmentReader
from streamhouse.storage.values.schema import parse_value_schema

T = TypeVar("T")

__all__ = ["EngineChoiceError", "Storage", "is_daft_engine", "list_topic_files", "run_daft"]


class EngineChoiceError(InvalidInputError):
    """An --engine value this process cannot honour (unknown, or another Daft runner than the one
    already running here)."""


@dataclass(frozen=True)
class Storage:
    """Where the segments are: the agents' metadata store and object store."""

    metadata_url: str
    object_store_url: str
    s3_endpoint: str | None = None


def is_daft_engine(engine: str) -> bool:
    return engine == "daft" or engine == "ray" or engine.startswith("ray://")


def run_daft(client: Client, sql: str, engine: str, storage: Storage) -> pa.Table:
    """The rows of one query, computed by Daft; typed errors as the agent's engine raises them."""
    daft = _import_daft()
    _choose_runner(daft, engine)
    infos, files = _run_async(list_topic_files(sql, storage))
    frames = {}
    for name, topic in files.items():
        check_values(topic, _read_columns(sql, topic.info))
        frames[name] = topic_frame(topic, read_tails(client, topic, None), _io_config(storage))
    daft_sql = to_daft_sql(sql, _schema_lookup(infos)).sql
    if WINDOW_NUMBERS in daft_sql:  # HOP / CUMULATE (windows.py)
        numbers = pa.table({"__sh_i": pa.array(range(MAX_WINDOWS_PER_ROW), pa.int64())})
        frames[WINDOW_NUMBERS] = daft.from_arrow(numbers)
    try:
        result = daft.sql(daft_sql, register_globals=False, **frames).to_arrow()
    except StreamHouseError:
        raise
    except Exception as exc:  # Daft raises its own exception types for planning and execution
        raise SqlError(
            f"Daft: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
        ) from None
    return _as_datafusion_types(result)


def _run_async(work: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run`, also from inside a running loop (a notebook cell): then on a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(work)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, work).result()


def _import_daft() -> Any:
    try:
        import daft
    except ImportError:
        raise DaftNotInstalledError(
            "--engine daft / ray:// needs Daft and Ray: pip install 'streamhouse[daft]'"
        ) from None
    return daft


def _choose_runner(daft: Any, engine: str) -> None:
    if not is_daft_engine(engine):
        raise EngineChoiceError(
            f"unknown --engine {engine!r}: use datafusion (the default), daft, ray or ray://host:port"
        )
    want = "native" if engine == "daft" else "ray"
    set_before = getattr(daft.runners, "_get_runner", lambda: None)()
    if set_before is not None:
        # Refused before asking: set_runner_ray would start a local Ray only to keep the old runner.
        _check_runner(daft, engine, want, None)
        return
    try:
        if want == "native":
            daft.set_runner_native()
        else:
            daft.set_runner_ray(address=None if engine == "ray" else engine, noop_if_initialized=True)
    except Exception as exc:  # Daft: "Cannot set runner more than once"
        _check_runner(daft, engine, want, exc)
    else:
        # set_runner_ray(noop_if_initialized=True) keeps a native runner set before without a word.
        _check_runner(daft, engine, want, None)


def _check_runner(daft: Any, engine: str, want: str, cause: Exception | None) -> None:
    current = daft.get_or_infer_runner_type()
    if current != want:
        raise EngineChoiceError(
            f"this process already runs Daft on its {current} runner; --engine {engine} needs a new process"
        ) from cause


async def list_topic_files(sql: str, storage: Storage) -> tuple[dict[str, TopicInfo], dict[str, TopicFiles]]:
    """Each topic the query reads (refusals first) → its pruned segment files and tail starts."""
    metadata = await open_metadata_store(storage.metadata_url)
    store = open_object_store(storage.object_store_url, s3_endpoint=storage.s3_endpoint)
    try:
        infos = {info.name: info for info in await metadata.list_topics()}
        lookup = _schema_lookup(infos)
        daft_query = to_daft_sql(sql, lookup)  # refusals before anything is read
        used = {name: _resolve(name, infos) for name in daft_query.tables}
        for name, info in used.items():
            if info is None:
                raise SqlError(f"unknown topic {name!r}; SHOW TOPICS lists them", name=name)
        known = {name: info for name, info in used.items() if info is not None}
        events = {name: _event_column(info) for name, info in known.items()}
        try:
            bounds = topic_bounds(_normalized(sql), set(known), events)
        except Exception:
            bounds = {}
        reader = SegmentReader(store)
        listed = await asyncio.gather(
            *(
                list_files(metadata, reader, storage.object_store_url, info, bounds.get(name, TopicBounds.everything()))
                for name, info in known.items()
            )
        )
        return infos, dict(zip(known, listed, strict=True))
    finally:
        await store.close()
        await metadata.close()


def _normalized(sql: str) -> exp.Expr:
    from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

    return normalize_identifiers(parse_query(sql), dialect="postgres")


def _resolve(name: str, infos: Mapping[str, TopicInfo]) -> TopicInfo | None:
    if name in infos:
        return infos[name]
    matches = [info for n, info in infos.items() if n.lower() == name.lower()]
    return matches[0] if len(matches) == 1 else None


def _schema_lookup(infos: Mapping[str, TopicInfo]) -> Any:
    def schema_of(name: str) -> pa.Schema:
        info = _resolve(name, infos)
        if info is None:
            raise SqlError(f"unknown topic {name!r}; SHOW TOPICS lists them", name=name)
        return topic_schema(info)

    return schema_of


def _event_column(info: TopicInfo) -> str | None:
    schema = parse_value_schema(info.value_schema)
    return schema.event_time if schema is not None else None


def _read_columns(sql: str, info: TopicInfo) -> list[str]:
    """The topic's columns the query may read, as the agent's engine decides whether rows with
    undecodable values matter (sql/engine.py): all of them under a `*` other than count(*),
    else those named by some identifier (a superset is safe, a subset would not be)."""
    tree = parse_query(sql)
    names = topic_schema(info).names
    if any(not isinstance(star.parent, exp.Count) for star in tree.find_all(exp.Star)):
        return list(names)
    said = {i.name.lower() for i in tree.find_all(exp.Identifier)}
    return [n for n in names if n.lower() in said]


def _io_config(storage: Storage) -> Any:
    """Daft's IO settings for the object store: S3 endpoint and the credentials boto3's chain
    finds (as our own S3 store uses), handed to every worker with the plan."""
    if not storage.object_store_url.startswith("s3://"):
        return None
    import boto3
    from daft.io import IOConfig, S3Config

    session = boto3.session.Session()
    credentials = session.get_credentials()
    frozen = credentials.get_frozen_credentials() if credentials is not None else None
    return IOConfig(
        s3=S3Config(
            endpoint_url=storage.s3_endpoint or None,
            region_name=session.region_name or "us-east-1",
            key_id=frozen.access_key if frozen else None,
            access_key=frozen.secret_key if frozen else None,
            session_token=frozen.token if frozen else None,
            anonymous=frozen is None,
            force_virtual_addressing=False,
        )
    )


def _as_datafusion_types(table: pa.Table) -> pa.Table:
    """Daft's COUNT is UINT64 where DataFusion's is BIGINT: unsigned 64-bit columns become int64."""
    fields = [pa.field(f.name, pa.int64(), f.nullable) if pa.types.is_uint64(f.type) else f for f in table.schema]
    return table.cast(pa.schema(fields)) if fields != list(table.schema) else table
