"""One partition's IO: the write path WAL → buffer → segment → fenced commit (writer.py); the one read
path: what a read sees, committed segments then the leader's buffer (view.py), served as offset
ranges for fetch (reader.py) or as pruned scans for SQL and jobs (scan.py).
"""

from streamhouse.storage.partition.reader import PartitionReader, ReaderConfig
from streamhouse.storage.partition.view import PartitionView
from streamhouse.storage.partition.writer import PartitionWriter, WriterConfig

__all__ = ["PartitionReader", "PartitionView", "PartitionWriter", "ReaderConfig", "WriterConfig"]
