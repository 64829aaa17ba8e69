"""Schema-registry values and the Confluent wire format, IO-free (issue 13): what the metadata
store keeps for the registry (`registry.py`), its errors (`errors.py`) and the framing of
serialised values (`wire.py`)."""
