"""Immutable Parquet segments (DESIGN.md §4): encoding (format.py), the footer and row-group pruning (footer.py),
verified decoding (decode.py), reading from the object store (reader.py) and the read path's caches
(cache.py).
"""
