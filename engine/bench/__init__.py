"""`streamhouse bench …`: performance commands in the spirit of kafka-producer-perf-test."""
