"""Kafka Fetch of transactional partitions (issue 18), as a Kafka broker answers it.

- Control rows (storage/records/control.py: the COMMIT/ABORT markers a transaction's end wrote at
  their own offsets) go out as control batches: attributes transactional | control, the marker's
  producer id and epoch, one record whose key is Kafka's control key (version, type) and whose
  value is version + coordinator epoch. Every consumer skips them; read_committed ones also use
  an ABORT marker to close the producer's aborted transaction.
- read_committed (isolation_level 1): records stop at the last stable offset, and aborted records
  are sent, with the aborted transactions (producer id, first offset) overlapping the fetched
  range, and their batches carry the producer id and the transactional bit, so the client drops
  them itself (librdkafka, the Java client), as from Kafka.

The producer of a committed transaction is not kept once it commits (its batch rows go,
storage/metadata/transactions.py), so its records go out as plain batches; a client filters
only transactional batches of a producer with an open aborted entry, so it keeps them either way.
Runs are found with numpy over the offsets; the loops are per run (a marker, an aborted batch),
never per record.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from streamhouse.kafka.record.batch import CONTROL, TRANSACTIONAL
from streamhouse.kafka.record.encode import encode_batch, encode_batches
from streamhouse.kafka.timestamps import encode_log_append_time
from streamhouse.storage.metadata.txn_reads import Stable
from streamhouse.storage.records.control import Marker, control_mask, marker_of
from streamhouse.storage.records.schema import make_batch

_PLAIN = -1


def below_stable(records: pa.Table, view: Stable) -> pa.Table:
    """A read_committed fetch's records: those below the last stable offset (aborted ones stay)."""
    if view.last_stable is None or not records.num_rows:
        return records
    offsets = records.column("offset").to_numpy()
    return records.slice(0, int(np.searchsorted(offsets, view.last_stable, side="left")))


def encode_fetch(records: pa.Table, *, log_append: bool = False, view: Stable | None = None) -> bytes:
    """The `records` field of a partition's Fetch response: control rows as control batches,
    aborted ranges of `view` (read_committed) as transactional batches of their producer."""
    plain = encode_log_append_time if log_append else encode_batches
    out: list[bytes] = []
    for batch in records.to_batches():
        if not batch.num_rows:
            continue
        runs = _runs(batch, view)
        if runs is None:
            out.append(plain([batch]))
            continue
        for start, stop, label in runs:
            piece = batch.slice(start, stop - start)
            if label == _PLAIN:
                out.append(plain([piece]))
            elif label < _PLAIN:  # a control row
                out.append(_control(piece))
            else:
                assert view is not None and view.pids is not None
                epoch = int(view.epochs[label]) if view.epochs is not None else 0
                out.append(
                    encode_batch(
                        piece, producer_id=int(view.pids[label]), producer_epoch=epoch, attributes=TRANSACTIONAL,
                        log_append_time=log_append,
                    )
                )  # fmt: skip
    return b"".join(out)


def _labels(batch: pa.RecordBatch, view: Stable | None) -> np.ndarray[Any, Any] | None:
    """Per row: _PLAIN, the index of its aborted range, or below _PLAIN for a control row."""
    n = batch.num_rows
    mask = control_mask(batch.column("headers"))
    ranged = view is not None and view.pids is not None and len(view.bases) > 0
    if mask is None and not ranged:
        return None
    labels = np.full(n, _PLAIN, dtype=np.int64)
    if ranged:
        assert view is not None
        offsets = batch.column("offset").to_numpy()
        at = np.searchsorted(view.bases, offsets, side="right") - 1
        inside = (at >= 0) & (offsets < view.ends[np.maximum(at, 0)])
        if not inside.any() and mask is None:
            return None
        labels[inside] = at[inside]
    if mask is not None:
        labels[mask] = _PLAIN - 1 - np.arange(int(mask.sum()))  # each marker its own run
    return labels


def _runs(batch: pa.RecordBatch, view: Stable | None) -> list[tuple[int, int, int]] | None:
    labels = _labels(batch, view)
    if labels is None:
        return None
    cuts = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate(([0], cuts))
    stops = np.concatenate((cuts, [len(labels)]))
    return [(int(a), int(b), int(labels[a])) for a, b in zip(starts, stops, strict=True)]


def _control(row: pa.RecordBatch) -> bytes:
    marker = _marker(row)
    record = make_batch(
        [marker.kafka_value],
        keys=[marker.kafka_key],
        timestamps=row.column("timestamp").to_numpy(zero_copy_only=False),
        base_offset=int(row.column("offset")[0].as_py()),
    )
    return encode_batch(
        record, producer_id=marker.producer_id, producer_epoch=marker.producer_epoch,
        attributes=TRANSACTIONAL | CONTROL,
    )  # fmt: skip


def _marker(row: pa.RecordBatch) -> Marker:
    headers = row.column("headers")[0].as_py() or []
    return marker_of(row.column("key")[0].as_py(), headers[0]["value"] if headers else None)


def aborted_transactions(records: pa.Table, view: Stable, fetch_offset: int) -> list[dict[str, int]]:
    """Kafka's aborted_transactions of a read_committed fetch: (producer id, first offset) of each
    aborted transaction with records in [fetch_offset, the end of `records`). A producer's aborted
    batches are one transaction up to its next ABORT marker among `records` (one producer runs
    one transaction at a time), so each marker closes exactly one entry the client opened."""
    if view.pids is None or not len(view.bases) or not records.num_rows:
        return []
    upper = int(records.column("offset")[-1].as_py()) + 1
    near = (view.ends > fetch_offset) & (view.bases < upper)
    bases, pids = view.bases[near], view.pids[near]
    if not len(bases):
        return []
    aborts: dict[int, list[int]] = {}
    mask = control_mask(records.column("headers"))
    if mask is not None:
        rows = records.filter(pa.array(mask))
        for i in range(rows.num_rows):  # one per marker
            row = rows.slice(i, 1).to_batches()[0]
            marker = _marker(row)
            if not marker.commit:
                aborts.setdefault(marker.producer_id, []).append(int(row.column("offset")[0].as_py()))
    entries: list[tuple[int, int]] = []
    for pid in np.unique(pids).tolist():  # one per producer
        mine = np.sort(bases[pids == pid])
        groups = np.searchsorted(np.array(aborts.get(pid, []), dtype=np.int64), mine, side="right")
        firsts = mine[np.concatenate(([True], np.diff(groups) != 0))]
        entries += [(int(f), pid) for f in firsts]
    return [{"producer_id": pid, "first_offset": first} for first, pid in sorted(entries)]


__all__ = ["aborted_transactions", "below_stable", "encode_fetch"]
