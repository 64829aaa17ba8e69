"""The stateless agent (docs/DESIGN.md §6): partitions it leads, produce/fetch logic, server loops."""
