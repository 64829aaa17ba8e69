"""What the metadata store keeps for the schema registry (issue 13), as values. Pure and IO-free.

A schema is its type, its normalised text and its references; the fingerprint of the three is
what makes ids global (docs/DESIGN.md §5: the store decides, in one transaction, whether a schema
is new). Normalising the text (Avro canonical form…) is the registry front end's job
(engine/registry/); the store only compares fingerprints.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

SCHEMA_TYPES = ("AVRO", "JSON", "PROTOBUF")
COMPATIBILITY_LEVELS = (
    "NONE",
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
)
MODES = ("READWRITE", "READONLY")
DEFAULT_COMPATIBILITY = "BACKWARD"  # Confluent's default
DEFAULT_MODE = "READWRITE"
# registry_settings kinds; the global row has subject ''.
COMPATIBILITY = "compatibility"
MODE = "mode"
GLOBAL = ""


@dataclass(frozen=True, slots=True)
class Reference:
    """`name` is how the schema text refers to it; (subject, version) the version it is."""

    name: str
    subject: str
    version: int


@dataclass(frozen=True, slots=True)
class SchemaText:
    """A schema as registered: type, normalised text, references (in the order given)."""

    schema_type: str
    text: str
    references: tuple[Reference, ...] = ()

    @property
    def fingerprint(self) -> str:
        """SHA-256 over type, text and references: equal fingerprints = one schema id."""
        refs = [[r.name, r.subject, r.version] for r in self.references]
        blob = json.dumps([self.schema_type, self.text, refs], separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredSchema:
    schema_id: int
    schema: SchemaText


@dataclass(frozen=True, slots=True)
class SubjectVersion:
    subject: str
    version: int
    schema_id: int
    deleted: bool = False
