"""The agent's HTTP face: health and Prometheus metrics."""
