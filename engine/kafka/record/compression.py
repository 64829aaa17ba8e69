"""Kafka's batch compression codecs: gzip, snappy (raw and xerial framing), lz4 frame, zstd.

Every decompressor is bounded: it stops once the output would pass `limit` and the batch
is refused (RecordTooLargeError), so a few kilobytes of crafted input cannot make the
agent allocate gigabytes. Snappy declares its size up front, so it is checked before
anything is expanded; gzip, lz4 and zstd are streamed with a maximum output length.
"""

from __future__ import annotations

import struct
import zlib
from typing import Final

import cramjam
import lz4.frame
import zstandard

from streamhouse.kafka.errors import CorruptMessageError, RecordTooLargeError, UnsupportedCompressionError
from streamhouse.kafka.protocol.primitives import Buffer

NONE: Final = 0
GZIP: Final = 1
SNAPPY: Final = 2
LZ4: Final = 3
ZSTD: Final = 4
NAMES: Final = {NONE: "none", GZIP: "gzip", SNAPPY: "snappy", LZ4: "lz4", ZSTD: "zstd"}

XERIAL_MAGIC: Final = b"\x82SNAPPY\x00"
_XERIAL_HEADER = struct.Struct(">8sii")
_BLOCK_LEN = struct.Struct(">i")
_XERIAL_BLOCK = 32 * 1024  # the block size Java's SnappyOutputStream writes
_CHUNK = 1 << 20


def compress(codec: int, data: Buffer, *, snappy_xerial: bool = True) -> bytes:
    """Compresses a record section the way Kafka clients do. Snappy defaults to the xerial
    framing the Java client writes (every client reads it); lz4 writes independent blocks
    without content size or checksum, which Java's reader requires."""
    if codec == NONE:
        return bytes(data)
    if codec == GZIP:
        c = zlib.compressobj(6, zlib.DEFLATED, 31)
        return c.compress(data) + c.flush()
    if codec == SNAPPY:
        if not snappy_xerial:
            return bytes(cramjam.snappy.compress_raw(bytes(data)))
        view = memoryview(data)
        parts = [_XERIAL_HEADER.pack(XERIAL_MAGIC, 1, 1)]
        for start in range(0, len(view), _XERIAL_BLOCK):
            block = bytes(cramjam.snappy.compress_raw(bytes(view[start : start + _XERIAL_BLOCK])))
            parts += [_BLOCK_LEN.pack(len(block)), block]
        return b"".join(parts)
    if codec == LZ4:
        return bytes(lz4.frame.compress(bytes(data), block_linked=False, content_checksum=False, store_size=False))
    if codec == ZSTD:
        return bytes(zstandard.ZstdCompressor().compress(bytes(data)))
    raise UnsupportedCompressionError(f"compression codec {codec}", field="attributes")


def decompress(codec: int, data: Buffer, limit: int) -> bytes:
    """The record section of a compressed batch, refused if it would exceed `limit` bytes."""
    name = NAMES.get(codec)
    if name is None:
        raise UnsupportedCompressionError(f"compression codec {codec} is not defined by Kafka", field="attributes")
    try:
        if codec == NONE:
            out = bytes(data)
        elif codec == GZIP:
            out = _gunzip(data, limit)
        elif codec == SNAPPY:
            out = _unsnappy(memoryview(data), limit)
        elif codec == LZ4:
            d = lz4.frame.LZ4FrameDecompressor()
            out = d.decompress(bytes(data), max_length=limit + 1)
            if len(out) <= limit and not d.eof:
                raise CorruptMessageError("lz4 frame is truncated", field="records")
        else:
            out = _unzstd(data, limit)
    except (CorruptMessageError, RecordTooLargeError):
        raise
    except Exception as exc:  # each library raises its own error type for bad input
        raise CorruptMessageError(f"{name} data does not decompress: {exc}", field="records") from None
    if len(out) > limit:
        raise RecordTooLargeError(f"{name} batch expands beyond {limit} bytes", field="records")
    return out


def _gunzip(data: Buffer, limit: int) -> bytes:
    d = zlib.decompressobj(47)  # 32 + 15: gzip or zlib header, detected
    out = d.decompress(data, limit + 1)
    if len(out) <= limit and not d.eof:
        raise CorruptMessageError("gzip stream is truncated", field="records")
    return out


def _snappy_size(block: memoryview) -> int:
    """The uncompressed length a raw snappy block declares in its leading varint."""
    size = shift = 0
    for i in range(min(5, len(block))):
        size |= (block[i] & 0x7F) << shift
        if not block[i] & 0x80:
            return size
        shift += 7
    raise CorruptMessageError("snappy block has no valid length", field="records")


def _unsnappy(data: memoryview, limit: int) -> bytes:
    if bytes(data[:8]) != XERIAL_MAGIC:
        if _snappy_size(data) > limit:
            raise RecordTooLargeError(f"snappy batch declares more than {limit} bytes", field="records")
        return bytes(cramjam.snappy.decompress_raw(bytes(data)))
    pos, total, parts = _XERIAL_HEADER.size, 0, []
    # Each block consumes at least its 4-byte length, so this loop ends.
    while pos < len(data):
        if pos + 4 > len(data):
            raise CorruptMessageError("xerial snappy block length is truncated", field="records", position=pos)
        (n,) = _BLOCK_LEN.unpack_from(data, pos)
        pos += 4
        if n < 0 or pos + n > len(data):
            raise CorruptMessageError("xerial snappy block runs past the batch", field="records", position=pos)
        block = data[pos : pos + n]
        total += _snappy_size(block)
        if total > limit:
            raise RecordTooLargeError(f"snappy batch declares more than {limit} bytes", field="records")
        parts.append(bytes(cramjam.snappy.decompress_raw(bytes(block))))
        pos += n
    return b"".join(parts)


def _unzstd(data: Buffer, limit: int) -> bytes:
    reader = zstandard.ZstdDecompressor().stream_reader(bytes(data))
    parts: list[bytes] = []
    total = 0
    # Every read returns at least one byte until the end of the frame, and the total is
    # capped at limit + 1, so the loop ends.
    while total <= limit:
        chunk = reader.read(min(_CHUNK, limit + 1 - total))
        if not chunk:
            break
        parts.append(chunk)
        total += len(chunk)
    return b"".join(parts)
