"""The write-ahead log (DESIGN.md §3): the log on disk (log.py), its IO-free entry framing (format.py) and what a
new leader replays (recovery.py).
"""

from streamhouse.storage.wal.log import FsyncPolicy, WriteAheadLog

__all__ = ["FsyncPolicy", "WriteAheadLog"]
