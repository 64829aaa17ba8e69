"""The subset test behind JSON Schema compatibility: does the new schema accept all the old one did.

`Comparison.diff(old, new, path)` walks both schemas side by side and returns Confluent-style
difference messages for every narrowing. Combinators are decomposed first (an old union must fit
branch by branch, a new union needs one branch that fits, a new allOf needs every branch to fit),
then the keywords of the remaining schemas are compared by family (type, enum, numbers, strings,
objects, arrays). Recursion is bounded three ways: a pair of schemas already being compared is
assumed compatible (that is how recursive $ref types terminate), nesting stops at MAX_DEPTH and
the whole comparison at MAX_STEPS, both answering incompatible rather than guessing.
"""

from __future__ import annotations

import json
from fractions import Fraction
from typing import Any

from streamhouse.registry.compat.json_schema_objects import (
    at_least,
    at_most,
    code,
    compare_arrays,
    compare_objects,
    num,
)
from streamhouse.registry.compat.json_schema_refs import Node, deref

MAX_DEPTH = 64
MAX_STEPS = 20_000
_ALL_TYPES = frozenset({"null", "boolean", "object", "array", "number", "integer", "string"})


def _types(schema: dict[str, Any]) -> frozenset[str] | None:
    value = schema.get("type")
    if isinstance(value, str):
        return frozenset({value})
    if isinstance(value, list):
        return frozenset(v for v in value if isinstance(v, str))
    return None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _names(types: frozenset[str]) -> str:
    return "|".join(sorted(types))


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _enum(schema: dict[str, Any]) -> list[Any] | None:
    if "const" in schema:
        return [schema["const"]]
    value = schema.get("enum")
    return value if isinstance(value, list) else None


def _bound(schema: dict[str, Any], plain: str, exclusive: str) -> tuple[float, bool] | None:
    """The tighter of `minimum`/`exclusiveMinimum` (or the maximum pair) as (value, strict); the
    draft-4 boolean form makes the plain bound strict."""
    bounds: list[tuple[float, bool]] = []
    if num(schema.get(plain)):
        bounds.append((schema[plain], schema.get(exclusive) is True))
    if num(schema.get(exclusive)):
        bounds.append((schema[exclusive], True))
    if not bounds:
        return None
    if plain == "minimum":
        return max(bounds)
    return min(bounds, key=lambda b: (b[0], not b[1]))


def _show(bound: tuple[float, bool], lower: bool) -> str:
    op = (">" if bound[1] else ">=") if lower else ("<" if bound[1] else "<=")
    return f"{op} {bound[0]}"


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """The conjunction of two schemas of one document, as one schema (for an old allOf). Where a
    keyword collides the first is kept: the old side then looks wider, so the check only errs strict."""
    out = dict(a)
    for key, value in b.items():
        if key not in out:
            out[key] = value
        elif key == "required" and isinstance(value, list) and isinstance(out[key], list):
            out[key] = [*out[key], *(v for v in value if v not in out[key])]
        elif key == "properties" and isinstance(value, dict) and isinstance(out[key], dict):
            props = dict(out[key])
            for name, sub in value.items():
                props[name] = {"allOf": [props[name], sub]} if name in props else sub
            out[key] = props
        elif key == "type":
            ta, tb = _types(out), _types(b)
            if ta is not None and tb is not None:
                both = (ta & tb) | ({"integer"} if ("number" in ta and "integer" in tb) else set())
                both |= {"integer"} if ("integer" in ta and "number" in tb) else set()
                out["type"] = sorted(both)
    return out


