"""`streamhouse produce` and `streamhouse consume`: kafka-console-producer/-consumer.

produce: one record per input line (the trailing newline stripped, empty lines skipped),
sent in batches. Keys come from a JSON field (--key-field) or a `key<SEP>value` split
(--key-separator); a line that does not fit (or is over --max-record-bytes) fails the
command, naming its line number, before any record of its batch is sent. Ctrl-C says how
many records the agent acknowledged and exits with 130.

consume: JSON lines on stdout, one per record:

    {"partition": 0, "offset": 7, "timestamp": 1700000000000, "key": "k", "value": "…",
     "headers": [{"key": "h", "value": "v"}]}

key, value and header values are UTF-8 text when the bytes are valid UTF-8, null when
absent; otherwise they are base64 and the object carries a marker next to them:
"key_encoding": "base64", "value_encoding": "base64" (headers: "value_encoding" inside the
header object). `--format value` prints only the value bytes, one per line (null as "null");
`--format csv` prints a header, then partition,offset,timestamp,key,value,headers per record
(key and value as UTF-8 text, invalid bytes replaced; headers as a JSON array). A stream has
no end to count or align rows by, so there is no table format here: `streamhouse sql` gives one.
With --group, the group commits exactly the records printed whole. Ctrl-C finishes the line
under way and exits with 0, as kcat does; a second Ctrl-C stops at once (130).
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import numpy as np
import pyarrow as pa
from rich.progress import BarColumn, DownloadColumn, Progress, ProgressColumn, SpinnerColumn, Task, TextColumn
from rich.text import Text

from streamhouse.cli import common, stdout_lines
from streamhouse.cli import produce_batches as batches
from streamhouse.client.consumer import ConsumedRecord, Consumer
from streamhouse.storage.errors import InvalidInputError

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
    produce.add_argument("topic", help="the topic to send to")
    produce.add_argument("--file", metavar="PATH", help="read this file instead of stdin")
    keys = produce.add_mutually_exclusive_group()
    keys.add_argument(
        "--key-field",
        metavar="FIELD",
        help="lines are JSON objects; the key is this field (strings as is, other values as JSON, null = no key)",
    )
    keys.add_argument("--key-separator", metavar="SEP", help="lines are KEY<SEP>VALUE (split at the first SEP)")
    produce.add_argument("--partition", type=common.non_negative_int, help="send every record to this partition")
    produce.add_argument(
        "--acks",
        choices=["leader", "durable", "none"],
        default="leader",
        help="wait for the leader's WAL (default), for S3 (durable), or not at all",
    )
    produce.add_argument(
        "--batch-size",
        type=common.positive_int,
        help=f"lines per produce request (default {DEFAULT_BATCH:,}; 1 when typing into a terminal; "
        f"at most {batches.MAX_BATCH_RECORDS:,}); a batch is also cut at {batches.DEFAULT_BATCH_BYTES >> 20} MiB",
    )
    produce.add_argument(
        "--max-record-bytes",
        type=common.positive_int,
        default=batches.DEFAULT_MAX_RECORD_BYTES,
        metavar="N",
        help="refuse a line whose key + value exceed N bytes before sending its batch "
        f"(default {batches.DEFAULT_MAX_RECORD_BYTES:,}, the agent's default limit; match the agent's)",
    )

    consume = commands.add_parser(
        "consume",
        parents=[engine],
        help="print records as JSON lines",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    consume.add_argument("topic", help="the topic to read")
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
        "--format",
        choices=["json", "csv", "value"],
        default="json",
        help="JSON lines (default), CSV with a header, or just each value",
    )


# -- produce ------------------------------------------------------------------------------------


def run_produce(args: argparse.Namespace) -> int:
    if args.key_separator == "":
        raise InvalidInputError("--key-separator must not be empty")
    interactive = args.file is None and _isatty(sys.stdin)
    batch_size = min(args.batch_size or (1 if interactive else DEFAULT_BATCH), batches.MAX_BATCH_RECORDS)
    limit: int = args.max_record_bytes
    show = _isatty(sys.stderr) or args.file is not None
    produced = batches.Produced()
    try:
        with ExitStack() as stack:
            lines, size = _open_input(stack, args.file)
            client = stack.enter_context(common.open_client(args))
            partitions = client.describe(args.topic).info.partitions if args.partition is None else 0
            progress = stack.enter_context(_progress(show, size))
            task = progress.add_task(f"produce {args.topic}", total=size, records=0)

            def send(batch: batches.Batch) -> None:
                batches.send(
                    client,
                    args.topic,
                    batch,
                    partitions=partitions,
                    partition=args.partition,
                    acks=args.acks,
                    produced=produced,
                )
                progress.update(task, completed=read, records=produced.acknowledged)

            batch = batches.Batch()
            read = 0
            # Lines are checked as they are read and a batch is sent only once all of it
            # passed, so a bad line stops the command before any record of its batch is sent.
            for number, raw in enumerate(lines, start=1):
                read += len(raw)
                line = raw.removesuffix(b"\n").removesuffix(b"\r")
                if not line:
                    continue
                try:
                    key, value = _split(line, number, args)
                except InvalidInputError as exc:
                    raise InvalidInputError(f"{exc}{batches.not_sent(batch, number, produced)}") from None
                batches.check_size(batch, number, key, value, limit, produced)
                batch.add(number, key, value)
                if len(batch) >= batch_size or batch.nbytes >= batches.DEFAULT_BATCH_BYTES:
                    send(batch)
                    batch = batches.Batch()
            send(batch)
    except KeyboardInterrupt:
        # What the agent acknowledged is stored whatever happens next: say how much, so a
        # rerun can skip it.
        print(produced.interrupted(args.topic), file=sys.stderr)
        return 130
    print(f"produced {batches.records(produced.acknowledged)} to {args.topic}", file=sys.stderr)
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
    """Ctrl-C ends an unbounded consume cleanly with exit code 0, as kcat does: the line under
    way is finished and the group commits what was printed. A second Ctrl-C stops at once
    (exit code 130). A closed pipe (`| head`) ends it quietly with 0."""
    with common.open_client(args) as client:
        # The group's committed offsets win; --from-beginning is the reset policy for
        # partitions without one (Kafka's auto.offset.reset), which the consumer applies.
        consumer = client.consumer(
            args.topic,
            group=args.group,
            start="earliest" if args.from_beginning else "latest",
            partitions=args.partition,
            auto_commit=False,
        )
        # Per partition, the offset after the last record written out whole: all a commit may
        # cover. The consumer's own positions run ahead of it by what was polled unprinted.
        printed = consumer.positions()
        out = stdout_lines.LineWriter()
        try:
            with stdout_lines.sigint_stops() as stop:
                _consume(consumer, args, out, printed, stop)
        except KeyboardInterrupt:
            out.forced = True  # a second Ctrl-C outside a write: `printed` is still exact
        finally:
            if args.group is not None:
                for partition, offset in printed.items():
                    consumer.seek(partition, offset)
                consumer.commit()
            consumer.close()
    summary = f"{batches.records(out.written)} printed from {args.topic}"
    if args.group is not None:
        at = ", ".join(f"partition {p} at {o:,}" for p, o in sorted(printed.items()))
        summary += f"; committed group {args.group}: {at}"
    print(summary, file=sys.stderr)
    return 130 if out.forced else 0


def _consume(
    consumer: Consumer,
    args: argparse.Namespace,
    out: stdout_lines.LineWriter,
    printed: dict[int, int],
    stop: stdout_lines.StopFlag,
) -> None:
    """Poll and print until --max, the idle --timeout, a Ctrl-C or a closed pipe, keeping
    `printed` at the offsets after the records written out."""
    idle_since = time.monotonic()
    while not stop and not out.closed and (args.max is None or out.written < args.max):
        # Short polls keep Ctrl-C and the idle timeout responsive on long-polling fetches.
        wait = 1.0
        if args.timeout is not None:
            left = args.timeout - (time.monotonic() - idle_since)
            if left <= 0:
                break
            wait = min(wait, left)
        want = None if args.max is None else args.max - out.written
        table = consumer.poll(timeout=wait, max_records=want)
        if table.num_rows == 0 or stop:
            continue  # records polled after a Ctrl-C are not printed, so not committed either
        idle_since = time.monotonic()
        if want is not None and table.num_rows > want:
            table = table.slice(0, want)
        entries = _render(consumer, table, args.format, header=out.written == 0)
        _advance(printed, table, out.write(entries, stop))


def _advance(printed: dict[int, int], table: pa.Table, written: int) -> None:
    """Moves `printed` past the first `written` rows of `table` (offsets rise per partition)."""
    if written == 0:
        return
    head = table.slice(0, written)
    partitions = head.column("partition").to_numpy()
    offsets = head.column("offset").to_numpy()
    for p in np.unique(partitions).tolist():
        printed[p] = int(offsets[partitions == p].max()) + 1


def _render(consumer: Consumer, table: pa.Table, fmt: str, *, header: bool = False) -> list[bytes]:
    """One entry per record (a value may hold newlines: entries, not lines, are the unit).
    `header`: nothing was printed yet, so a CSV header goes in front of the first entry."""
    if fmt == "value":
        return [(r.value if r.value is not None else b"null") + b"\n" for r in consumer.records(table)]
    if fmt == "csv":
        entries = [_csv_row(r) for r in consumer.records(table)]
        if header and entries:
            entries[0] = b"partition,offset,timestamp,key,value,headers\r\n" + entries[0]
        return entries
    return [(record_json(r) + "\n").encode() for r in consumer.records(table)]


def _csv_row(record: ConsumedRecord) -> bytes:
    def text(data: bytes | None) -> str | None:
        return None if data is None else data.decode("utf-8", errors="replace")

    headers = [{"key": k, "value": text(v)} for k, v in record.headers]
    row = [record.partition, record.offset, record.timestamp, text(record.key), text(record.value)]
    sink = io.StringIO()
    csv.writer(sink).writerow([*row, json.dumps(headers, ensure_ascii=False) if headers else ""])
    return sink.getvalue().encode()


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
