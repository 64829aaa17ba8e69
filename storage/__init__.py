"""Storage core: record-batch codec, WAL, segments, object and metadata stores, partition IO.

Imports nothing from sql/ or engine/ (docs/DESIGN.md §1).
"""
