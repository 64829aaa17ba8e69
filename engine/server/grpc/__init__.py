"""The gRPC front end: servicers from protobuf onto the agent."""
