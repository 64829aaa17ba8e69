"""JSON Schema compatibility for objects and arrays: the content-model rules.

A name the old schema never declared is governed by its "cover": the property, a matching
patternProperties entry, or additionalProperties (absent/true: open, false: closed, a schema:
partially open). A property added under an open old model must accept anything (old data may hold
any value there); under a closed old model it is free (old data never has it). A property removed
must still be accepted by the new model's cover. Array positions follow the same rules with
items/prefixItems/additionalItems. Subschemas go back through the caller's `diff`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeGuard

from streamhouse.registry.compat.json_schema_refs import Node, deref

Diff = Callable[[Node, Node, str, int], list[str]]


def num(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def code(keyword: str) -> str:
    """Confluent's difference name for a keyword: maxLength -> MAX_LENGTH."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", keyword).upper()


def at_most(kw: str, old: dict[str, Any], new: dict[str, Any], path: str) -> list[str]:
    """A lower-limit keyword (minLength, minItems, minProperties): the new may only lower it."""
    nv, ov = new.get(kw), old.get(kw)
    if not num(nv) or nv == 0:
        return []
    if not num(ov):
        return [f"{code(kw)}_ADDED at {path}: {kw} {nv} added"]
    return [f"{code(kw)}_INCREASED at {path}: {kw} raised from {ov} to {nv}"] if nv > ov else []


def at_least(kw: str, old: dict[str, Any], new: dict[str, Any], path: str) -> list[str]:
    """An upper-limit keyword (maxLength, maxItems, maxProperties): the new may only raise it."""
    nv, ov = new.get(kw), old.get(kw)
    if not num(nv):
        return []
    if not num(ov):
        return [f"{code(kw)}_ADDED at {path}: {kw} {nv} added"]
    return [f"{code(kw)}_DECREASED at {path}: {kw} lowered from {ov} to {nv}"] if nv < ov else []


def _dict(schema: dict[str, Any], kw: str) -> dict[str, Any]:
    value = schema.get(kw)
    return value if isinstance(value, dict) else {}


def cover(schema: dict[str, Any], name: str) -> tuple[Any, str]:
    """The subschema that governs property `name` in an object schema, and what provides it."""
    props = _dict(schema, "properties")
    if name in props:
        return props[name], "property"
    for pattern, sub in _dict(schema, "patternProperties").items():
        try:
            if re.search(pattern, name):  # unanchored, as ECMA regexes in JSON Schema are
                return sub, f"patternProperties {pattern!r}"
        except re.error:
            continue
    extra = schema.get("additionalProperties", True)
    if extra is True or extra == {}:
        return True, "open"
    return extra, "closed" if extra is False else "additionalProperties"


