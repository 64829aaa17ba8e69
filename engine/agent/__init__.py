"""The stateless agent (DESIGN §6): partitions it leads, produce/fetch logic, server loops."""
