"""Records as they move: the record schema and batch builders (schema.py), and the framed Arrow IPC codec of the
wire and the WAL (codec.py).
"""

from streamhouse.storage.records.schema import RECORD_SCHEMA, Record, batch_to_records, make_batch

__all__ = ["RECORD_SCHEMA", "Record", "batch_to_records", "make_batch"]
