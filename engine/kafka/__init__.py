"""Kafka wire-protocol front end (issue 12).

Bottom-up and IO-free: `protocol/` turns request/response frames into plain values and
back, `record/` turns RecordBatch v2 bytes into Arrow record batches and back. Neither
touches a socket, so both are tested byte-for-byte against real Kafka client libraries.
"""
