"""The agent's API below every side that speaks it: the values it returns (types.py), the Kafka-compatible
partitioner (partitioner.py), the value encoder (values.py) and HTML for notebooks (html.py). Imports no other
engine package.
"""
