"""Kafka's primitive types: fixed-width integers, (unsigned) varints, strings, bytes,
arrays and UUIDs, in both the classic and the compact (flexible-version) encodings.

`Reader` never trusts a length: every read is checked against the end of the frame
before anything is sliced or allocated, and a varint may take at most its type's
number of bytes, so a hostile frame costs at most one pass over its own bytes.
"""

from __future__ import annotations

import struct
import uuid
from typing import Final

from streamhouse.kafka.errors import KafkaProtocolError

_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_U16 = struct.Struct(">H")
_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")
_F64 = struct.Struct(">d")

ZERO_UUID: Final = uuid.UUID(int=0)

Buffer = bytes | bytearray | memoryview


class Reader:
    """A cursor over one frame. `api`/`version` only label errors."""

    __slots__ = ("api", "buf", "end", "pos", "version")

    def __init__(self, buf: Buffer, *, api: str = "", version: int = -1, start: int = 0, end: int | None = None):
        self.buf = memoryview(buf).cast("B") if not isinstance(buf, memoryview) else buf
        self.pos = start
        self.end = len(self.buf) if end is None else end
        self.api = api
        self.version = version

    def error(self, reason: str, field: str, position: int | None = None) -> KafkaProtocolError:
        return KafkaProtocolError(
            reason, api=self.api, version=self.version, field=field, position=self.pos if position is None else position
        )

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def _need(self, n: int, field: str) -> int:
        start = self.pos
        if n < 0 or n > self.end - start:
            raise self.error(f"needs {n} bytes, {self.end - start} left in the frame", field)
        self.pos = start + n
        return start

    def int8(self, field: str) -> int:
        return int(_I8.unpack_from(self.buf, self._need(1, field))[0])

    def int16(self, field: str) -> int:
        return int(_I16.unpack_from(self.buf, self._need(2, field))[0])

    def uint16(self, field: str) -> int:
        return int(_U16.unpack_from(self.buf, self._need(2, field))[0])

    def int32(self, field: str) -> int:
        return int(_I32.unpack_from(self.buf, self._need(4, field))[0])

    def uint32(self, field: str) -> int:
        return int(_U32.unpack_from(self.buf, self._need(4, field))[0])

    def int64(self, field: str) -> int:
        return int(_I64.unpack_from(self.buf, self._need(8, field))[0])

    def float64(self, field: str) -> float:
        return float(_F64.unpack_from(self.buf, self._need(8, field))[0])

    def boolean(self, field: str) -> bool:
        return self.buf[self._need(1, field)] != 0

    def uuid(self, field: str) -> uuid.UUID:
        start = self._need(16, field)
        return uuid.UUID(bytes=bytes(self.buf[start : start + 16]))

    def uvarint(self, field: str, max_bytes: int = 5) -> int:
        """Unsigned LEB128; at most 5 bytes for 32-bit values, 10 for 64-bit ones."""
        result = 0
        shift = 0
        start = self.pos
        for _ in range(max_bytes):
            if self.pos >= self.end:
                raise self.error("varint runs past the end of the frame", field, start)
            byte = self.buf[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if max_bytes == 5 and result > 0xFFFFFFFF:
                    raise self.error("varint exceeds 32 bits", field, start)
                return result
            shift += 7
        raise self.error(f"varint longer than {max_bytes} bytes", field, start)

    def varint(self, field: str) -> int:
        raw = self.uvarint(field)
        return (raw >> 1) ^ -(raw & 1)

    def varlong(self, field: str) -> int:
        raw = self.uvarint(field, 10)
        return (raw >> 1) ^ -(raw & 1)

    def raw(self, n: int, field: str) -> memoryview:
        start = self._need(n, field)
        return self.buf[start : start + n]

    # --- lengths: classic (int16/int32, -1 = null) or compact (uvarint N+1, 0 = null) ---

    def length(self, field: str, *, compact: bool, wide: bool) -> int:
        """A length prefix; -1 means null. Never larger than what is left of the frame."""
        start = self.pos
        if compact:
            n = self.uvarint(field) - 1
        elif wide:
            n = self.int32(field)
        else:
            n = self.int16(field)
        if n < -1:
            raise self.error(f"negative length {n}", field, start)
        return n

    def string(self, field: str, *, compact: bool) -> str | None:
        n = self.length(field, compact=compact, wide=False)
        if n < 0:
            return None
        start = self.pos
        data = self.raw(n, field)
        try:
            return str(data, "utf-8")
        except UnicodeDecodeError as exc:
            raise self.error(f"string is not UTF-8 ({exc.reason})", field, start + exc.start) from None

    def bytes_(self, field: str, *, compact: bool) -> memoryview | None:
        n = self.length(field, compact=compact, wide=True)
        return None if n < 0 else self.raw(n, field)

    def array_length(self, field: str, *, compact: bool) -> int:
        """An array count (-1 = null). Each element takes at least one byte, so a count
        beyond the bytes left is refused before a list of that size is made."""
        start = self.pos
        n = self.length(field, compact=compact, wide=True)
        if n > self.remaining:
            raise self.error(f"array of {n} elements with {self.remaining} bytes left", field, start)
        return n


class Writer:
    """Collects encoded parts; `getvalue` joins them once."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[bytes | bytearray | memoryview] = []

    def getvalue(self) -> bytes:
        return b"".join(self.parts)

    def int8(self, v: int) -> None:
        self.parts.append(_I8.pack(v))

    def int16(self, v: int) -> None:
        self.parts.append(_I16.pack(v))

    def uint16(self, v: int) -> None:
        self.parts.append(_U16.pack(v))

    def int32(self, v: int) -> None:
        self.parts.append(_I32.pack(v))

    def uint32(self, v: int) -> None:
        self.parts.append(_U32.pack(v))

    def int64(self, v: int) -> None:
        self.parts.append(_I64.pack(v))

    def float64(self, v: float) -> None:
        self.parts.append(_F64.pack(v))

    def boolean(self, v: bool) -> None:
        self.parts.append(b"\x01" if v else b"\x00")

    def uuid(self, v: uuid.UUID) -> None:
        self.parts.append(v.bytes)

    def uvarint(self, v: int) -> None:
        self.parts.append(encode_uvarint(v))

    def varint(self, v: int) -> None:
        self.parts.append(encode_uvarint((v << 1) ^ (v >> 31)))

    def varlong(self, v: int) -> None:
        self.parts.append(encode_uvarint((v << 1) ^ (v >> 63)))

    def raw(self, data: Buffer) -> None:
        self.parts.append(data)

    def length(self, n: int, *, compact: bool, wide: bool) -> None:
        if compact:
            self.uvarint(n + 1)
        elif wide:
            self.int32(n)
        else:
            self.int16(n)

    def string(self, v: str | None, *, compact: bool) -> None:
        if v is None:
            self.length(-1, compact=compact, wide=False)
            return
        data = v.encode()
        self.length(len(data), compact=compact, wide=False)
        self.parts.append(data)

    def bytes_(self, v: Buffer | None, *, compact: bool) -> None:
        if v is None:
            self.length(-1, compact=compact, wide=True)
            return
        self.length(len(v), compact=compact, wide=True)
        self.parts.append(v)


def encode_uvarint(v: int) -> bytes:
    if v < 0:
        raise ValueError(f"unsigned varint of negative {v}")
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)
