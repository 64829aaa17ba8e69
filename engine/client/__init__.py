"""The Python SDK: one client API over an embedded engine or a remote agent."""
