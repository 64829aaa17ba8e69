"""Protobuf messages → one Arrow struct column for a whole batch (issue 13). IO-free; numpy only,
no Python loop per record and no per-record ParseFromString.

Each message's (tag, value) tokens are found for all messages at once (protobuf_tokens.py: the
in-field-order fast path, else the general wavefront tokenizer). Then per schema field: a
singular field takes its last occurrence (as Protobuf does for scalars; a repeated occurrence of
a singular message is not merged, the last wins), scattered into one numpy array (absent proto3
fields read as zero without a take); a repeated field takes all of them, packed or not, in
order; strings and bytes are one gather of all their bytes; a nested message is the same decoder
over its value spans. Fields seen with a wire type the schema does not expect are skipped as
unknown fields; groups (wire types 3 and 4) are refused even there. ProtobufDecodeError names
the first record that is not a valid message.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from streamhouse.storage.schemas.protobuf_arrow import PbField, PbMessage
from streamhouse.storage.schemas.wire import Array, numpy_buffer
from streamhouse.storage.values.protobuf_maps import entries_to_map
from streamhouse.storage.values.protobuf_tokens import (
    NONE,
    ProtobufDecodeError,
    Tokens,
    fixed,
    grouped,
    ordered,
    tokenize,
)

_U64 = np.uint64
_MAX_VARINT = 10
_SECONDS_LIMIT = 2**62 // 1000  # far outside years 1-9999, and * 1000 stays in int64
_TIMESTAMP = PbMessage(
    "google.protobuf.Timestamp",
    (PbField("seconds", 1, "int64", False, False), PbField("nanos", 2, "int32", False, False)),
)

__all__ = ["ProtobufDecodeError", "decode_messages"]


def _scalars(kind: str, raw: Array, mask: Array | None = None) -> pa.Array[Any]:
    """Raw varint / fixed bits as the kind's Arrow type (`mask`: True where null)."""
    signed = raw.view(np.int64)
    values: Array
    if kind in ("int32", "sfixed32"):
        values = signed.astype(np.int32)  # int32 truncates a sign-extended varint
    elif kind in ("int64", "sfixed64"):
        values = signed
    elif kind in ("uint32", "fixed32"):
        values = (raw & _U64(0xFFFFFFFF)).astype(np.int64)
    elif kind in ("uint64", "fixed64"):
        wide: pa.Array[Any] = pa.array(raw, mask=mask).cast(pa.decimal128(20, 0))
        return wide
    elif kind in ("sint32", "sint64"):
        unsigned = raw & _U64(0xFFFFFFFF) if kind == "sint32" else raw
        zig = (unsigned >> _U64(1)).astype(np.int64) ^ -(unsigned & _U64(1)).astype(np.int64)
        values = zig.astype(np.int32) if kind == "sint32" else zig
    elif kind == "bool":
        values = np.asarray(raw != 0, dtype=bool)
    elif kind == "double":
        values = raw.view(np.float64)
    elif kind == "float":
        values = raw.astype(np.uint32).view(np.float32)
    else:
        raise AssertionError(kind)
    out: pa.Array[Any] = pa.array(values, mask=mask)
    return out


