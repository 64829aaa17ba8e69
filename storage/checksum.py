"""CRC32C (Castagnoli), hardware accelerated: the one checksum of every on-disk and wire format."""

from __future__ import annotations

import crc32c as _crc32c


def crc32c(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    return int(_crc32c.crc32c(data, value))
