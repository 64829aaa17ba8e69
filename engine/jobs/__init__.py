"""Continuous queries (docs/DESIGN.md §8): jobs that read topics, keep window state and write their
results into topics exactly once, leased like partitions."""
