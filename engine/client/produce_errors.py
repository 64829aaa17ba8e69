"""A refused value named where the caller put it. The SDK splits a call into requests (per
partition, at most client/routing.py's BATCH_RECORDS each) and the agent names the record within the request it
got; the caller only knows its own batch, so the index is mapped back, and the error says how
many records of the call earlier requests had already stored."""

from __future__ import annotations

from typing import Any

import numpy as np

from streamhouse.storage.errors import InvalidInputError, InvalidValueError


def in_caller_batch(
    exc: InvalidInputError,
    partition_ids: np.ndarray[Any, np.dtype[np.int32]] | None,
    partition: int,
    begin: int,
    stored: int,
) -> InvalidInputError:
    """`exc` with its record index in the caller's batch (`partition_ids`: the partition of
    every record when the SDK split the batch, None when the caller chose the partition;
    `begin`: where the request started within that partition's share)."""
    if not isinstance(exc, InvalidValueError) or exc.index < 0:
        return exc
    index = begin + exc.index
    if partition_ids is not None:
        index = int(np.flatnonzero(partition_ids == partition)[index])
    mapped = InvalidValueError(index, exc.column, exc.reason)
    if stored:
        # Requests are separate: what earlier ones stored stays (their offsets were returned).
        mapped.args = (f"{mapped}; {stored} records of this call before it were stored",)
    return mapped