def _binary(data: Array, start: Array, end: Array, valid: Array | None) -> pa.Array[Any]:
    lengths = end - start
    offsets = np.zeros(len(start) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    owner = np.repeat(np.arange(len(start)), lengths)
    body = data[start[owner] + (np.arange(int(offsets[-1]), dtype=np.int64) - offsets[owner])]
    mask = None if valid is None or valid.all() else pa.array(valid).buffers()[1]
    large = pa.Array.from_buffers(pa.large_binary(), len(start), [mask, numpy_buffer(offsets), numpy_buffer(body)])
    return large.cast(pa.binary())


class _Decoder:
    def __init__(self, data: Array, source: str) -> None:
        self.data = data
        self.source = source

    def message(self, message: PbMessage, starts: Array, ends: Array, live: Array, rows: Array) -> pa.StructArray:
        """One struct row per span (null where not `live`); `rows` are the top-level records
        each span belongs to, for errors."""
        groups = ordered(self.data, starts, ends, live, rows, message, self.source)
        if groups is None:  # fields out of order, repeated or unknown somewhere: the general path
            groups = grouped(tokenize(self.data, starts, ends, live, rows, self.source))
        children = [self.field(f, groups.get(f.number, NONE), len(starts), live, rows) for f in message.fields]
        mask = pa.array(~live) if not live.all() else None
        return pa.StructArray.from_arrays(children, fields=list(message.arrow_type), mask=mask)

    def elements(self, field: PbField, tokens: Tokens, pick: Array, rows: Array) -> tuple[Array, pa.Array[Any]]:
        """Each occurrence of `field` among `tokens[pick]` decoded: (owner row per element, values)."""
        owner, wire = tokens.owner[pick], tokens.wire[pick]
        raw, start, end = tokens.value[pick], tokens.start[pick], tokens.end[pick]
        if field.packable and (wire == 2).any():
            return self._packed(field, owner, wire, raw, start, end, rows)
        live = np.ones(len(owner), dtype=bool)
        if field.kind in ("string", "bytes"):
            values = _binary(self.data, start, end, None)
            return owner, self._text(values, rows[owner]) if field.kind == "string" else values
        if field.kind == "message":
            assert field.message is not None
            return owner, self.message(field.message, start, end, live, rows[owner])
        if field.kind == "timestamp":
            return owner, self._timestamp(start, end, rows[owner])
        if field.kind == "enum":
            return owner, _enum(field, raw)
        return owner, _scalars(field.kind, raw)

    def _packed(
        self, field: PbField, owner: Array, wire: Array, raw: Array, start: Array, end: Array, rows: Array
    ) -> tuple[Array, pa.Array[Any]]:
        """Packed and unpacked occurrences mixed (both are valid on the wire), kept in order."""
        loose = wire != 2
        spans_of = np.flatnonzero(~loose)
        s, e = start[spans_of], end[spans_of]
        if field.wire_type == 0:
            # Every varint in the spans: a byte < 0x80 ends one; each byte contributes its 7 bits.
            lengths = e - s
            span = np.repeat(np.arange(len(s)), lengths)
            cum = np.zeros(len(s) + 1, dtype=np.int64)
            np.cumsum(lengths, out=cum[1:])
            body = self.data[s[span] + (np.arange(int(cum[-1]), dtype=np.int64) - cum[span])]
            stop = body < 0x80
            ends_at = np.flatnonzero(stop)
            # Every span must end on a varint's last byte.
            last_byte = np.maximum(cum[1:] - 1, 0)
            unfinished = (lengths > 0) & ~stop[last_byte] if len(body) else np.zeros(len(s), bool)
            if unfinished.any():
                i = int(rows[owner[spans_of[np.argmax(unfinished)]]])
                raise ProtobufDecodeError(
                    f"record {i}: a packed varint runs past its field", index=i, source=self.source
                )
            first = np.zeros(len(body), dtype=bool)
            first[0:1] = True
            first[ends_at[:-1] + 1] = True
            which = np.cumsum(first) - 1
            shift = np.arange(len(body)) - np.flatnonzero(first)[which]
            if (shift >= _MAX_VARINT).any():
                i = int(rows[owner[spans_of[span[np.argmax(shift >= _MAX_VARINT)]]]])
                raise ProtobufDecodeError(f"record {i}: a packed varint is too long", index=i, source=self.source)
            bits = (body & 0x7F).astype(_U64) << (7 * shift).astype(_U64)
            packed = np.add.reduceat(bits, np.flatnonzero(first)) if len(body) else np.zeros(0, _U64)
            parent = span[np.flatnonzero(first)]
        else:
            size = 8 if field.wire_type == 1 else 4
            uneven = (e - s) % size != 0
            if uneven.any():
                i = int(rows[owner[spans_of[np.argmax(uneven)]]])
                raise ProtobufDecodeError(f"record {i}: a packed field's length is uneven", index=i, source=self.source)
            counts = (e - s) // size
            parent = np.repeat(np.arange(len(s)), counts)
            cum = np.zeros(len(s) + 1, dtype=np.int64)
            np.cumsum(counts, out=cum[1:])
            at = s[parent] + size * (np.arange(int(cum[-1]), dtype=np.int64) - cum[parent])
            packed = fixed(self.data, at, size) if len(at) else np.zeros(0, _U64)
        # Merge: element k of token t sorts at (t, k); a loose token is its own single element.
        token = np.concatenate([spans_of[parent], np.flatnonzero(loose)])
        sub = np.concatenate([np.arange(len(parent)), np.zeros(int(loose.sum()), np.int64)])
        values = np.concatenate([packed, raw[loose]])
        order = np.lexsort((sub, token))
        out = values[order]
        return owner[token[order]], (_enum(field, out) if field.kind == "enum" else _scalars(field.kind, out))

    def _text(self, values: pa.Array[Any], rows: Array) -> pa.Array[Any]:
        """`values` as strings; one that is not UTF-8 is a ProtobufDecodeError naming its record
        (`rows[k]`: the record of value k), as Protobuf requires strings to be UTF-8."""
        try:
            return values.cast(pa.string())
        except pa.ArrowInvalid:
            pass
        # The refusal path only: find the first value that is not UTF-8, to name its record.
        for k, raw in enumerate(values.to_pylist()):
            try:
                raw is None or raw.decode("utf-8")
            except UnicodeDecodeError:
                i = int(rows[k])
                raise ProtobufDecodeError(
                    f"record {i}: a string field is not UTF-8", index=i, source=self.source
                ) from None
        raise AssertionError("a cast to string failed on valid UTF-8")

    def _timestamp(self, start: Array, end: Array, rows: Array) -> pa.Array[Any]:
        parts = self.message(_TIMESTAMP, start, end, np.ones(len(start), dtype=bool), rows)
        seconds = parts.field(0).to_numpy(zero_copy_only=False).astype(np.int64)
        nanos = parts.field(1).to_numpy(zero_copy_only=False).astype(np.int64)
        # Clipped so * 1000 cannot wrap into a plausible time: still past year 9999, the
        # decode's range check (time_range.py) refuses it naming the record and column.
        seconds = np.clip(seconds, -_SECONDS_LIMIT, _SECONDS_LIMIT)
        return pa.array(seconds * 1000 + nanos // 1_000_000, pa.int64()).cast(pa.timestamp("ms", tz="UTC"))

    def field(self, field: PbField, tokens: Tokens, n: int, live: Array, rows: Array) -> pa.Array[Any]:
        """The field's column from its tokens (those of its number; any other wire type than the
        field's, or packed for a packable one, is an unknown field and skipped)."""
        if field.packable:
            pick = np.flatnonzero((tokens.wire == field.wire_type) | (tokens.wire == 2))
        else:
            pick = np.flatnonzero(tokens.wire == field.wire_type)
        # Tokens come round by round: a row's occurrences in wire order, rows interleaved.
        owner = tokens.owner[pick]
        counts = np.bincount(owner, minlength=n) if len(owner) else np.zeros(n, np.int64)
        if field.repeated:
            pick = pick[np.argsort(owner, kind="stable")]  # row-major, wire order within a row
            _owner, values = self.elements(field, tokens, pick, rows)
            offsets = np.zeros(n + 1, dtype=np.int32)
            np.cumsum(counts if not field.packable else np.bincount(_owner, minlength=n), out=offsets[1:])
            mask = np.append(~live, False) if not live.all() else None
            if field.is_map:
                return entries_to_map(offsets, values, ~live, field.arrow_type)
            return pa.ListArray.from_arrays(pa.array(offsets, pa.int32(), mask=mask), values, type=field.arrow_type)
        # A singular field: its last occurrence per row (the usual case is one, then no search).
        last = np.full(n, -1, dtype=np.int64)
        if len(owner) and counts.max() > 1:
            np.maximum.at(last, owner, np.arange(len(owner)))
        else:
            last[owner] = np.arange(len(owner))
        present = last >= 0
        chosen = pick[last[present]]  # row order
        # Null where absent (explicit presence) or a tombstone; implicit presence reads zero.
        valid = present if field.presence else live
        mask = None if valid.all() else ~valid
        if field.kind in ("string", "bytes"):
            start, end = np.zeros(n, np.int64), np.zeros(n, np.int64)  # absent: b"" / ""
            start[present], end[present] = tokens.start[chosen], tokens.end[chosen]
            text = _binary(self.data, start, end, valid)
            return self._text(text, rows) if field.kind == "string" else text
        if field.kind in ("message", "timestamp") and not field.presence:
            # A map entry's value: missing reads as its default, the empty message (an empty span).
            start, end = np.zeros(n, np.int64), np.zeros(n, np.int64)
            start[present], end[present] = tokens.start[chosen], tokens.end[chosen]
            if field.kind == "timestamp":
                return self._timestamp(start, end, rows)
            assert field.message is not None
            return self.message(field.message, start, end, live, rows)
        if field.kind in ("message", "timestamp"):
            _owner, values = self.elements(field, tokens, chosen, rows)
            if present.all():
                return values
            position = np.full(n, -1, dtype=np.int64)
            position[present] = np.arange(len(chosen))
            return values.take(pa.array(position, pa.int64(), mask=~present))
        raw = np.zeros(n, dtype=_U64)  # absent: 0, false, the enum's 0 symbol
        raw[present] = tokens.value[chosen]
        return _enum(field, raw, mask) if field.kind == "enum" else _scalars(field.kind, raw, mask)


def _enum(field: PbField, raw: Array, mask: Array | None = None) -> pa.Array[Any]:
    """Enum numbers as their symbols; a number the enum lacks (or `mask` True) reads as null."""
    numbers = np.array([n for n, _ in field.symbols], dtype=np.int64)
    names = pa.array([s for _, s in field.symbols], pa.string())
    wanted = raw.view(np.int64).astype(np.int32).astype(np.int64)
    order = np.argsort(numbers, kind="stable")
    at = np.clip(np.searchsorted(numbers[order], wanted), 0, len(numbers) - 1)
    missing = numbers[order][at] != wanted
    if mask is not None:
        missing |= mask
    return names.take(pa.array(order[at], pa.int64(), mask=missing))


def decode_messages(
    data: Array, starts: Array, ends: Array, live: Array, message: PbMessage, source: str
) -> pa.StructArray:
    """Every live span data[starts[i]:ends[i]] decoded as `message` (a null row elsewhere)."""
    return _Decoder(data if len(data) else np.zeros(1, np.uint8), source).message(
        message, starts, ends, live, np.arange(len(starts))
    )
