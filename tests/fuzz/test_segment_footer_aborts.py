"""Segment footers that aborted the whole process (issue 19; found by test_fuzz_segment.py's
long runs): damage under a recomputed CRC that pyarrow parses, but whose column chunk metadata
its C++ throws on where nothing catches it ("Fatal Python error: Aborted"). parse_footer now
refuses them first (storage/segment/_footer_check.c). They run in a child process, so a
regression fails this test with the child's output instead of killing the test run."""

from __future__ import annotations

import subprocess
import sys

# Each case damages one byte of a valid layout-2 footer, recomputes the CRC, parses the footer
# and asks what the scan path asks (column_min_max); each must be CorruptDataError.
CHILD = r"""
from streamhouse.storage.checksum import crc32c
from streamhouse.storage.errors import CorruptDataError
from streamhouse.storage.records.schema import make_batch
from streamhouse.storage.segment.format import column_min_max, encode_segment, parse_footer

batch = make_batch([b"v"], keys=[b"k"], timestamps=[1000], headers=[[("h", b"x")]], base_offset=5)
seg = encode_segment(batch, topic="t", partition=1, epoch=3)
tail = seg.data[-seg.footer_length:]


def chunk_type_boolean(tail):
    # The _timestamp column chunk's ColumnMetaData starts: struct header 0x1c, type INT64 (0x15 0x04).
    path = tail.index(b"\x18\n_timestamp", tail.index(b"\x1c\x15\x04"))
    at = tail.rindex(b"\x1c\x15\x04", 0, path) + 2
    return tail[:at] + b"\x00" + tail[at + 1:]  # BOOLEAN: ".statistics" aborted


def schema_repetition_minus_one(tail):
    # The _value schema element: type BYTE_ARRAY, repetition OPTIONAL (0x25 0x02) -> -1, which
    # pyarrow reads as REQUIRED: the chunk's level histogram no longer fits ("Definition level
    # histogram size mismatch" aborted on building the chunk's metadata).
    at = tail.index(b"\x15\x0c%\x02\x18\x06_value") + 3
    return tail[:at] + b"\x01" + tail[at + 1:]


for damage in (chunk_type_boolean, schema_repetition_minus_one):
    bad = damage(tail)
    assert bad != tail and len(bad) == len(tail)
    try:
        footer = parse_footer(bad, size_bytes=seg.size_bytes, footer_crc=crc32c(bad), source="seg")
        for name in ("offset", "timestamp", "key", "value"):
            column_min_max(footer, 0, name)
        print(damage.__name__, "accepted")
    except CorruptDataError as exc:
        print(damage.__name__, exc)
"""


def test_footer_damage_that_aborted_pyarrow_is_corrupt_data() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"child died ({done.returncode}): {done.stderr[-3000:]}"
    assert done.stdout.splitlines() == [
        "chunk_type_boolean segment footer refused: row group 0 column '_timestamp' is stored as BOOLEAN,"
        " its column is INT64 (seg at byte 441)",
        "schema_repetition_minus_one segment footer refused: schema repetition -1 (seg at byte 441)",
    ]
