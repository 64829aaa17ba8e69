"""Base64 for whole Arrow columns at once: one binascii call over the column's joined bytes
and numpy index arithmetic, never a Python step per value (the REST face's binary keys, values
and headers travel as standard, padded base64, as in Confluent REST Proxy's BINARY type).

Both directions rely on base64's 3-byte ↔ 4-character groups: a value padded to a multiple of
3 bytes encodes on its own group boundary, so the joined, padded values encode in one call and
each value's text is a slice of the result; decoding is the mirror image (every padded text is
a multiple of 4 characters, so the joined texts decode in one call and the padding's bytes are
dropped by a mask).
"""

from __future__ import annotations

import binascii
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as _pc

from streamhouse.storage.errors import InvalidInputError

pc: Any = _pc  # pyarrow-stubs type the variadic kernels too narrowly

# Standard alphabet, padded: what RFC 4648 §4 calls base64 (no URL-safe form, no line breaks).
_BASE64 = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"


def _bytes_and_offsets(arr: pa.Array[Any]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """The data bytes and int64 offsets (starting at 0) of a binary or string array."""
    large = pa.types.is_large_binary(arr.type) or pa.types.is_large_string(arr.type)
    offsets_buf: Any = arr.buffers()[1]  # numpy reads Arrow buffers (the buffer protocol); the stubs disagree
    offsets = np.frombuffer(offsets_buf, dtype=np.int64 if large else np.int32, count=arr.offset + len(arr) + 1)
    offsets = offsets[arr.offset : arr.offset + len(arr) + 1].astype(np.int64)
    data_buf: Any = arr.buffers()[2]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    data = data[int(offsets[0]) : int(offsets[-1])]
    return data, offsets - offsets[0]


def _string_array(data: bytes, offsets: np.ndarray[Any, Any], validity: pa.Buffer | None, nulls: int) -> pa.Array[Any]:
    kind = pa.string() if offsets[-1] < 2**31 else pa.large_string()
    width = np.int32 if kind == pa.string() else np.int64
    return pa.Array.from_buffers(
        kind,
        len(offsets) - 1,
        [validity, pa.py_buffer(offsets.astype(width).tobytes()), pa.py_buffer(data)],
        null_count=nulls,
    )


def encode(arr: pa.Array[Any]) -> pa.Array[Any]:
    """A binary (or string) array as base64 strings; nulls stay null."""
    arr = arr.cast(pa.large_binary()) if not pa.types.is_large_binary(arr.type) else arr
    n = len(arr)
    if n == 0:
        return pa.array([], pa.string())
    data, offsets = _bytes_and_offsets(arr)
    lengths = np.diff(offsets)
    padded = (lengths + 2) // 3 * 3
    starts = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(padded, out=starts[1:])
    joined = np.zeros(int(starts[-1]), dtype=np.uint8)
    if data.size:
        # Where each source byte lands: its offset inside its value plus its value's padded start.
        shift = np.repeat(starts[:-1] - offsets[:-1], lengths)
        joined[np.arange(data.size, dtype=np.int64) + shift] = data
    text = np.frombuffer(binascii.b2a_base64(joined.tobytes(), newline=False), dtype=np.uint8).copy()
    ends = starts[1:] * 4 // 3
    tail = lengths % 3  # 1 byte left over: "==", 2 bytes: "="
    text[ends[tail == 1] - 2] = ord("=")
    text[ends[(tail == 1) | (tail == 2)] - 1] = ord("=")
    validity = arr.buffers()[0] if arr.null_count else None
    if validity is not None and arr.offset:
        validity = pc.is_valid(arr).buffers()[1]
    return _string_array(text.tobytes(), starts * 4 // 3, validity, arr.null_count)


def decode(arr: pa.Array[Any], where: str) -> pa.Array[Any]:
    """Base64 strings as a binary array; nulls stay null. InvalidInputError names the first
    value that is not standard padded base64."""
    strings = pc.fill_null(arr.cast(pa.large_string()), "")
    n = len(strings)
    if n == 0:
        return pa.array([], pa.binary())
    ok = pc.match_substring_regex(strings, _BASE64)
    if not pc.all(ok).as_py():
        first = int(np.argmin(ok.to_numpy(zero_copy_only=False)))
        raise InvalidInputError(f"{where}[{first}] is not base64 (standard alphabet, padded with '=', no line breaks)")
    text, offsets = _bytes_and_offsets(strings)
    chars = np.diff(offsets)
    pads = pc.ends_with(strings, "=").to_numpy(zero_copy_only=False).astype(np.int64)
    pads += pc.ends_with(strings, "==").to_numpy(zero_copy_only=False).astype(np.int64)
    clean = np.where(text == ord("="), np.uint8(ord("A")), text)  # zero bits; dropped below
    full = np.frombuffer(binascii.a2b_base64(clean.tobytes()), dtype=np.uint8)
    block_ends = np.cumsum(chars) * 3 // 4
    keep = np.ones(full.size, dtype=np.bool_)
    keep[block_ends[pads >= 1] - 1] = False
    keep[block_ends[pads == 2] - 2] = False
    out = full[keep]
    lengths = chars * 3 // 4 - pads
    new_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_offsets[1:])
    if new_offsets[-1] >= 2**31:
        raise InvalidInputError(f"{where}: a batch may carry at most 2 GiB of keys or values; split it")
    validity = pc.is_valid(arr).buffers()[1] if arr.null_count else None
    return pa.Array.from_buffers(
        pa.binary(),
        n,
        [validity, pa.py_buffer(new_offsets.astype(np.int32).tobytes()), pa.py_buffer(out.tobytes())],
        null_count=arr.null_count,
    )
