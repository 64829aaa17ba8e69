"""Placeholder: a helper fills this with the SeaweedFS fixtures."""
