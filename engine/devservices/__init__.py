"""Real services on loopback for tests, benchmarks and notebooks (DESIGN §9)."""
