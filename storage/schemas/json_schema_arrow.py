"""A JSON Schema's object properties as Arrow types (issue 13: JSON Schema topics as typed
columns). IO-free.

JSON Schema → Arrow (a `type` list with "null" is the other type, nullable):
  string string · string + "format": "date-time" timestamp[ms] (ISO 8601 or epoch ms, as JSON
  topics read it) · string + "format": "date" date32 · integer int64 · number float64 ·
  boolean bool · object with `properties` struct (in declaration order) · object without
  `properties` whose `additionalProperties` is a schema map<string, that schema> (SQL MAP,
  read from a plain JSON object, storage/values/json_composite.py) · array with `items`
  list<items> · `$ref` to `#/definitions/…` or `#/$defs/…` resolved within the document.
Not mapped (the property is left out of the type; its value stays in `_value`): several
non-null types, `oneOf`/`anyOf`/`allOf`, `const`/`enum` without a `type`, free-form objects
(no `properties` and `additionalProperties` absent, true or unmappable), tuples (`items` as a
list / `prefixItems`), references to other documents, and recursion.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from streamhouse.storage.errors import InvalidInputError

_SCALARS: dict[str, pa.DataType] = {
    "string": pa.string(),
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
}
# Event time everywhere is naive epoch milliseconds (storage/values/types.py TIMESTAMP).
_FORMATS: dict[str, pa.DataType] = {"date-time": pa.timestamp("ms"), "date": pa.date32()}
_MAX_DEPTH = 32


def _resolve(node: Any, root: dict[str, Any], seen: tuple[str, ...]) -> tuple[Any, tuple[str, ...]]:
    while isinstance(node, dict) and isinstance(node.get("$ref"), str):
        ref = node["$ref"]
        if not ref.startswith("#/") or ref in seen:
            return None, seen  # another document, or recursion: not mapped
        target: Any = root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            target = target.get(part) if isinstance(target, dict) else None
        node, seen = target, (*seen, ref)
    return node, seen


def arrow_type(node: Any, root: dict[str, Any], seen: tuple[str, ...] = (), depth: int = 0) -> pa.DataType | None:
    """The Arrow type of one (sub)schema, None if it has none (see the module docstring)."""
    node, seen = _resolve(node, root, seen)
    if not isinstance(node, dict) or depth > _MAX_DEPTH:
        return None
    kind = node.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if len(kinds) == 1 else None
    if kind is None and isinstance(node.get("properties"), dict):
        kind = "object"
    if kind == "string" and node.get("format") in _FORMATS:
        return _FORMATS[str(node["format"])]
    if kind in _SCALARS:
        return _SCALARS[str(kind)]
    if kind == "array":
        items = node.get("items")
        element = arrow_type(items, root, seen, depth + 1) if isinstance(items, dict) else None
        return None if element is None else pa.list_(element)
    if kind == "object":
        extra = node.get("additionalProperties")
        if "properties" not in node and isinstance(extra, dict):
            # A map: any key, every value one schema (Flink's and DuckDB's MAP<STRING, V> from JSON).
            item = arrow_type(extra, root, seen, depth + 1)
            return None if item is None else pa.map_(pa.string(), item)
        fields = properties(node, root, seen, depth + 1)
        return pa.struct(fields) if fields else None
    return None


def properties(
    node: dict[str, Any], root: dict[str, Any], seen: tuple[str, ...] = (), depth: int = 0
) -> list[pa.Field[Any]]:
    """The mapped properties of an object schema, in declaration order."""
    props = node.get("properties")
    if not isinstance(props, dict):
        return []
    out = []
    for name, sub in props.items():
        typed = arrow_type(sub, root, seen, depth)
        if typed is not None:
            out.append(pa.field(str(name), typed))
    return out


def object_fields(schema_text: str) -> list[pa.Field[Any]]:
    """The top-level properties of a JSON Schema document (an object schema) as Arrow fields.
    InvalidInputError if the text is not JSON or the schema describes no object."""
    try:
        doc = json.loads(schema_text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"the JSON Schema is not JSON: {exc}") from None
    root, _ = _resolve(doc, doc, ())
    if not isinstance(root, dict) or (root.get("type", "object") != "object" and "properties" not in root):
        raise InvalidInputError("a JSON Schema topic needs an object schema (`type: object` with `properties`)")
    return properties(root, doc if isinstance(doc, dict) else {})
