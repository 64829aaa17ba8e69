"""The error a schema text raises when it cannot be parsed (the registry answers 42201 with it)."""

from __future__ import annotations

from streamhouse.storage.errors import InvalidInputError


class InvalidSchemaError(InvalidInputError):
    """A schema (JSON Schema or .proto text, or one of its references) is not valid: `schema_type`
    names the kind ("JSON" or "PROTOBUF"), `where` the place (a JSON pointer, a line:column or a
    message/field path) and `reason` what is wrong. Nothing was registered."""

    def __init__(self, schema_type: str, where: str, reason: str) -> None:
        super().__init__(f"invalid {schema_type} schema at {where}: {reason}")
        self.schema_type = schema_type
        self.where = where
        self.reason = reason
