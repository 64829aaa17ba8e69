"""The agent's network faces: gRPC services and the HTTP health/metrics endpoint."""
