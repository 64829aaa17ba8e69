"""WAL entry framing (docs/DESIGN.md §3): pure, synchronous, IO-free.

Frame layout, little-endian, 48-byte header then the payload::

    offset size field
         0    4 magic          b"\\x89SW1" (last byte = format version)
         4    4 payload length u32
         8    8 topic id       u64
        16    4 partition      u32
        20    8 leader epoch   u64
        28    8 base offset    i64 (assigned by the leader before the write)
        36    4 record count   u32
        40    4 payload crc    CRC32C of the payload
        44    4 header crc     CRC32C of bytes 0..44 (magic, length, fields, payload crc)
        48    n payload        Arrow IPC batch, opaque here

Why two checksums: the header CRC makes the length trustworthy, so a damaged payload is
skipped by its length without losing the entries behind it, and a damaged header (whose length
cannot be trusted) is skipped by scanning forward for the next magic whose header CRC holds.
A header that passes its CRC but whose payload runs past the end of the buffer can only be an
interrupted append: that, a header fragment shorter than 48 bytes, or a zero-filled tail (what
some filesystems expose after a crash when the size was persisted before the data) is a torn
tail, the one thing a reader may cut off.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from streamhouse.storage.checksum import crc32c
from streamhouse.storage.errors import CorruptDataError, InvalidInputError

Buffer = bytes | bytearray | memoryview

MAGIC = b"\x89SW1"
# A lease epoch no leadership ever reaches: an entry under it records that the records of an
# entry with the identical payload were handed to another agent's leader (produced there with
# acks=durable), so recovery must not append them again (storage/wal/recovery.py).
FORWARDED_EPOCH = (1 << 63) - 1
_HEADER = struct.Struct("<4sIQIQqIII")
HEADER_SIZE = _HEADER.size
# The header CRC covers everything before itself, including the payload CRC.
_CRC_SPAN = HEADER_SIZE - 4
_FIELDS = struct.Struct("<4sIQIQqII")
assert HEADER_SIZE == 48 and _FIELDS.size == _CRC_SPAN


@dataclass(frozen=True, slots=True)
class WalEntry:
    topic_id: int
    partition: int
    epoch: int
    base_offset: int
    record_count: int
    payload: bytes

    @property
    def end_offset(self) -> int:
        """One past the last offset this entry holds (what a segment must cover to release it)."""
        return self.base_offset + self.record_count

    @property
    def encoded_size(self) -> int:
        return HEADER_SIZE + len(self.payload)


@dataclass(frozen=True, slots=True)
class ScanResult:
    entries: tuple[WalEntry, ...]
    # One error per damaged region that was skipped; entries around it are kept.
    errors: tuple[CorruptDataError, ...]
    # Where the intact data ends: a writer truncates here before appending.
    valid_end: int
    torn_bytes: int

    @property
    def skipped(self) -> int:
        return len(self.errors)


def byte_view(payload: Buffer) -> Buffer:
    """`payload` as something whose len() counts bytes (a memoryview of wider items would not)."""
    if isinstance(payload, memoryview) and (payload.ndim != 1 or payload.itemsize != 1):
        return payload.cast("B")
    return payload


def encode_header(
    topic_id: int, partition: int, epoch: int, base_offset: int, record_count: int, payload: Buffer
) -> bytes:
    """The 48-byte header for `payload`, so a writer can writev header and payload without a copy.

    `payload` must already be a `byte_view`.
    """
    if base_offset < 0:
        raise InvalidInputError(f"WAL base offset must be >= 0, got {base_offset}")
    try:
        fields = _FIELDS.pack(
            MAGIC, len(payload), topic_id, partition, epoch, base_offset, record_count, crc32c(payload)
        )
    except struct.error as exc:
        raise InvalidInputError(f"WAL entry field out of range: {exc}") from None
    return fields + crc32c(fields).to_bytes(4, "little")


def encode_entry(
    topic_id: int, partition: int, epoch: int, base_offset: int, record_count: int, payload: Buffer
) -> bytes:
    payload = byte_view(payload)
    return encode_header(topic_id, partition, epoch, base_offset, record_count, payload) + bytes(payload)


@dataclass(frozen=True, slots=True)
class _Header:
    length: int
    topic_id: int
    partition: int
    epoch: int
    base_offset: int
    record_count: int
    payload_crc: int


def _header_at(buf: bytes | bytearray, pos: int) -> _Header | None:
    """The header at `pos` if it is complete, starts with the magic and passes its CRC."""
    if len(buf) - pos < HEADER_SIZE or not buf.startswith(MAGIC, pos):
        return None
    _, length, topic_id, partition, epoch, base, count, payload_crc, header_crc = _HEADER.unpack_from(buf, pos)
    if crc32c(memoryview(buf)[pos : pos + _CRC_SPAN]) != header_crc:
        return None
    return _Header(length, topic_id, partition, epoch, base, count, payload_crc)


def _entry(header: _Header, payload: bytes) -> WalEntry:
    return WalEntry(header.topic_id, header.partition, header.epoch, header.base_offset, header.record_count, payload)


def decode_entry(buf: Buffer, source: str) -> WalEntry:
    """Decode a buffer holding exactly one entry; any damage raises CorruptDataError."""
    data = buf if isinstance(buf, bytes | bytearray) else bytes(buf)
    size = len(data)
    if size < HEADER_SIZE:
        raise CorruptDataError(
            f"WAL entry truncated: {size} bytes, the header alone needs {HEADER_SIZE}",
            source=source,
            position=size,
        )
    if not data.startswith(MAGIC):
        raise CorruptDataError("WAL entry has a bad magic", source=source, position=0)
    header = _header_at(data, 0)
    if header is None:
        raise CorruptDataError("WAL entry header checksum mismatch", source=source, position=0)
    end = HEADER_SIZE + header.length
    if end > size:
        raise CorruptDataError(
            f"WAL entry truncated: payload needs {header.length} bytes, {size - HEADER_SIZE} present",
            source=source,
            position=size,
        )
    if end < size:
        raise CorruptDataError(f"{size - end} trailing bytes after the WAL entry", source=source, position=end)
    payload = bytes(memoryview(data)[HEADER_SIZE:end])
    if crc32c(payload) != header.payload_crc:
        raise CorruptDataError("WAL entry payload checksum mismatch", source=source, position=HEADER_SIZE)
    return _entry(header, payload)


def _resync(buf: bytes | bytearray, start: int) -> int:
    """Position of the next intact header at or after `start`, or -1."""
    pos = buf.find(MAGIC, start)
    while pos >= 0:
        if _header_at(buf, pos) is not None:
            return pos
        pos = buf.find(MAGIC, pos + 1)
    return -1


def _is_crash_tail(buf: bytes | bytearray, pos: int) -> bool:
    """Whether bytes from `pos` to the end, holding no intact header, look like an interrupted write.

    Only a header fragment or zeros qualify; anything else is damage and is reported, never cut.
    """
    if len(buf) - pos < HEADER_SIZE:
        return True
    return buf.count(0, pos) == len(buf) - pos


def scan(buf: Buffer, source: str) -> ScanResult:
    """Read every intact entry, skipping and reporting damaged ones, and locate a torn tail."""
    data = buf if isinstance(buf, bytes | bytearray) else bytes(buf)
    view = memoryview(data)
    size = len(data)
    entries: list[WalEntry] = []
    errors: list[CorruptDataError] = []
    pos = 0
    while pos < size:
        header = _header_at(data, pos)
        if header is None:
            found = _resync(data, pos + 1)
            if found >= 0:
                errors.append(
                    CorruptDataError(
                        f"damaged WAL entry header; skipped {found - pos} bytes to the next intact entry",
                        source=source,
                        position=pos,
                    )
                )
                pos = found
                continue
            if _is_crash_tail(data, pos):
                return ScanResult(tuple(entries), tuple(errors), pos, size - pos)
            errors.append(
                CorruptDataError(
                    f"damaged WAL data: no intact entry in the last {size - pos} bytes",
                    source=source,
                    position=pos,
                )
            )
            break
        end = pos + HEADER_SIZE + header.length
        if end > size:
            return ScanResult(tuple(entries), tuple(errors), pos, size - pos)
        payload = view[pos + HEADER_SIZE : end]
        if crc32c(payload) == header.payload_crc:
            entries.append(_entry(header, bytes(payload)))
        else:
            errors.append(CorruptDataError("WAL entry payload checksum mismatch", source=source, position=pos))
        pos = end
    return ScanResult(tuple(entries), tuple(errors), size, 0)
