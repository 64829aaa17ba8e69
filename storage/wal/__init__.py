"""The write-ahead log (docs/DESIGN.md §3): the log (log.py) over its files on disk (files.py), its IO-free
entry framing (format.py) and what a new leader replays (recovery.py).
"""

from streamhouse.storage.wal.log import FsyncPolicy, WriteAheadLog

__all__ = ["FsyncPolicy", "WriteAheadLog"]
