"""`streamhouse produce` and `streamhouse consume`: kafka-console-producer/-consumer.

produce: one record per input line (the trailing newline stripped, empty lines skipped),
sent in batches. Keys come from a JSON field (--key-field) or a `key<SEP>value` split
(--key-separator); a line that does not fit fails the command, naming its line number,
before any record of its batch is sent.

consume: JSON lines on stdout, one per record:

    {"partition": 0, "offset": 7, "timestamp": 1700000000000, "key": "k", "value": "…",
     "headers": [{"key": "h", "value": "v"}]}

key, value and header values are UTF-8 text when the bytes are valid UTF-8, null when
absent; otherwise they are base64 and the object carries a marker next to them:
"key_encoding": "base64", "value_encoding": "base64" (headers: "value_encoding" inside the
header object). `--format value` prints only the value bytes, one per line (null as "null").
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from rich.progress import BarColumn, DownloadColumn, Progress, ProgressColumn, SpinnerColumn, Task, TextColumn
from rich.text import Text

from streamhouse.commands import common
from streamhouse.storage.errors import InvalidInputError

if TYPE_CHECKING:
    import pyarrow as pa

    from streamhouse.client.client import Client
    from streamhouse.client.consumer import ConsumedRecord, Consumer

DEFAULT_BATCH = 10_000


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    engine = common.engine_options()
    produce = commands.add_parser(
        "produce",
        parents=[engine],
        help="send lines of a file or stdin as records",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    produce.add_argument("topic")
    produce.add_argument("--file", metavar="PATH", help="read this file instead of stdin")
    keys = produce.add_mutually_exclusive_group()
    keys.add_argument(
        "--key-field",
        metavar="FIELD",
        help="lines are JSON objects; the key is this field (strings as is, other values as JSON, null = no key)",
    )
    keys.add_argument("--key-separator", metavar="SEP", help="lines are KEY<SEP>VALUE (split at the first SEP)")
    produce.add_argument("--partition", type=common.non_negative_int, help="send every record to this partition")
    produce.add_argument("--acks", choices=["leader", "durable", "none"], default="leader")
    produce.add_argument(
        "--batch-size",
        type=common.positive_int,
        help=f"lines per produce request (default {DEFAULT_BATCH:,}; 1 when typing into a terminal)",
    )

    consume = commands.add_parser(
        "consume",
        parents=[engine],
        help="print records as JSON lines",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    consume.add_argument("topic")
    consume.add_argument(
        "--from-beginning",
        action="store_true",
        help="partitions without a committed group offset start at the first record, not at the end",
    )
    consume.add_argument("--group", help="resume from and commit to this consumer group")
    consume.add_argument("--max", type=common.positive_int, metavar="N", help="stop after N records")
    consume.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="stop after this long without a record (default: never)"
    )
    consume.add_argument(
        "--partition", type=common.non_negative_int, action="append", metavar="P", help="read only P; repeatable"
    )
    consume.add_argument(
        "--format", choices=["json", "value"], default="json", help="JSON lines (default) or just each value"
    )


# -- produce ------------------------------------------------------------------------------------


def run_produce(args: argparse.Namespace) -> int:
    if args.key_separator == "":
        raise InvalidInputError("--key-separator must not be empty")
    interactive = args.file is None and _isatty(sys.stdin)
    batch_size: int = args.batch_size or (1 if interactive else DEFAULT_BATCH)
    show = _isatty(sys.stderr) or args.file is not None
    sent = 0
    with ExitStack() as stack:
        lines, size = _open_input(stack, args.file)
        client = stack.enter_context(common.open_client(args))
        progress = stack.enter_context(_progress(show, size))
        task = progress.add_task(f"produce {args.topic}", total=size, records=0)
        values: list[bytes] = []
        keys: list[bytes | None] = []
        read = 0
        for number, raw in enumerate(lines, start=1):
            read += len(raw)
            line = raw.removesuffix(b"\n").removesuffix(b"\r")
            if not line:
                continue
            key, value = _split(line, number, args)
            values.append(value)
            keys.append(key)
            if len(values) >= batch_size:
                sent += _send(client, args, values, keys)
                progress.update(task, completed=read, records=sent)
                values, keys = [], []
        sent += _send(client, args, values, keys)
        progress.update(task, completed=read, records=sent)
    print(f"produced {sent} records to {args.topic}", file=sys.stderr)
    return 0


def _open_input(stack: ExitStack, path: str | None) -> tuple[Iterator[bytes], int | None]:
    """Lines as bytes (records carry exactly what was read) and the size when known."""
    if path is not None:
        try:
            f = stack.enter_context(open(path, "rb"))  # noqa: SIM115 - the stack closes it
        except OSError as exc:
            raise InvalidInputError(f"cannot read {path}: {exc.strerror}") from None
        return iter(f), os.fstat(f.fileno()).st_size
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is not None:
        return iter(buffer), None
    # A text-only stdin (tests, embedding): encode what it yields.
    return (line.encode() for line in sys.stdin), None


def _split(line: bytes, number: int, args: argparse.Namespace) -> tuple[bytes | None, bytes]:
    """(key, value) of one input line."""
    if args.key_separator is not None:
        key, sep, value = line.partition(args.key_separator.encode())
        if not sep:
            raise InvalidInputError(f"line {number}: no key separator {args.key_separator!r}")
        return key, value
    if args.key_field is not None:
        try:
            doc = json.loads(line)
        except ValueError as exc:
            raise InvalidInputError(f"line {number}: not JSON ({exc})") from None
        if not isinstance(doc, dict) or args.key_field not in doc:
            raise InvalidInputError(f"line {number}: no field {args.key_field!r} in a JSON object")
        field = doc[args.key_field]
        if field is None:
            return None, line
        if isinstance(field, str):
            return field.encode(), line
        return json.dumps(field, separators=(",", ":"), ensure_ascii=False).encode(), line
    return None, line


def _send(client: Client, args: argparse.Namespace, values: list[bytes], keys: list[bytes | None]) -> int:
    if not values:
        return 0
    # An all-null key list is passed as None so unkeyed records go round robin cheaply.
    has_keys = any(k is not None for k in keys)
    client.produce_batch(args.topic, values, keys=keys if has_keys else None, partition=args.partition, acks=args.acks)
    return len(values)


class _RecordsColumn(ProgressColumn):
    """Records sent and records per second (rich's own speed column counts bytes)."""

    def render(self, task: Task) -> Text:
        records = int(task.fields.get("records", 0))
        elapsed = task.elapsed or 0.0
        rate = records / elapsed if elapsed > 0 else 0.0
        return Text(f"{records:,} records  {rate:,.0f} records/s")


def _progress(show: bool, size: int | None) -> Progress:
    columns: list[str | ProgressColumn] = [TextColumn("{task.description}")]
    if size is None:
        columns.append(SpinnerColumn())
    else:
        columns += [BarColumn(), DownloadColumn()]
    columns.append(_RecordsColumn())
    return Progress(*columns, console=common.stderr_console(), disable=not show)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


# -- consume ------------------------------------------------------------------------------------


def run_consume(args: argparse.Namespace) -> int:
    count = 0
    with common.open_client(args) as client:
        consumer = client.consumer(
            args.topic,
            group=args.group,
            start="earliest" if args.from_beginning else "latest",
            partitions=args.partition,
            auto_commit=False,
        )
        if args.group is not None:
            _resume(client, consumer, args.group)
        try:
            for written in _consume(consumer, args):
                count += written
        except KeyboardInterrupt:
            pass  # Ctrl-C is the normal way to stop an unbounded consume
        finally:
            if args.group is not None:
                consumer.commit()
            consumer.close()
    print(f"consumed {count} records from {args.topic}", file=sys.stderr)
    return 0


def _resume(client: Client, consumer: Consumer, group: str) -> None:
    """Committed offsets win over --from-beginning, as in Kafka: the consumer was opened at
    earliest/latest, and partitions the group has committed move to the committed offset."""
    mine = set(consumer.partitions)
    for offset in client.committed(group, consumer.topic):
        if offset.partition in mine and offset.committed_offset >= 0:
            consumer.seek(offset.partition, offset.committed_offset)


def _consume(consumer: Consumer, args: argparse.Namespace) -> Iterator[int]:
    """Poll and print until --max or the idle --timeout; yields how many records each
    write delivered, so the caller's count survives a Ctrl-C."""
    limit: int | None = args.max
    idle_since = time.monotonic()
    while limit is None or limit > 0:
        # Short polls keep Ctrl-C and the idle timeout responsive on long-polling fetches.
        wait = 1.0
        if args.timeout is not None:
            left = args.timeout - (time.monotonic() - idle_since)
            if left <= 0:
                return
            wait = min(wait, left)
        table = consumer.poll(timeout=wait, max_records=limit)
        if table.num_rows == 0:
            continue
        idle_since = time.monotonic()
        partition = table.column("partition")[0].as_py()
        first = table.column("offset")[0].as_py()
        if limit is not None and table.num_rows > limit:
            table = table.slice(0, limit)
            consumer.seek(partition, table.column("offset")[table.num_rows - 1].as_py() + 1)
        try:
            _write(_render(consumer, table, args.format))
        except BaseException as exc:
            # Not printed = not consumed: the group's commit must not skip these records.
            consumer.seek(partition, first)
            if isinstance(exc, BrokenPipeError):
                _silence_stdout()
                return
            raise
        yield table.num_rows
        if limit is not None:
            limit -= table.num_rows


def _render(consumer: Consumer, table: pa.Table, fmt: str) -> bytes:
    if fmt == "value":
        return b"".join((r.value if r.value is not None else b"null") + b"\n" for r in consumer.records(table))
    return "".join(record_json(r) + "\n" for r in consumer.records(table)).encode()


def record_json(record: ConsumedRecord) -> str:
    """One record as the JSON line `consume` prints (see the module docstring)."""
    doc: dict[str, object] = {"partition": record.partition, "offset": record.offset, "timestamp": record.timestamp}
    _put_bytes(doc, "key", record.key)
    _put_bytes(doc, "value", record.value)
    headers = []
    for name, value in record.headers:
        header: dict[str, object] = {"key": name}
        _put_bytes(header, "value", value)
        headers.append(header)
    doc["headers"] = headers
    return json.dumps(doc, ensure_ascii=False, separators=(", ", ": "))


def _put_bytes(doc: dict[str, object], name: str, data: bytes | None) -> None:
    if data is None:
        doc[name] = None
        return
    try:
        doc[name] = data.decode("utf-8")
    except UnicodeDecodeError:
        doc[name] = base64.b64encode(data).decode("ascii")
        doc[f"{name}_encoding"] = "base64"


def _write(data: bytes) -> None:
    # Bytes straight to the binary stream: --format value must not re-encode record bytes.
    sys.stdout.flush()
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:
        sys.stdout.write(data.decode("utf-8", errors="replace"))
        sys.stdout.flush()
        return
    buffer.write(data)
    buffer.flush()


def _silence_stdout() -> None:
    """After the reader went away (`| head`), point stdout at /dev/null so the interpreter's
    final flush does not print a BrokenPipeError."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
