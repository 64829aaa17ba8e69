"""Storage core: record-batch codec, WAL, segments, object and metadata stores, partition IO.

Imports nothing from sql/ or engine/ (DESIGN §1).
"""
