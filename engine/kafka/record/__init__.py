"""Kafka RecordBatch v2 ↔ Arrow record batches (storage/records/schema.py's schema).

`batch` parses and writes the 61-byte batch header, checks CRC32C and calls the C kernel
(`_kernel.c`) for the record section; `compression` holds the five Kafka codecs with a
bound on decompressed size.
"""
