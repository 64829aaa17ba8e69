"""Flink's window table-valued functions in ad-hoc queries: checking a call (calls.py, relations.py) and
rewriting it to DataFusion SQL (rewrite.py, datafusion_sql.py, panes.py)."""
