"""Benchmark data: the Nexmark generator (nexmark.py) and the Nexmark queries as SQL (nexmark_queries.py)."""
