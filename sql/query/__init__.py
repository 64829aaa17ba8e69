"""The ad-hoc query path: topics as tables (catalog.py), predicate pruning (pruning.py), and running DataFusion
under the memory cap and time limit (limits.py, run.py).
"""
