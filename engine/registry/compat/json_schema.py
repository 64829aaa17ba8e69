"""JSON Schema parsing and BACKWARD compatibility (Confluent's JSON Schema rules).

`check(new, old)` asks whether a reader validating with `new` accepts every document that `old`
accepted: the new schema must describe a superset of the old one. Widening (a type added, a bound
loosened, an enum value added, a property added to a closed model) is compatible; narrowing is
not. Confluent's well-known consequences follow: adding a property to an *open* content model is
incompatible (old data may hold anything under that name) unless its schema accepts anything;
removing a property from a *closed* model is incompatible; a required property added is
incompatible unless it has a default (Confluent's REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED).
Each message starts with Confluent's difference name and the JSON pointer where it was found.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import jsonschema.exceptions
import jsonschema.validators

from streamhouse.registry.compat.errors import InvalidSchemaError
from streamhouse.registry.compat.json_schema_refs import Doc, Node, deref
from streamhouse.registry.compat.json_schema_rules import Comparison

__all__ = ["JsonSchema", "check", "parse"]

# Keys whose values are data, not subschemas: a "$ref" inside an enum value is not a reference.
_DATA_KEYS = frozenset({"enum", "const", "default", "examples"})


@dataclass(frozen=True)
class JsonSchema:
    """A parsed JSON Schema: the document and the referenced documents it may point into."""

    root: Any
    references: Mapping[str, Any] = field(default_factory=dict)

    def node(self) -> Node:
        return Node(self.root, Doc("#", self.root, self.references))


def _load(text: str, where: str) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidSchemaError("JSON", f"{where} line {exc.lineno} column {exc.colno}", exc.msg) from exc
    except RecursionError as exc:
        raise InvalidSchemaError("JSON", where, "nested too deeply") from exc
    if not isinstance(value, dict | bool):
        raise InvalidSchemaError("JSON", where, f"a schema is an object or a boolean, not {type(value).__name__}")
    return value


def _check_meta(value: Any, where: str) -> None:
    """Validate against the meta-schema its $schema names (draft 7, Confluent's default, if none)."""
    if isinstance(value, bool):
        return
    cls = jsonschema.validators.validator_for(value, default=jsonschema.Draft7Validator)
    try:
        cls.check_schema(value)
    except jsonschema.exceptions.SchemaError as exc:
        pointer = "".join(f"/{part}" for part in exc.path)
        raise InvalidSchemaError("JSON", f"{where}#{pointer}", exc.message) from exc
    except RecursionError as exc:
        raise InvalidSchemaError("JSON", where, "nested too deeply") from exc


def _refs_in(value: Any) -> Iterator[tuple[str, str]]:
    """Every "$ref" string in a schema with its JSON pointer, without recursion (iterative walk)."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, pointer = stack.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str):
                yield ref, pointer
            stack.extend((v, f"{pointer}/{k}") for k, v in item.items() if k not in _DATA_KEYS)
        elif isinstance(item, list):
            stack.extend((v, f"{pointer}/{i}") for i, v in enumerate(item))


def parse(text: str, references: Mapping[str, str] | None = None) -> JsonSchema:
    """Parse and validate a JSON Schema and its references (name -> schema text). Every $ref must
    resolve, within the document or into a reference; raises InvalidSchemaError saying where."""
    docs: dict[str, Any] = {}
    for name, ref_text in (references or {}).items():
        docs[name] = _load(ref_text, f"reference {name!r}")
        _check_meta(docs[name], f"reference {name!r}")
    root = _load(text, "schema")
    _check_meta(root, "schema")
    parsed = JsonSchema(root, docs)
    for name, doc_root in [("#", root), *docs.items()]:
        doc = Doc(name, doc_root, docs)
        for ref, pointer in _refs_in(doc_root):
            where = "schema" if name == "#" else f"reference {name!r}"
            deref(Node({"$ref": ref}, doc), f"{where}#{pointer}")
    return parsed


def check(
    new: str,
    old: str,
    references: Mapping[str, str] | None = None,
    old_references: Mapping[str, str] | None = None,
) -> list[str]:
    """Incompatibilities found when a reader using `new` reads data written with `old` (empty:
    compatible). `references` resolve the $refs of `new`, and of `old` unless `old_references`
    is given. Raises InvalidSchemaError if either schema is invalid."""
    new_schema = parse(new, references)
    old_schema = parse(old, references if old_references is None else old_references)
    return compare(new_schema, old_schema)


def compare(new: JsonSchema, old: JsonSchema) -> list[str]:
    """`check` on already parsed schemas."""
    return Comparison().diff(old.node(), new.node(), "#")
