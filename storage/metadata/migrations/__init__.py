"""Numbered schema migrations (NNNN_name.sql), applied by storage/metadata/migrate.py.

A package (not just a data folder) so setuptools discovers and ships it with its .sql files.
"""
