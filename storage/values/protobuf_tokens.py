"""The tokens of a batch of Protobuf messages, found for all messages at once (issue 13; the
decoder that turns them into Arrow columns is protobuf_wire.py). A token is one (tag, value) of
one message: its row, field number, wire type, raw value (a varint or the fixed32/fixed64 bits)
and value span (a length-delimited value's bytes). IO-free; numpy only, no loop per record.

Two ways to find them, both a "wavefront" over all messages:
- `ordered` (the fast path): serialisers write a message's fields in field-number order, so each
  schema field is looked for at every message's cursor in one step (its tag bytes compared, its
  value read where they match; a repeated field again only where the last round found one);
  None if any message has bytes left over (fields out of order, repeated, or unknown);
- `tokenize` + `grouped` (the general path): each round reads the next (tag, value) of every
  message with bytes left (a varint in one numpy step per byte, only the messages still inside
  it), so rounds are as many as the longest message has fields, never as many as records; the
  tokens are then grouped by field number with one stable sort.
Either way a field's tokens come round by round: one row's occurrences in wire order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamhouse.storage.schemas.errors import WireFormatError
from streamhouse.storage.schemas.protobuf_arrow import PbMessage
from streamhouse.storage.schemas.wire import Array

_MAX_VARINT = 10
_U64 = np.uint64


class ProtobufDecodeError(WireFormatError):
    """A payload is not a valid Protobuf message (a varint or value runs past its end, a group or
    reserved wire type, field number 0); `index` is the record's position in its batch."""


@dataclass(frozen=True)
class Tokens:
    owner: Array  # row of each (tag, value); round by round, so a row's tokens are in wire order
    number: Array
    wire: Array
    value: Array  # uint64: the varint, or the fixed32/fixed64 bits
    start: Array  # length-delimited: the value's bytes [start, end)
    end: Array


def varints(data: Array, pos: Array, ends: Array, rows: Array, source: str) -> tuple[Array, Array]:
    """Raw (not zigzag) varints at `pos`: (uint64 values, positions after). `rows` name records.
    The first byte is read for all at once; only the varints longer than that take more rounds."""
    over = pos >= ends
    if over.any():
        i = int(rows[np.argmax(over)])
        raise ProtobufDecodeError(f"record {i}: a varint runs past the message", index=i, source=source)
    byte = data[pos]
    value = (byte & 0x7F).astype(_U64)
    more = byte >= 0x80
    after = pos + 1
    if not more.any():  # the usual case: tags, small numbers, short lengths
        return value, after
    todo = np.flatnonzero(more)
    for k in range(1, _MAX_VARINT):
        at = pos[todo] + k
        over = at >= ends[todo]
        if over.any():
            i = int(rows[todo[np.argmax(over)]])
            raise ProtobufDecodeError(f"record {i}: a varint runs past the message", index=i, source=source)
        byte = data[at]
        value[todo] |= (byte & 0x7F).astype(_U64) << _U64(7 * k)
        more = byte >= 0x80
        after[todo[~more]] = at[~more] + 1
        todo = todo[more]
        if not len(todo):
            return value, after
    i = int(rows[todo[0]])
    raise ProtobufDecodeError(f"record {i}: a varint longer than 10 bytes", index=i, source=source)


def fixed(data: Array, pos: Array, width: int) -> Array:
    """`width` little-endian bytes at each position (bounds checked by the caller) as uint64."""
    raw = data[pos[:, None] + np.arange(width)]
    return np.ascontiguousarray(raw).view("<u8" if width == 8 else "<u4").reshape(-1).astype(_U64)


def tokenize(data: Array, starts: Array, ends: Array, live: Array, rows: Array, source: str) -> Tokens:
    """Every (tag, value) of every live message, round by round (the general path)."""
    pos = starts.copy()
    active = np.flatnonzero(live & (pos < ends))
    parts: list[tuple[Array, ...]] = []
    while len(active):  # each round consumes at least one byte of every active message
        p, e = pos[active], ends[active]
        tag, p = varints(data, p, e, rows[active], source)
        wire = (tag & _U64(7)).astype(np.int64)
        number = (tag >> _U64(3)).astype(np.int64)
        bad = (number == 0) | (wire == 3) | (wire == 4) | (wire > 5)
        if bad.any():
            i = int(rows[active[np.argmax(bad)]])
            why = "field number 0" if number[np.argmax(bad)] == 0 else f"wire type {int(wire[np.argmax(bad)])}"
            raise ProtobufDecodeError(f"record {i}: {why} is not decoded", index=i, source=source)
        value = np.zeros(len(active), dtype=_U64)
        start = p.copy()
        width = np.select([wire == 1, wire == 5], [8, 4], 0)
        varint = np.flatnonzero(wire == 0)
        if len(varint):
            value[varint], p[varint] = varints(data, p[varint], e[varint], rows[active[varint]], source)
        delimited = np.flatnonzero(wire == 2)
        if len(delimited):
            length, begin = varints(data, p[delimited], e[delimited], rows[active[delimited]], source)
            start[delimited] = begin
            width[delimited] = np.minimum(length, _U64(2**62)).astype(np.int64) + (begin - p[delimited])
        over = p + width > e
        if over.any():
            i = int(rows[active[np.argmax(over)]])
            raise ProtobufDecodeError(f"record {i}: a field's value runs past the message", index=i, source=source)
        for w, size in ((1, 8), (5, 4)):
            sized = np.flatnonzero(wire == w)
            if len(sized):
                value[sized] = fixed(data, p[sized], size)
        end = p + width
        start = np.where(wire == 2, start, p)
        parts.append((active, number, wire, value, start, end))
        pos[active] = end
        active = active[end < e]
    if not parts:
        empty = np.zeros(0, np.int64)
        return Tokens(empty, empty, empty, np.zeros(0, _U64), empty, empty)
    return Tokens(*(np.concatenate(c) for c in zip(*parts, strict=True)))


