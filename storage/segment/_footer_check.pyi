"""The segment footer shape check (_footer_check.c, whose header says why and what)."""

def problem(thrift: bytes | bytearray | memoryview, /) -> str | None:
    """What is wrong with a serialized Parquet FileMetaData (the footer without its trailer), or None."""
