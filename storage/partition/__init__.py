"""One partition's IO: the write path WAL → buffer → segment → fenced commit (writer.py), serving offset ranges
(reader.py) and pruned scans for SQL (scan.py).
"""

from streamhouse.storage.partition.reader import PartitionReader, ReaderConfig
from streamhouse.storage.partition.writer import PartitionWriter, WriterConfig

__all__ = ["PartitionReader", "PartitionWriter", "ReaderConfig", "WriterConfig"]
