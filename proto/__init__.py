"""gRPC .proto sources and generated code. Filled in by the agent issue."""
