"""RecordBatch v2 ↔ Arrow (engine/kafka/record) against a real third-party codec,
kafka-python's DefaultRecordBatch / DefaultRecordBatchBuilder: batches written by them
with each compression codec decode to the same records with ours, and batches we write
decode with theirs — null vs empty keys/values and headers exact. Then the refusals:
bad CRC32C, truncation, wrong magic, unknown codec, malformed record sections and
decompression bombs, each a typed error.
"""

from __future__ import annotations

import contextlib
import gzip
import zlib
from typing import Any

import cramjam
import lz4.frame
import numpy as np
import pyarrow as pa
import pytest
import zstandard
from crc32c import crc32c
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from streamhouse.kafka.errors import (
    CorruptMessageError,
    KafkaProtocolError,
    RecordTooLargeError,
    UnsupportedCompressionError,
)
from streamhouse.kafka.record import compression
from streamhouse.kafka.record.batch import HEADER, decode_batch, iter_batches
from streamhouse.kafka.record.encode import encode_batch, encode_batches
from streamhouse.storage.records.schema import RECORD_SCHEMA, make_batch
from tests.strategies import record_batches

CODECS = [compression.NONE, compression.GZIP, compression.SNAPPY, compression.LZ4, compression.ZSTD]
CODEC_IDS = [compression.NAMES[c] for c in CODECS]
PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _expected(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    """Our records as Kafka can carry them: an empty header list reads back as none."""
    return [dict(r, headers=r["headers"] or None) for r in batch.to_pylist()]


def _theirs_to_rows(data: bytes) -> list[dict[str, Any]]:
    batch = DefaultRecordBatch(bytearray(data))
    assert batch.validate_crc()
    return [
        {
            "offset": r.offset,
            "timestamp": r.timestamp,
            "key": None if r.key is None else bytes(r.key),
            "value": None if r.value is None else bytes(r.value),
            "headers": [{"key": k, "value": None if v is None else bytes(v)} for k, v in r.headers] or None,
        }
        for r in batch
    ]


def _build_with_kafka_python(batch: pa.RecordBatch, codec: int) -> bytes:
    builder = DefaultRecordBatchBuilder(2, codec, False, -1, -1, -1, 1 << 30)
    for i, row in enumerate(batch.to_pylist()):
        headers = [(h["key"], h["value"]) for h in row["headers"] or []]
        assert builder.append(i, row["timestamp"], row["key"], row["value"], headers) is not None
    return bytes(builder.build())


def _batch(section: bytes, count: int, attributes: int, *, base_ts: int = 0, max_ts: int = 0) -> bytes:
    """A batch around a given (possibly compressed, possibly broken) record section, with
    a correct CRC so the codec under test gets past the checksum."""
    last_delta = max(count - 1, 0)
    header = HEADER.pack(0, 49 + len(section), -1, 2, 0, attributes, last_delta, base_ts, max_ts, -1, -1, -1, count)
    crc = crc32c(header[21:] + section)
    return header[:17] + crc.to_bytes(4, "big") + header[21:] + section


def _section(data: bytes) -> bytes:
    return data[61:]


nonempty_batches = record_batches(max_records=30, allow_big=False).filter(lambda b: b.num_rows > 0)


@pytest.mark.parametrize("codec", CODECS, ids=CODEC_IDS)
@PROPERTY
@given(batch=nonempty_batches)
def test_kafka_python_batches_decode_exactly(codec: int, batch: pa.RecordBatch) -> None:
    data = _build_with_kafka_python(batch, codec)
    decoded = decode_batch(data)
    # kafka-python leaves a batch uncompressed when compressing would not shrink it.
    assert decoded.compression == DefaultRecordBatch(bytearray(data)).compression_type
    assert decoded.records.schema == RECORD_SCHEMA
    # kafka-python numbers records from 0 on produce; the broker assigns the real offsets.
    base = batch.column("offset")[0].as_py()
    assert decoded.records.to_pylist() == [dict(r, offset=r["offset"] - base) for r in _expected(batch)]
    assert decoded.size == len(data)


@pytest.mark.parametrize("codec", CODECS, ids=CODEC_IDS)
@PROPERTY
@given(batch=nonempty_batches)
def test_our_batches_decode_with_kafka_python(codec: int, batch: pa.RecordBatch) -> None:
    data = encode_batch(batch, compression=codec)
    assert _theirs_to_rows(data) == _expected(batch)
    assert decode_batch(data).records.to_pylist() == _expected(batch)


def test_null_and_empty_stay_distinct_and_headers_exact() -> None:
    batch = make_batch(
        [None, b"", b"v"],
        keys=[b"", None, b"k"],
        timestamps=[5, 3, 9],
        headers=[[("h", None), ("h", b"")], None, [("ключ", b"\x00")]],
        base_offset=100,
    )
    for codec in CODECS:
        rows = decode_batch(encode_batch(batch, compression=codec)).records.to_pylist()
        assert [r["value"] for r in rows] == [None, b"", b"v"]
        assert [r["key"] for r in rows] == [b"", None, b"k"]
        assert rows[0]["headers"] == [{"key": "h", "value": None}, {"key": "h", "value": b""}]
        assert rows[2]["headers"] == [{"key": "ключ", "value": b"\x00"}]
        assert [r["timestamp"] for r in rows] == [5, 3, 9]  # non-monotonic CreateTime kept
        assert [r["offset"] for r in rows] == [100, 101, 102]


def test_raw_snappy_as_librdkafka_writes_it() -> None:
    batch = make_batch([b"a" * 100, b"b"], keys=[None, b"k"], timestamps=[1, 2])
    plain = encode_batch(batch)
    raw = bytes(cramjam.snappy.compress_raw(_section(plain)))
    assert not raw.startswith(compression.XERIAL_MAGIC)
    data = _batch(raw, 2, compression.SNAPPY, base_ts=1, max_ts=2)
    assert decode_batch(data).records.to_pylist() == _expected(batch)
    assert _theirs_to_rows(data) == _expected(batch)  # and kafka-python agrees it is valid


def test_java_style_xerial_snappy_with_several_blocks() -> None:
    values = [bytes([i % 251]) * 1000 for i in range(100)]  # ~100 kB: four 32 kB xerial blocks
    batch = make_batch(values, timestamps=list(range(100)))
    data = encode_batch(batch, compression=compression.SNAPPY)
    assert _section(data).startswith(compression.XERIAL_MAGIC)
    assert decode_batch(data).records.column("value").to_pylist() == values
    assert [r["value"] for r in _theirs_to_rows(data)] == values


def test_sliced_arrow_batches_encode_their_own_rows() -> None:
    batch = make_batch(
        [b"a", None, b"ccc", b"", b"e"],
        keys=[b"1", b"2", None, b"4", b""],
        timestamps=[10, 20, 30, 40, 50],
        headers=[[("x", b"1")], None, [("y", None)], [], [("z", b"zz")]],
        base_offset=7,
    )
    part = batch.slice(1, 3)
    data = encode_batch(part)
    assert decode_batch(data).records.to_pylist() == _expected(part)
    assert _theirs_to_rows(data) == _expected(part)


def test_log_append_time_replaces_timestamps() -> None:
    batch = make_batch([b"a", b"b"], timestamps=[1, 2])
    data = encode_batch(batch, log_append_time=True)
    decoded = decode_batch(data)
    assert decoded.log_append_time
    assert decoded.records.column("timestamp").to_pylist() == [2, 2]


def test_several_batches_in_one_records_field() -> None:
    first = make_batch([b"a", b"b"], timestamps=[1, 2], base_offset=0)
    second = make_batch([b"c"], timestamps=[3], base_offset=2)
    data = encode_batches([first, make_batch([], timestamps=[]), second], compression=compression.ZSTD)
    batches = list(iter_batches(data))
    assert [b.base_offset for b in batches] == [0, 2]
    assert pa.Table.from_batches([b.records for b in batches]).column("value").to_pylist() == [b"a", b"b", b"c"]


def test_a_large_batch_decodes_whole() -> None:
    n = 50_000
    rng = np.random.default_rng(1)
    values = [bytes(v) for v in rng.integers(0, 256, size=(n, 20), dtype=np.uint8)]
    batch = make_batch(values, keys=[None] * n, timestamps=np.arange(n, dtype=np.int64) * 3)
    decoded = decode_batch(encode_batch(batch, compression=compression.LZ4)).records
    assert decoded.column("value").equals(batch.column("value"))
    assert decoded.column("timestamp").equals(batch.column("timestamp"))
    assert decoded.column("key").null_count == n


# ---------------------------------------------------------------- refusals


def test_bad_crc_is_corrupt_message() -> None:
    data = bytearray(encode_batch(make_batch([b"hello"], timestamps=[1])))
    data[-3] ^= 0x01
    with pytest.raises(CorruptMessageError, match="CRC32C") as info:
        decode_batch(bytes(data))
    assert info.value.error_code == 2  # CORRUPT_MESSAGE
    assert info.value.position == 17


def test_truncated_and_wrong_magic() -> None:
    data = encode_batch(make_batch([b"hello", b"world"], timestamps=[1, 2]))
    for cut in range(len(data)):
        with pytest.raises(CorruptMessageError):
            decode_batch(data[:cut])
    magic1 = bytearray(data)
    magic1[16] = 1
    with pytest.raises(KafkaProtocolError, match="magic 1"):
        decode_batch(bytes(magic1))


def test_unknown_codec_is_refused() -> None:
    data = _batch(b"\x00" * 10, 1, 5)
    with pytest.raises(UnsupportedCompressionError) as info:
        decode_batch(data)
    assert info.value.error_code == 76


def test_record_section_must_match_the_record_count() -> None:
    section = _section(encode_batch(make_batch([b"a", b"b"], timestamps=[1, 2])))
    with pytest.raises(CorruptMessageError, match="bytes left after the last record"):
        decode_batch(_batch(section, 1, 0))
    with pytest.raises(CorruptMessageError, match="past"):
        decode_batch(_batch(section, 3, 0))
    with pytest.raises(CorruptMessageError, match="records in"):
        decode_batch(_batch(section, 10**9, 0))


def test_header_key_must_be_utf8() -> None:
    batch = make_batch([b"v"], timestamps=[1], headers=[[("ab", b"1")]])
    section = bytearray(_section(encode_batch(batch)))
    at = section.index(b"ab")
    section[at] = 0xFF
    with pytest.raises(CorruptMessageError, match="UTF-8"):
        decode_batch(_batch(bytes(section), 1, 0))


BOMB = b"\x00" * (4 << 20)


def _xerial(data: bytes) -> bytes:
    return compression.compress(compression.SNAPPY, data)


@pytest.mark.parametrize(
    "codec,compress",
    [
        (compression.GZIP, gzip.compress),
        (compression.GZIP, zlib.compress),
        (compression.SNAPPY, lambda d: bytes(cramjam.snappy.compress_raw(d))),
        (compression.SNAPPY, _xerial),
        (compression.LZ4, lambda d: lz4.frame.compress(d, block_linked=False)),
        (compression.ZSTD, lambda d: zstandard.ZstdCompressor().compress(d)),
        (compression.ZSTD, lambda d: zstandard.ZstdCompressor(write_content_size=False).compress(d)),
    ],
    ids=["gzip", "zlib", "snappy-raw", "snappy-xerial", "lz4", "zstd", "zstd-no-size"],
)
def test_decompression_bombs_stop_at_the_limit(codec: int, compress: Any) -> None:
    packed = compress(BOMB)
    assert len(packed) < 300_000
    with pytest.raises(RecordTooLargeError) as info:
        decode_batch(_batch(packed, 1, codec), max_uncompressed=1 << 20)
    assert info.value.error_code == 10  # MESSAGE_TOO_LARGE
    with pytest.raises(CorruptMessageError):  # under the limit, the zeros are no records
        decode_batch(_batch(packed, 1, codec), max_uncompressed=8 << 20)


@pytest.mark.parametrize("codec", CODECS[1:], ids=CODEC_IDS[1:])
def test_garbage_compressed_data_is_corrupt(codec: int) -> None:
    with pytest.raises(CorruptMessageError):
        decode_batch(_batch(b"\x01\x02\x03 not compressed at all", 1, codec))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 40), st.sampled_from(CODECS))
def test_random_record_sections_only_raise_typed_errors(section: bytes, count: int, codec: int) -> None:
    with contextlib.suppress(KafkaProtocolError):
        decode_batch(_batch(section, count, codec))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_valid_sections_only_raise_typed_errors(data: st.DataObject) -> None:
    batch = make_batch(
        [b"abc", None, b""], keys=[b"k", b"", None], timestamps=[1, 2, 3], headers=[[("h", b"v")], None, [("x", None)]]
    )
    section = bytearray(_section(encode_batch(batch)))
    for _ in range(data.draw(st.integers(1, 4))):
        section[data.draw(st.integers(0, len(section) - 1))] = data.draw(st.integers(0, 255))
    with contextlib.suppress(KafkaProtocolError):
        rows = decode_batch(_batch(bytes(section), 3, 0)).records
        rows.validate(full=True)
