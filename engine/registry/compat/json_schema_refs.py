"""$ref resolution for JSON Schema: within the document, by JSON pointer or anchor, and into
the named references (schemas importing other schemas, as the registry's references carry them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from streamhouse.registry.compat.errors import InvalidSchemaError

_REF_HOPS = 32
# Keywords next to a $ref that do not constrain values: they never need merging into its target.
_INERT = frozenset(
    {"definitions", "$defs", "$schema", "$id", "$comment", "title", "description", "examples", "default"}
)


@dataclass(frozen=True)
class Doc:
    """The document a subschema lives in: its $refs resolve against it (name "#": the schema
    itself, otherwise a reference's name) or against the shared references."""

    name: str
    root: Any
    references: Mapping[str, Any]


@dataclass(frozen=True)
class Node:
    schema: Any
    doc: Doc


def _document(base: str, doc: Doc, where: str) -> Doc:
    if base in ("", doc.name):
        return doc
    if base in doc.references:
        return Doc(base, doc.references[base], doc.references)
    # A reference may be named by its "$id" (whole, or its last path segment) rather than by name.
    for name, root in doc.references.items():
        ident = root.get("$id") if isinstance(root, dict) else None
        if isinstance(ident, str) and (ident == base or ident.rsplit("/", 1)[-1] == base):
            return Doc(name, root, doc.references)
    raise InvalidSchemaError("JSON", where, f"$ref {base!r} names no reference (known: {sorted(doc.references)})")


def _anchor(root: Any, name: str) -> Any:
    stack = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("$anchor") == name or item.get("$id") == f"#{name}":
                return item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def resolve(ref: str, doc: Doc, where: str) -> Node:
    """The schema a $ref points at (JSON pointer, anchor, or a reference by name/$id)."""
    base, _, frag = ref.partition("#")
    target_doc = _document(base, doc, where)
    target = target_doc.root
    if frag.startswith("/"):
        for raw in frag.split("/")[1:]:
            part = unquote(raw).replace("~1", "/").replace("~0", "~")
            if isinstance(target, dict) and part in target:
                target = target[part]
            elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
                target = target[int(part)]
            else:
                raise InvalidSchemaError("JSON", where, f"$ref {ref!r} points at nothing (no {part!r})")
    elif frag:
        target = _anchor(target_doc.root, frag)
        if target is None:
            raise InvalidSchemaError("JSON", where, f"$ref {ref!r}: no $anchor {frag!r}")
    if not isinstance(target, dict | bool):
        raise InvalidSchemaError("JSON", where, f"$ref {ref!r} points at a {type(target).__name__}, not a schema")
    return Node(target, target_doc)


def deref(node: Node, where: str = "#") -> Node:
    """Follow a $ref chain; keywords next to a $ref in the same document are merged in (2019-09+
    semantics, harmless for annotations in draft 7). A chain that never reaches a schema is invalid."""
    seen: list[str] = []
    while isinstance(node.schema, dict) and isinstance(node.schema.get("$ref"), str):
        ref = node.schema["$ref"]
        if len(seen) >= _REF_HOPS or ref in seen:
            raise InvalidSchemaError("JSON", where, f"$ref cycle without a schema: {' -> '.join([*seen, ref])}")
        seen.append(ref)
        target = resolve(ref, node.doc, where)
        siblings = {k: v for k, v in node.schema.items() if k != "$ref" and k not in _INERT}
        if siblings and target.doc == node.doc and isinstance(target.schema, dict):
            target = Node({**target.schema, **siblings}, target.doc)
        node = target
    return node
