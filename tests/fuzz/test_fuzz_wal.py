"""Fuzz of the WAL (storage/wal/format.py, storage/wal/recovery.py): what replay reads back from
disk after a crash or damage. `scan` never raises (damage is reported per region, a torn tail cut),
`decode_entry` decodes or raises CorruptDataError, and the recovery plan over entries whose
headers are intact but whose payloads are damaged (a bad disk under a good CRC, or another
writer's bytes) refuses them with CorruptDataError only."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from streamhouse.storage.errors import CorruptDataError, StreamHouseError
from streamhouse.storage.model import SegmentInfo
from streamhouse.storage.records.codec import decode_batch, encode_batch
from streamhouse.storage.records.schema import make_batch
from streamhouse.storage.wal.format import FORWARDED_EPOCH, WalEntry, decode_entry, encode_entry, scan
from streamhouse.storage.wal.recovery import piece_payload, plan_recovery
from tests.fuzz.budget import bounded, fuzz
from tests.strategies import hostile, mutations, record_batches

small_batches = record_batches(max_records=6, allow_big=False)
payloads = st.one_of(small_batches.map(encode_batch), st.binary(max_size=64))


@st.composite
def entries(draw: st.DrawFn) -> WalEntry:
    payload = draw(st.one_of(payloads, mutations(payloads, max_ops=2)))
    return WalEntry(
        topic_id=draw(st.integers(0, 3)),
        partition=draw(st.integers(0, 2)),
        epoch=draw(st.sampled_from((1, 2, 3, FORWARDED_EPOCH))),
        base_offset=draw(st.integers(0, 40)),
        record_count=draw(st.integers(0, 12)),
        payload=payload,
    )


def encoded(e: WalEntry) -> bytes:
    return encode_entry(e.topic_id, e.partition, e.epoch, e.base_offset, e.record_count, e.payload)


wal_files = st.lists(entries().map(encoded), max_size=5).map(b"".join)


@fuzz(200)
@given(hostile(wal_files))
def test_scan_reports_damage_and_never_raises(data: bytes) -> None:
    with bounded():
        result = scan(data, "fuzz.wal")
    assert 0 <= result.valid_end <= len(data) and result.valid_end + result.torn_bytes == len(data)
    assert all(isinstance(e, CorruptDataError) for e in result.errors)
    for entry in result.entries:  # every entry returned is intact: it re-encodes to bytes found
        assert encoded(entry) in data


@fuzz(150)
@given(hostile(entries().map(encoded)))
def test_decode_entry_decodes_or_raises_corrupt_data(data: bytes) -> None:
    with bounded():
        try:
            entry = decode_entry(data, "fuzz.wal")
        except CorruptDataError:
            return
    assert encoded(entry) == data


segments = st.lists(
    st.builds(
        lambda base, n, epoch: SegmentInfo(
            topic="t", partition=0, base_offset=base, end_offset=base + n, min_timestamp=0, max_timestamp=0,
            size_bytes=1, object_key=f"s/{base}", epoch=epoch, footer_length=1, footer_crc=0,
        ),
        st.integers(0, 30), st.integers(1, 10), st.sampled_from((1, 2, 3)),
    ),
    max_size=3,
)  # fmt: skip


# Found by this fuzz: a header counting 2 records over a payload of none; the slice [1, 2) was
# re-encoded as 0 records, so recovery re-buffered fewer records than the offsets it advanced.
@example([WalEntry(0, 0, 1, 0, 2, encode_batch(make_batch([])))], 1, [])
@fuzz(150)
@given(st.lists(entries(), max_size=5), st.integers(0, 50), segments)
def test_recovery_of_damaged_payloads_raises_only_corrupt_data(
    wal: list[WalEntry], committed_end: int, segs: list[SegmentInfo]
) -> None:
    with bounded():
        plan = plan_recovery(wal, committed_end, segs)
        for piece in (*plan.tail, *plan.orphans):
            try:
                payload = piece_payload(piece)
            except StreamHouseError as exc:
                assert isinstance(exc, CorruptDataError), exc
                continue
            if not piece.whole:  # a slice re-encoded: exactly the records the piece stands for
                assert decode_batch(payload).num_rows == piece.records


def test_a_whole_entry_whose_payload_disagrees_with_its_header_is_corrupt() -> None:
    """Replayed whole (writer recovery, WAL takeover), an entry is decoded by piece_batch: a
    payload of two records under a header of three must not re-buffer two records at offsets
    the piece advances by three."""
    from streamhouse.storage.wal.recovery import Piece, piece_batch

    payload = encode_batch(make_batch([b"a", b"b"]))
    entry = WalEntry(topic_id=1, partition=0, epoch=1, base_offset=10, record_count=3, payload=payload)
    piece = Piece(entry, 10, 13)
    assert piece.whole and piece_payload(piece) == payload
    try:
        piece_batch(piece_payload(piece), piece, "WAL entry t/0@10")
    except CorruptDataError as exc:
        assert "2 records" in str(exc) and "says 3" in str(exc)
    else:
        raise AssertionError("a disagreeing entry was decoded")
    good = WalEntry(topic_id=1, partition=0, epoch=1, base_offset=10, record_count=2, payload=payload)
    assert piece_batch(payload, Piece(good, 10, 12), "WAL entry t/0@10").num_rows == 2
