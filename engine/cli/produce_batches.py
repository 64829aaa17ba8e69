"""The batches `streamhouse produce` sends: input lines cut by count and bytes, every record
remembering its 1-based line of the input, so that any refusal (the CLI's own checks or the
agent's) names the line it came from and a refused batch leaves nothing stored.

Atomicity: the CLI checks every line of a batch (key/value split, JSON, size against
--max-record-bytes) before it sends any of it. The agent checks sizes again, per request and
before writing anything; the batch is split by partition client-side (Kafka's murmur2), so
the request holding the batch's largest record goes first: if the agent refuses that one for
its size nothing is stored, and if it accepts it every other record of the batch fits too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from streamhouse.api.types import Acks
from streamhouse.client.client import Client
from streamhouse.storage.errors import InvalidInputError

# The agent's --max-record-bytes default: the CLI refuses what a default agent would.
DEFAULT_MAX_RECORD_BYTES = 1 << 20
# Keeps a request far below the gRPC message limit whatever the line lengths.
DEFAULT_BATCH_BYTES = 8 << 20
# The client cuts larger per-partition requests (client/routing.py BATCH_RECORDS); below it, one
# request per partition, so the agent's "record i of the batch" maps back to one line.
MAX_BATCH_RECORDS = 50_000

# How the agent names the refused record (engine/agent/routing.py check_sizes).
_AGENT_RECORD = re.compile(r"record (\d+) of the batch")


@dataclass
class Batch:
    """Lines read but not yet sent: parallel lists, one entry per record."""

    lines: list[int] = field(default_factory=list)
    keys: list[bytes | None] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    nbytes: int = 0

    def add(self, line: int, key: bytes | None, value: bytes) -> None:
        size = len(value) + (0 if key is None else len(key))
        self.lines.append(line)
        self.keys.append(key)
        self.values.append(value)
        self.sizes.append(size)
        self.nbytes += size

    def __len__(self) -> int:
        return len(self.values)


@dataclass
class Produced:
    """What the agent acknowledged so far: the count a Ctrl-C reports."""

    acknowledged: int = 0
    # Every line up to this one (1-based) is acknowledged: the batches before the current one.
    complete_through: int = 0
    # Records of the current batch acknowledged (other partitions' requests of it).
    partial: int = 0
    round_robin: int = 0

    def interrupted(self, topic: str) -> str:
        text = f"interrupted: {records(self.acknowledged)} acknowledged to {topic}"
        if self.complete_through:
            text += f"; every line up to line {self.complete_through:,} was acknowledged"
        if self.partial:
            text += f", and {self.partial:,} of the batch after it"
        return text


def records(n: int) -> str:
    return f"{n:,} record" if n == 1 else f"{n:,} records"


def check_size(batch: Batch, line: int, key: bytes | None, value: bytes, limit: int, produced: Produced) -> None:
    size = len(value) + (0 if key is None else len(key))
    if size > limit:
        raise InvalidInputError(
            f"line {line}: {size:,} bytes (key + value), over the limit of {limit:,} (--max-record-bytes)"
            + not_sent(batch, line, produced)
        )


def not_sent(batch: Batch, line: int, produced: Produced) -> str:
    """What a refusal at `line` left unsent, for the error message."""
    first = batch.lines[0] if len(batch) else line
    text = f"; nothing from line {first} on was sent"
    if produced.acknowledged:
        text += f" ({records(produced.acknowledged)} before it were acknowledged)"
    return text


def send(
    client: Client, topic: str, batch: Batch, *, partitions: int, partition: int | None, acks: Acks, produced: Produced
) -> None:
    """One batch, as one request per partition it touches, largest record first."""
    from streamhouse.api.partitioner import partition_for_keys
    from streamhouse.api.values import batch_from_values

    n = len(batch)
    if n == 0:
        return
    # An all-null key list is passed as None so unkeyed records go round robin cheaply.
    has_keys = any(k is not None for k in batch.keys)
    rows = batch_from_values(batch.values, keys=batch.keys if has_keys else None)
    if partition is not None:
        ids = np.full(n, partition, dtype=np.int32)
    else:
        ids = partition_for_keys(rows.column(2), partitions, start=produced.round_robin)
        produced.round_robin += rows.column(2).null_count
    order = np.argsort(ids, kind="stable")  # stable: per-key order is line order
    bounds = np.flatnonzero(np.diff(ids[order])) + 1
    groups = np.split(order, bounds)
    sizes = np.asarray(batch.sizes, dtype=np.int64)
    groups.sort(key=lambda g: -int(sizes[g].max()))
    produced.partial = 0
    for group in groups:
        p = int(ids[group[0]])
        try:
            client.produce_arrow(topic, rows.take(group), partition=p, acks=acks)
        except InvalidInputError as exc:
            raise InvalidInputError(_agent_refusal(exc, batch, group, produced)) from None
        produced.acknowledged += len(group)
        produced.partial += len(group)
    produced.complete_through = batch.lines[-1]
    produced.partial = 0


def _agent_refusal(exc: InvalidInputError, batch: Batch, group: np.ndarray, produced: Produced) -> str:
    match = _AGENT_RECORD.search(str(exc))
    first, last = batch.lines[0], batch.lines[-1]
    if match is not None and int(match.group(1)) < len(group):
        where = f"line {batch.lines[int(group[int(match.group(1))])]}"
    else:
        where = f"lines {first}–{last}"
    text = f"{where}: refused by the agent: {exc}"
    if produced.partial:
        # Only a refusal for another reason than size can come after an accepted request.
        text += f"; {records(produced.partial)} of lines {first}–{last} were already acknowledged"
    else:
        text += f"; nothing from line {first} on was stored"
    if produced.acknowledged > produced.partial:
        text += f" ({records(produced.acknowledged - produced.partial)} before line {first} were acknowledged)"
    return text
