"""Batch codec throughput: Arrow IPC + LZ4 + CRC32C decode (`streamhouse bench storage`)."""

from __future__ import annotations

import time

import pyarrow as pa

from streamhouse.storage.records.codec import decode_batch, encode_batch


def bench_ipc_decode(batch: pa.RecordBatch, *, records_per_batch: int, rounds: int = 3) -> dict[str, float | int]:
    """Decode `batch` framed as batches of `records_per_batch`; best of `rounds`."""
    frames = [encode_batch(batch.slice(i, records_per_batch)) for i in range(0, batch.num_rows, records_per_batch)]
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for frame in frames:
            decode_batch(frame)
        best = min(best, time.perf_counter() - started)
    return {
        "records_per_batch": records_per_batch,
        "records": batch.num_rows,
        "encoded_mb": round(sum(map(len, frames)) / 1e6, 1),
        "seconds": round(best, 4),
        "records_per_s": round(batch.num_rows / best),
    }