def _tag(number: int, wire: int) -> bytes:
    tag, out = (number << 3) | wire, bytearray()
    while tag >= 0x80:
        out.append((tag & 0x7F) | 0x80)
        tag >>= 7
    return bytes([*out, tag])


def _values(data: Array, p: Array, e: Array, wire: int, rows: Array, source: str) -> tuple[Array, Array, Array, Array]:
    """One value of wire type `wire` at each position: (raw value, value start, value end,
    position after); length-delimited values are their span (raw 0)."""
    if wire == 0:
        value, after = varints(data, p, e, rows, source)
        return value, after, after, after
    if wire == 2:
        length, begin = varints(data, p, e, rows, source)
        end = begin + np.minimum(length, _U64(2**62)).astype(np.int64)
    else:
        begin, end = p, p + (8 if wire == 1 else 4)
    over = end > e
    if over.any():
        i = int(rows[np.argmax(over)])
        raise ProtobufDecodeError(f"record {i}: a field's value runs past the message", index=i, source=source)
    value = np.zeros(len(p), dtype=_U64) if wire == 2 else fixed(data, begin, 8 if wire == 1 else 4)
    return value, begin, end, end


def ordered(
    data: Array, starts: Array, ends: Array, live: Array, rows: Array, message: PbMessage, source: str
) -> dict[int, Tokens] | None:
    """The fast path: every Protobuf serialiser writes a message's fields in field-number order
    (a repeated field's elements one after another), so each schema field is looked for at every
    message's cursor once (and a repeated one again only where the last round found one): no
    generic tag loop, no grouping. None if any message has bytes left over (fields out of order,
    repeated, or not in the schema): the caller then tokenizes generically."""
    pos = starts.copy()
    groups: dict[int, Tokens] = {}
    last = max(len(data) - 1, 0)
    for field in sorted(message.fields, key=lambda f: f.number):
        tags = [(field.wire_type, _tag(field.number, field.wire_type))]
        if field.packable:
            tags.append((2, _tag(field.number, 2)))
        parts: list[tuple[Array, ...]] = []
        can = np.flatnonzero(live & (pos < ends))
        while len(can):
            found: list[Array] = []
            for wire, tag in tags:
                at = pos[can]
                ok = at + len(tag) <= ends[can]
                for k, byte in enumerate(tag):
                    ok &= data[np.minimum(at + k, last)] == byte
                hit = can[ok]
                if not len(hit):
                    continue
                value, start, end, after = _values(data, pos[hit] + len(tag), ends[hit], wire, rows[hit], source)
                parts.append((hit, np.full(len(hit), wire), value, start, end))
                pos[hit] = after
                found.append(hit)
            if not field.repeated or not found:
                break
            can = np.sort(np.concatenate(found)) if len(found) > 1 else found[0]
            can = can[pos[can] < ends[can]]
        if parts:
            owner, wire_, value, start, end = (np.concatenate(c) for c in zip(*parts, strict=True))
            groups[field.number] = Tokens(owner, np.full(len(owner), field.number), wire_, value, start, end)
    if (live & (pos != ends)).any():
        return None
    return groups


def grouped(tokens: Tokens) -> dict[int, Tokens]:
    """Tokens by field number (one stable sort: each number's tokens stay round by round)."""
    order = np.argsort(tokens.number, kind="stable")
    numbers = tokens.number[order]
    cuts = np.flatnonzero(np.diff(numbers)) + 1
    groups: dict[int, Tokens] = {}
    for chunk in np.split(order, cuts) if len(order) else []:
        groups[int(tokens.number[chunk[0]])] = Tokens(
            tokens.owner[chunk],
            tokens.number[chunk],
            tokens.wire[chunk],
            tokens.value[chunk],
            tokens.start[chunk],
            tokens.end[chunk],
        )
    return groups


_EMPTY = np.zeros(0, np.int64)
NONE = Tokens(_EMPTY, _EMPTY, _EMPTY, np.zeros(0, _U64), _EMPTY, _EMPTY)  # a field not on the wire
