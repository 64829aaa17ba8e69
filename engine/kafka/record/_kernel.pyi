# Any object with the buffer protocol (bytes, memoryview, numpy arrays); typing.Buffer is 3.12+.
Buffer = object

def decode_columns(
    data: Buffer,
    count: int,
    base_offset: int,
    base_timestamp: int,
    offsets: Buffer,
    timestamps: Buffer,
    key_offsets: Buffer,
    key_valid: Buffer,
    key_data: Buffer,
    val_offsets: Buffer,
    val_valid: Buffer,
    val_data: Buffer,
    hdr_pos: Buffer,
    hdr_count: Buffer,
) -> tuple[int, int, int, int, int]: ...
def decode_headers(
    data: Buffer,
    count: int,
    hdr_pos: Buffer,
    hdr_count: Buffer,
    hk_start: Buffer,
    hk_len: Buffer,
    hv_start: Buffer,
    hv_len: Buffer,
) -> None: ...
def gather(src: Buffer, start: Buffer, length: Buffer, out: Buffer) -> int: ...
def encode_records(
    out: Buffer,
    n: int,
    off_delta: Buffer,
    ts_delta: Buffer,
    key_offsets: Buffer,
    key_valid: Buffer,
    key_data: Buffer,
    val_offsets: Buffer,
    val_valid: Buffer,
    val_data: Buffer,
    hdr_lo: Buffer,
    hdr_hi: Buffer,
    hk_offsets: Buffer,
    hk_data: Buffer,
    hv_offsets: Buffer,
    hv_valid: Buffer,
    hv_data: Buffer,
) -> int: ...