def compare_objects(diff: Diff, o: Node, n: Node, path: str, depth: int) -> list[str]:
    old, new = o.schema, n.schema
    out: list[str] = []
    old_props, new_props = _dict(old, "properties"), _dict(new, "properties")
    for name, sub in old_props.items():
        p = f"{path}/properties/{name}"
        covering, how = cover(new, name)
        if covering is False:
            out.append(f"PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL at {p}: removed, and the new schema is closed")
            continue
        issues = diff(Node(sub, o.doc), Node(covering, n.doc), p, depth)
        if issues and name not in new_props:
            kind = "PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
            out.append(f"{kind} at {p}: the new {how} rejects its values")
        out += issues
    for name, sub in new_props.items():
        if name in old_props:
            continue
        covering, how = cover(old, name)
        if covering is False:
            continue  # a closed old model: old data never holds this name
        p = f"{path}/properties/{name}"
        issues = diff(Node(covering, o.doc), Node(sub, n.doc), p, depth)
        if issues and how == "open":
            out.append(f"PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL at {p}: old data may hold any value under {name!r}")
        elif issues:
            kind = "PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
            out.append(f"{kind} at {p}: the old {how} allowed other values")
        out += issues
    old_extra, new_extra = old.get("additionalProperties", True), new.get("additionalProperties", True)
    old_patterns, new_patterns = _dict(old, "patternProperties"), _dict(new, "patternProperties")
    for pattern, sub in new_patterns.items():
        before = old_patterns.get(pattern, old_extra)
        out += diff(Node(before, o.doc), Node(sub, n.doc), f"{path}/patternProperties/{pattern}", depth)
    for pattern, sub in old_patterns.items():
        if pattern not in new_patterns:
            out += diff(Node(sub, o.doc), Node(new_extra, n.doc), f"{path}/patternProperties/{pattern}", depth)
    if old_extra is not False:
        p = f"{path}/additionalProperties"
        if new_extra is False:
            out.append(f"ADDITIONAL_PROPERTIES_REMOVED at {p}: the model was closed; old data may hold other names")
        else:
            issues = diff(Node(old_extra, o.doc), Node(new_extra, n.doc), p, depth)
            out += [f"ADDITIONAL_PROPERTIES_NARROWED at {p}: fewer extra values accepted", *issues] if issues else []
    old_required = set(old.get("required", [])) if isinstance(old.get("required"), list) else set()
    for name in new.get("required", []) if isinstance(new.get("required"), list) else []:
        if name in old_required:
            continue
        declared = deref(Node(new_props.get(name, True), n.doc), path).schema
        if isinstance(declared, dict) and "default" in declared:
            continue  # Confluent: REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED is compatible
        out.append(f"REQUIRED_ATTRIBUTE_ADDED at {path}/required: {name!r} is now required; old data may lack it")
    out += at_most("minProperties", old, new, path) + at_least("maxProperties", old, new, path)
    if "propertyNames" in new:
        p = f"{path}/propertyNames"
        out += diff(Node(old.get("propertyNames", True), o.doc), Node(new["propertyNames"], n.doc), p, depth)
    for kw in ("dependencies", "dependentRequired", "dependentSchemas"):
        old_deps = _dict(old, kw)
        for key, needs in _dict(new, kw).items():
            p = f"{path}/{kw}/{key}"
            before = old_deps.get(key)
            if isinstance(needs, list):
                added = [x for x in needs if not isinstance(before, list) or x not in before]
                if added:
                    out.append(f"DEPENDENCY_ARRAY_EXTENDED at {p}: {added} now required with {key!r}")
            elif before is None:
                out.append(f"DEPENDENCY_SCHEMA_ADDED at {p}: a schema now applies when {key!r} is present")
            else:
                out += diff(Node(before, o.doc), Node(needs, n.doc), p, depth)
    return out


def _positions(schema: dict[str, Any]) -> tuple[list[Any], Any, str]:
    """(tuple positions, schema for the rest, the keyword holding the rest) for any draft."""
    if isinstance(schema.get("prefixItems"), list):
        return list(schema["prefixItems"]), schema.get("items", True), "items"
    items = schema.get("items", True)
    if isinstance(items, list):
        return items, schema.get("additionalItems", True), "additionalItems"
    return [], items, "items"


def compare_arrays(diff: Diff, o: Node, n: Node, path: str, depth: int) -> list[str]:
    old, new = o.schema, n.schema
    out: list[str] = []
    old_pos, old_rest, _ = _positions(old)
    new_pos, new_rest, rest_kw = _positions(new)
    for i in range(max(len(old_pos), len(new_pos))):
        if i >= len(old_pos) and old_rest is False:
            break  # old arrays never reach this position
        before = old_pos[i] if i < len(old_pos) else old_rest
        after = new_pos[i] if i < len(new_pos) else new_rest
        p = f"{path}/items/{i}"
        if after is False:
            out.append(f"ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL at {p}: old arrays may have an item here")
            continue
        issues = diff(Node(before, o.doc), Node(after, n.doc), p, depth)
        if issues and i >= len(old_pos):
            out.append(f"ITEM_ADDED_TO_OPEN_CONTENT_MODEL at {p}: old arrays may hold any value here")
        elif issues and i >= len(new_pos):
            out.append(f"ITEM_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL at {p}: the new {rest_kw} rejects it")
        out += issues
    if old_rest is not False:
        p = f"{path}/{rest_kw}"
        if new_rest is False:
            out.append(f"ADDITIONAL_ITEMS_REMOVED at {p}: old arrays may be longer than the new schema allows")
        else:
            out += diff(Node(old_rest, o.doc), Node(new_rest, n.doc), p, depth)
    out += at_most("minItems", old, new, path) + at_least("maxItems", old, new, path)
    if new.get("uniqueItems") is True and old.get("uniqueItems") is not True:
        out.append(f"UNIQUE_ITEMS_ADDED at {path}: old arrays may repeat items")
    if "contains" in new:
        if "contains" not in old:
            out.append(f"CONTAINS_ADDED at {path}: old arrays need not contain such an item")
        else:
            out += diff(Node(old["contains"], o.doc), Node(new["contains"], n.doc), f"{path}/contains", depth)
    return out
