"""The per-record read position of the columnar Avro decoder (storage/schemas/avro_arrow.py):
one cursor per record, all advanced together field by field (a "wavefront"), with bounds checks
that name the record. IO-free; numpy only.

A cursor may cover a subset of a batch's records (the records still inside an array or map at
some item position, storage/schemas/avro_collections.py); `rows` maps its entries back to the
batch's record indexes, so every AvroDecodeError names the record as the producer sent it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from streamhouse.storage.schemas.errors import AvroDecodeError, WireFormatError
from streamhouse.storage.schemas.wire import Array, zigzag_varints


@dataclass
class Cursor:
    data: Array
    pos: Array  # per entry, advanced as fields are read
    ends: Array
    source: str
    rows: Array | None = None  # entry → record index of the batch (None: the identity)

    def fail(self, bad: Array, message: str | Callable[[int], str]) -> None:
        """AvroDecodeError for the first entry flagged in `bad`, if any; a callable `message`
        is given that entry's index (to quote its values)."""
        if bad.any():
            k = int(np.argmax(bad))
            i = self.row(k)
            text = message(k) if callable(message) else message
            raise AvroDecodeError(f"record {i}: {text}", index=i, source=self.source)

    def row(self, k: int) -> int:
        return k if self.rows is None else int(self.rows[k])

    def subset(self, entries: Array) -> Cursor:
        """A cursor over some entries (an index array), sharing the bytes; write `pos` back."""
        rows = entries if self.rows is None else self.rows[entries]
        return Cursor(self.data, self.pos[entries], self.ends[entries], self.source, rows)

    def check(self, live: Array, width: Array | int, what: str) -> None:
        self.fail(live & (self.pos + width > self.ends), f"the value ends inside {what}")

    def varints(self, live: Array, what: str) -> Array:
        try:
            values, self.pos = zigzag_varints(self.data, self.pos, self.ends, live, self.source, what)
        except WireFormatError as exc:
            detail = str(exc).rsplit(" (", 1)[0].split(": ", 1)[-1]
            flags = np.zeros(len(self.pos), dtype=bool)
            flags[exc.index] = True
            self.fail(flags, detail)
            raise
        return values

    def fixed(self, live: Array, width: int, what: str) -> Array:
        """`width` bytes per live entry (zeros elsewhere), as an (n, width) uint8 matrix."""
        self.check(live, width, what)
        at = np.where(live, self.pos, 0)
        padded = self.data if len(self.data) >= width else np.zeros(width, np.uint8)
        out = padded[np.minimum(at[:, None] + np.arange(width), len(padded) - 1)]
        self.pos = np.where(live, self.pos + width, self.pos)
        return np.where(live[:, None], out, 0).astype(np.uint8)

    def gather(self, live: Array, lengths: Array, what: str) -> tuple[Array, Array]:
        """The bytes at each live entry's cursor, `lengths` each: (offsets, body); cursors advance."""
        lengths = np.where(live, lengths, 0)
        self.fail(live & (lengths < 0), f"negative length in {what}")
        self.check(live, lengths, what)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        total = int(offsets[-1])
        owner = np.repeat(np.arange(len(lengths)), lengths)
        body = self.data[self.pos[owner] + (np.arange(total, dtype=np.int64) - offsets[owner])]
        self.pos = self.pos + lengths
        return offsets, body


def mask(live: Array) -> pa.Buffer | None:
    """A validity bitmap (None when every entry is present)."""
    return None if live.all() else pa.array(live).buffers()[1]
