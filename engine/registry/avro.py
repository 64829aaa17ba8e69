"""Avro schemas for the registry: parse (with references), normalise, and check compatibility
with the Apache `avro` package's own checker (`avro.compatibility`, the port of Java's
SchemaCompatibility that Confluent's registry uses), pure and IO-free.

Normalised text: Confluent stores an Avro schema as Avro's own serialisation of the parsed
schema (whitespace, `{"type": "string"}` vs `"string"` and key order do not matter; docs,
defaults and aliases do, since they change what a reader does), so the same schema written two
ways gets one id. A schema with references is kept as compact JSON instead: Avro's
serialiser would inline the referenced types, and the text must keep naming them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import avro.errors
import avro.name
import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from streamhouse.storage.schemas.errors import InvalidSchemaError

__all__ = ["check", "normalise", "parse"]


def _load(text: str, where: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidSchemaError(f"invalid Avro schema ({where}): not JSON: {exc}") from None
    except RecursionError:  # the JSON parser's stack, as the JSON Schema kind says it
        raise InvalidSchemaError(f"invalid Avro schema ({where}): nested too deeply") from None


def parse(text: str, references: Mapping[str, str] | None = None) -> avro.schema.Schema:
    """The parsed schema; `references` (name → schema text, dependencies first) are parsed into
    the same name space first, so the schema can use their named types. InvalidSchemaError."""
    names = avro.name.Names()
    where = "schema"
    try:
        for name, ref_text in (references or {}).items():
            where = f"reference {name!r}"
            avro.schema.make_avsc_object(_load(ref_text, where), names)
        where = "schema"
        return avro.schema.make_avsc_object(_load(text, where), names)
    except (avro.errors.AvroException, TypeError, ValueError, KeyError, AttributeError) as exc:
        raise InvalidSchemaError(f"invalid Avro schema ({where}): {exc}") from None
    except RecursionError:  # avro's parser recurses once per nested type
        raise InvalidSchemaError(f"invalid Avro schema ({where}): nested too deeply") from None


def normalise(text: str, references: Mapping[str, str] | None = None) -> str:
    schema = parse(text, references)
    if references:
        return json.dumps(_load(text, "schema"), separators=(",", ":"), ensure_ascii=False)
    try:
        return json.dumps(schema.to_json(), separators=(",", ":"), ensure_ascii=False)
    except RecursionError:  # parsed just under the limit, but serialising takes more frames per level
        raise InvalidSchemaError("invalid Avro schema (schema): nested too deeply") from None


def check(
    new: str,
    old: str,
    references: Mapping[str, str] | None = None,
    old_references: Mapping[str, str] | None = None,
) -> list[str]:
    """Why a reader using `new` cannot read data written with `old` (empty: it can), in the
    signature of the JSON Schema and Protobuf checkers (compat/)."""
    reader = parse(new, references)
    writer = parse(old, references if old_references is None else old_references)
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]  # untyped __init__ upstream
    result = checker.get_compatibility(reader, writer)
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    kinds = sorted({i.value for i in result.incompatibilities})
    places = ", ".join(sorted(result.locations))
    details = "; ".join(sorted(result.messages))
    return [f"{', '.join(kinds)} at {places}: {details}"]
