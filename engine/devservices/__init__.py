"""Real services on loopback for tests, benchmarks and notebooks (docs/DESIGN.md §9)."""
