"""Placeholder: a helper fills this with the PostgreSQL fixtures."""