class Comparison:
    """One old-versus-new walk; holds the pairs being compared and the step budget."""

    def __init__(self) -> None:
        self._active: set[tuple[int, int]] = set()
        self._steps = 0

    def diff(self, old: Node, new: Node, path: str, depth: int = 0) -> list[str]:
        # The raw schema objects are stable inside the parsed documents (and merged ones stay
        # alive while compared), so their ids name the pair for as long as it is active.
        key = (id(old.schema), id(new.schema))
        if key in self._active or old.schema is False or new.schema is True or new.schema == {}:
            return []  # already being compared (a recursion), or trivially accepted
        self._steps += 1
        if depth > MAX_DEPTH or self._steps > MAX_STEPS:
            return [f"TOO_COMPLEX at {path}: deeper than {MAX_DEPTH} levels or over {MAX_STEPS} comparisons"]
        old, new = deref(old, path), deref(new, path)
        resolved = (id(old.schema), id(new.schema))
        if resolved in self._active:
            return []
        pairs = {key, resolved} - self._active
        self._active |= pairs
        try:
            return self._diff(old, new, path, depth + 1)
        finally:
            self._active -= pairs

    def _diff(self, o: Node, n: Node, path: str, depth: int) -> list[str]:
        old, new = o.schema, n.schema
        if old is False or new is True or new == {}:
            return []
        if new is False:
            return [f"SCHEMA_FALSE at {path}: the new schema accepts nothing"]
        if old is True:
            old, o = {}, Node({}, o.doc)
        if isinstance(old.get("allOf"), list):
            merged = {k: v for k, v in old.items() if k != "allOf"}
            for branch in old["allOf"]:
                part = deref(Node(branch, o.doc), path)
                if part.schema is False:
                    return []
                if isinstance(part.schema, dict) and part.doc == o.doc:
                    merged = _merge(merged, part.schema)
            return self.diff(Node(merged, o.doc), n, path, depth)
        for kw in ("anyOf", "oneOf"):
            if isinstance(old.get(kw), list):
                rest = {k: v for k, v in old.items() if k != kw}
                out: list[str] = []
                for i, branch in enumerate(old[kw]):
                    part = deref(Node(branch, o.doc), path)
                    if isinstance(part.schema, dict) and part.doc == o.doc:
                        part = Node(_merge(rest, part.schema), o.doc)
                    out += self.diff(part, n, f"{path}/{kw}/{i}", depth)
                if kw == "anyOf" and "oneOf" in new and "anyOf" not in new:
                    why = "a value matching two branches now fails"
                    out.append(f"COMBINED_TYPE_CHANGED at {path}: anyOf became oneOf ({why})")
                return out
        if isinstance(new.get("allOf"), list):
            out = self.diff(o, Node({k: v for k, v in new.items() if k != "allOf"}, n.doc), path, depth)
            for i, branch in enumerate(new["allOf"]):
                out += self.diff(o, Node(branch, n.doc), f"{path}/allOf/{i}", depth)
            return out
        for kw in ("anyOf", "oneOf"):
            if isinstance(new.get(kw), list):
                out = self.diff(o, Node({k: v for k, v in new.items() if k != kw}, n.doc), path, depth)
                best: list[str] | None = None
                for i, branch in enumerate(new[kw]):
                    issues = self.diff(o, Node(branch, n.doc), f"{path}/{kw}/{i}", depth)
                    if not issues:
                        return out
                    best = issues if best is None or len(issues) < len(best) else best
                why = f"no branch of the new {kw} accepts the old values"
                return [*out, f"SUM_TYPE_NARROWED at {path}: {why}", *(best or [])]
        return self._keywords(o, n, old, new, path, depth)

    def _keywords(self, o: Node, n: Node, old: dict[str, Any], new: dict[str, Any], path: str, depth: int) -> list[str]:
        out: list[str] = []
        if "not" in new:
            if "not" not in old:
                out.append(f"NOT_TYPE_NARROWED at {path}: 'not' added")
            elif self.diff(Node(new["not"], n.doc), Node(old["not"], o.doc), f"{path}/not", depth):
                out.append(f"NOT_TYPE_NARROWED at {path}: 'not' now excludes values the old schema allowed")
        conditional = [_canon(s.get(k)) for s in (old, new) for k in ("if", "then", "else")]
        if any(k in new for k in ("if", "then", "else")) and conditional[:3] != conditional[3:]:
            out.append(f"CONDITIONAL_CHANGED at {path}: if/then/else added or changed")
        old_types, new_types = _types(old), _types(new)
        if old_types is None and _enum(old) is not None:
            old_types = frozenset(_json_type(v) for v in _enum(old) or [])  # old values are all known
        have = old_types if old_types is not None else _ALL_TYPES
        active = have
        if new_types is not None:
            widened = new_types | ({"integer"} if "number" in new_types else set())
            lost = have - widened
            if lost:
                was = _names(old_types) if old_types is not None else "unconstrained"
                narrowed = bool(have & widened) or ("number" in have and "integer" in new_types)
                kind = "TYPE_NARROWED" if narrowed else "TYPE_CHANGED"
                out.append(f"{kind} at {path}: type {was} became {_names(new_types)}")
            active = have & widened
        new_enum, old_enum = _enum(new), _enum(old)
        if new_enum is not None:
            if old_enum is None:
                out.append(f"ENUM_ARRAY_NARROWED at {path}: enum/const added ({_canon(new_enum)})")
            else:
                allowed = {_canon(v) for v in new_enum}
                gone = [v for v in old_enum if _canon(v) not in allowed]
                if gone:
                    out.append(f"ENUM_ARRAY_NARROWED at {path}: values no longer allowed: {_canon(gone)}")
        if active & {"number", "integer"}:
            out += self._numbers(old, new, path)
        if "string" in active:
            out += at_most("minLength", old, new, path) + at_least("maxLength", old, new, path)
            if isinstance(new.get("pattern"), str) and new.get("pattern") != old.get("pattern"):
                change = "ADDED" if "pattern" not in old else "CHANGED"
                out.append(f"PATTERN_{change} at {path}: pattern {old.get('pattern')!r} became {new['pattern']!r}")
        if "object" in active:
            out += compare_objects(self.diff, o, n, path, depth)
        if "array" in active:
            out += compare_arrays(self.diff, o, n, path, depth)
        return out

    @staticmethod
    def _numbers(old: dict[str, Any], new: dict[str, Any], path: str) -> list[str]:
        out: list[str] = []
        for plain, exclusive, lower in (("minimum", "exclusiveMinimum", True), ("maximum", "exclusiveMaximum", False)):
            nb, ob = _bound(new, plain, exclusive), _bound(old, plain, exclusive)
            if nb is None:
                continue
            if ob is None:
                out.append(f"{code(plain)}_ADDED at {path}: bound {_show(nb, lower)} added")
                continue
            looser = (nb[0] < ob[0] if lower else nb[0] > ob[0]) or (nb[0] == ob[0] and (ob[1] or not nb[1]))
            if not looser:
                change = "INCREASED" if lower else "DECREASED"
                out.append(f"{code(plain)}_{change} at {path}: bound {_show(ob, lower)} became {_show(nb, lower)}")
        nm, om = new.get("multipleOf"), old.get("multipleOf")
        if num(nm):
            if not num(om):
                out.append(f"MULTIPLE_OF_ADDED at {path}: multipleOf {nm} added")
            elif (Fraction(str(om)) / Fraction(str(nm))).denominator != 1:
                out.append(f"MULTIPLE_OF_CHANGED at {path}: multipleOf {om} became {nm} (not a divisor)")
        return out
