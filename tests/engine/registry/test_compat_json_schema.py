"""JSON Schema compatibility: a case table run in both directions, plus parsing and references.

Each case is (name, old, new, BACKWARD codes, FORWARD codes): BACKWARD is check(new, old) (a
reader on `new` reads data written with `old`), FORWARD is check(old, new). Codes are the
Confluent difference names the messages start with; an empty set means compatible.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from streamhouse.registry.compat import InvalidSchemaError
from streamhouse.registry.compat.json_schema import check, parse
from streamhouse.storage.errors import StreamHouseError

S: dict[str, Any] = {"type": "string"}
INT: dict[str, Any] = {"type": "integer"}
N: dict[str, Any] = {"type": "number"}


def obj(props: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props, **extra}


def recursive(leaf: dict[str, Any]) -> dict[str, Any]:
    node = obj({"value": leaf, "next": {"$ref": "#/definitions/node"}})
    return {"$ref": "#/definitions/node", "definitions": {"node": node}}


CASES: list[tuple[str, Any, Any, set[str], set[str]]] = [
    ("identical", obj({"a": S}), obj({"a": S}), set(), set()),
    ("annotations only", obj({"a": S}, title="x"), obj({"a": {**S, "description": "d"}}, title="y"), set(), set()),
    ("string to integer", S, INT, {"TYPE_CHANGED"}, {"TYPE_CHANGED"}),
    ("integer widened to number", INT, N, set(), {"TYPE_NARROWED"}),
    ("string becomes nullable", S, {"type": ["string", "null"]}, set(), {"TYPE_NARROWED"}),
    ("type added to unconstrained", {}, S, {"TYPE_NARROWED"}, set()),
    ("true becomes false", True, False, {"SCHEMA_FALSE"}, set()),
    (
        "property added to open model",
        obj({"a": S}),
        obj({"a": S, "b": S}),
        {"PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL", "TYPE_NARROWED"},
        set(),
    ),
    (
        "property added to closed model",
        obj({"a": S}, additionalProperties=False),
        obj({"a": S, "b": S}, additionalProperties=False),
        set(),
        {"PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL"},
    ),
    ("property with empty schema added to open model", obj({"a": S}), obj({"a": S, "b": {}}), set(), set()),
    (
        "property removed from open model",
        obj({"a": S, "b": INT}),
        obj({"a": S}),
        set(),
        {"PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL", "TYPE_NARROWED"},
    ),
    (
        "property covered by partially open model added",
        obj({"a": S}, additionalProperties=S),
        obj({"a": S, "b": S}, additionalProperties=S),
        set(),
        set(),
    ),
    (
        "property not covered by partially open model added",
        obj({"a": S}, additionalProperties=S),
        obj({"a": S, "c": INT}, additionalProperties=S),
        {"PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", "TYPE_CHANGED"},
        {"PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", "TYPE_CHANGED"},
    ),
    (
        "property covered by patternProperties added",
        obj({}, patternProperties={"^s_": S}, additionalProperties=False),
        obj({"s_name": S}, patternProperties={"^s_": S}, additionalProperties=False),
        set(),
        set(),
    ),
    (
        "patternProperties added to open model",
        obj({}),
        obj({}, patternProperties={"^x_": INT}),
        {"TYPE_NARROWED"},
        set(),
    ),
    (
        "content model closed",
        obj({"a": S}),
        obj({"a": S}, additionalProperties=False),
        {"ADDITIONAL_PROPERTIES_REMOVED"},
        set(),
    ),
    (
        "additionalProperties narrowed",
        obj({}, additionalProperties={"type": ["string", "integer"]}),
        obj({}, additionalProperties=S),
        {"ADDITIONAL_PROPERTIES_NARROWED", "TYPE_NARROWED"},
        set(),
    ),
    ("required added", obj({"a": S}), obj({"a": S}, required=["a"]), {"REQUIRED_ATTRIBUTE_ADDED"}, set()),
    ("required with default added", obj({"a": S}), obj({"a": {**S, "default": "x"}}, required=["a"]), set(), set()),
    ("required removed", obj({"a": S}, required=["a"]), obj({"a": S}), set(), {"REQUIRED_ATTRIBUTE_ADDED"}),
    (
        "nested property type change",
        obj({"a": obj({"b": S})}),
        obj({"a": obj({"b": INT})}),
        {"TYPE_CHANGED"},
        {"TYPE_CHANGED"},
    ),
    ("enum extended", {"enum": ["a", "b"]}, {"enum": ["a", "b", "c"]}, set(), {"ENUM_ARRAY_NARROWED"}),
    (
        "enum values all fit the new type",
        {"enum": ["a", 1]},
        {"type": ["string", "integer"], "enum": ["a", 1]},
        set(),
        set(),
    ),
    (
        "enum value outside the new type",
        {"enum": ["a", 1]},
        {"type": "string", "enum": ["a", 1]},
        {"TYPE_NARROWED"},
        set(),
    ),
    ("enum added", S, {**S, "enum": ["a"]}, {"ENUM_ARRAY_NARROWED"}, set()),
    ("const widened to enum", {"const": 1}, {"enum": [1, 2]}, set(), {"ENUM_ARRAY_NARROWED"}),
    ("maxLength raised", {**S, "maxLength": 10}, {**S, "maxLength": 20}, set(), {"MAX_LENGTH_DECREASED"}),
    ("minLength added", S, {**S, "minLength": 1}, {"MIN_LENGTH_ADDED"}, set()),
    ("pattern added", S, {**S, "pattern": "^a"}, {"PATTERN_ADDED"}, set()),
    ("pattern changed", {**S, "pattern": "^a"}, {**S, "pattern": "^b"}, {"PATTERN_CHANGED"}, {"PATTERN_CHANGED"}),
    ("minimum raised", {**N, "minimum": 0}, {**N, "minimum": 5}, {"MINIMUM_INCREASED"}, set()),
    ("maximum added", N, {**N, "maximum": 5}, {"MAXIMUM_ADDED"}, set()),
    ("minimum made exclusive", {**N, "minimum": 0}, {**N, "exclusiveMinimum": 0}, {"MINIMUM_INCREASED"}, set()),
    (
        "multipleOf loosened to a divisor",
        {**INT, "multipleOf": 4},
        {**INT, "multipleOf": 2},
        set(),
        {"MULTIPLE_OF_CHANGED"},
    ),
    ("multipleOf added", INT, {**INT, "multipleOf": 2}, {"MULTIPLE_OF_ADDED"}, set()),
    ("string bounds ignored for integers", INT, {**INT, "maxLength": 3}, set(), set()),
    ("array items widened", {"type": "array", "items": INT}, {"type": "array", "items": N}, set(), {"TYPE_NARROWED"}),
    ("minItems added", {"type": "array"}, {"type": "array", "minItems": 1}, {"MIN_ITEMS_ADDED"}, set()),
    (
        "maxItems lowered",
        {"type": "array", "maxItems": 5},
        {"type": "array", "maxItems": 3},
        {"MAX_ITEMS_DECREASED"},
        set(),
    ),
    ("uniqueItems added", {"type": "array"}, {"type": "array", "uniqueItems": True}, {"UNIQUE_ITEMS_ADDED"}, set()),
    ("contains added", {"type": "array"}, {"type": "array", "contains": S}, {"CONTAINS_ADDED"}, set()),
    (
        "tuple item added to open tuple",
        {"type": "array", "items": [S]},
        {"type": "array", "items": [S, INT]},
        {"ITEM_ADDED_TO_OPEN_CONTENT_MODEL", "TYPE_NARROWED"},
        set(),
    ),
    (
        "tuple item added to closed tuple",
        {"type": "array", "items": [S], "additionalItems": False},
        {"type": "array", "items": [S, INT], "additionalItems": False},
        set(),
        {"ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL"},
    ),
    (
        "prefixItems (2020-12) item type changed",
        {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "array", "prefixItems": [S]},
        {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "array", "prefixItems": [INT]},
        {"TYPE_CHANGED"},
        {"TYPE_CHANGED"},
    ),
    (
        "oneOf extended",
        {"oneOf": [S, INT]},
        {"oneOf": [S, INT, {"type": "null"}]},
        set(),
        {"SUM_TYPE_NARROWED", "TYPE_CHANGED"},
    ),
    ("type becomes a oneOf including it", S, {"oneOf": [S, INT]}, set(), {"TYPE_CHANGED"}),
    ("anyOf becomes oneOf", {"anyOf": [S, INT]}, {"oneOf": [S, INT]}, {"COMBINED_TYPE_CHANGED"}, set()),
    ("allOf gains a constraint", S, {"allOf": [S, {"minLength": 1}]}, {"MIN_LENGTH_ADDED"}, set()),
    (
        "allOf becomes a wider oneOf",
        {"allOf": [S, {"maxLength": 5}]},
        {"oneOf": [S, INT]},
        set(),
        {"TYPE_CHANGED", "MAX_LENGTH_ADDED"},
    ),
    ("not added", S, {**S, "not": {"enum": ["x"]}}, {"NOT_TYPE_NARROWED"}, set()),
    (
        "if/then added",
        obj({"a": S}),
        obj({"a": S}, **{"if": obj({"a": S}), "then": {"required": ["a"]}}),
        {"CONDITIONAL_CHANGED"},
        set(),
    ),
    (
        "dependentRequired added",
        obj({"a": S, "b": S}),
        obj({"a": S, "b": S}, dependencies={"a": ["b"]}),
        {"DEPENDENCY_ARRAY_EXTENDED"},
        set(),
    ),
    (
        "propertyNames limited",
        {"type": "object"},
        {"type": "object", "propertyNames": {"maxLength": 3}},
        {"MAX_LENGTH_ADDED"},
        set(),
    ),
    (
        "$ref target changed",
        {"$ref": "#/definitions/a", "definitions": {"a": S}},
        {"$ref": "#/definitions/a", "definitions": {"a": INT}},
        {"TYPE_CHANGED"},
        {"TYPE_CHANGED"},
    ),
    (
        "inline schema moved behind $ref",
        obj({"a": S}),
        obj({"a": {"$ref": "#/$defs/s"}}, **{"$defs": {"s": S}}),
        set(),
        set(),
    ),
    ("recursive schema widened", recursive(INT), recursive(N), set(), {"TYPE_NARROWED"}),
]


def codes(messages: list[str]) -> set[str]:
    return {m.split(" at ", 1)[0] for m in messages}


@pytest.mark.parametrize(("name", "old", "new", "backward", "forward"), CASES, ids=[c[0] for c in CASES])
def test_case_table(name: str, old: Any, new: Any, backward: set[str], forward: set[str]) -> None:
    assert codes(check(json.dumps(new), json.dumps(old))) == backward, "BACKWARD"
    assert codes(check(json.dumps(old), json.dumps(new))) == forward, "FORWARD"


def test_messages_name_the_path() -> None:
    messages = check(json.dumps(obj({"a": obj({"b": INT})})), json.dumps(obj({"a": obj({"b": S})})))
    assert messages == ["TYPE_CHANGED at #/properties/a/properties/b: type string became integer"]
    [added] = check(json.dumps(obj({"a": S}, required=["a"])), json.dumps(obj({"a": S})))
    assert added.startswith("REQUIRED_ATTRIBUTE_ADDED at #/required:") and "'a'" in added


def test_self_referencing_schema_terminates() -> None:
    # A schema whose only content is a reference to itself through a property, compared with
    # a differently shaped recursion: both recursions unroll into a bounded number of pairs.
    a = {"type": "object", "properties": {"n": {"$ref": "#"}}}
    b = {
        "$ref": "#/$defs/x",
        "$defs": {"x": {"type": "object", "properties": {"n": {"$ref": "#/$defs/y"}}}, "y": {"$ref": "#"}},
    }
    start = time.monotonic()
    assert check(json.dumps(a), json.dumps(b)) == []
    assert check(json.dumps(b), json.dumps(a)) == []
    assert time.monotonic() - start < 5


def test_deep_nesting_is_refused_not_recursed() -> None:
    deep_old: Any = S
    deep_new: Any = INT
    for _ in range(70):
        deep_old, deep_new = obj({"a": deep_old}), obj({"a": deep_new})
    assert codes(check(json.dumps(deep_new), json.dumps(deep_old))) == {"TOO_COMPLEX"}
    for _ in range(200):
        deep_old = obj({"a": deep_old})
    with pytest.raises(InvalidSchemaError, match="nested too deeply"):
        parse(json.dumps(deep_old))


def test_wide_unions_stay_within_the_step_budget() -> None:
    branches = [{"type": "object", "properties": {f"p{i}": {"oneOf": [S, INT, N]}}} for i in range(30)]
    start = time.monotonic()
    check(json.dumps({"oneOf": branches}), json.dumps({"anyOf": branches[::-1]}))
    assert time.monotonic() - start < 10


@pytest.mark.parametrize(
    ("text", "where", "reason"),
    [
        ('{"type": ', "schema line 1 column 10", "Expecting value"),
        ('{"type": "strin"}', "schema#/type", "is not valid"),
        ('{"minimum": "zero"}', "schema#/minimum", "is not of type 'number'"),
        ("[1, 2]", "schema", "a schema is an object or a boolean, not list"),
        ('{"$ref": "#/definitions/missing"}', "schema#", "points at nothing"),
        ('{"properties": {"a": {"$ref": "other.json"}}}', "schema#/properties/a", "names no reference"),
        ('{"$ref": "#/definitions/a", "definitions": {"a": {"$ref": "#/definitions/a"}}}', "schema#", "$ref cycle"),
        ("[" * 100_000, "schema", "nested too deeply"),
    ],
)
def test_invalid_schemas_say_what_and_where(text: str, where: str, reason: str) -> None:
    with pytest.raises(InvalidSchemaError) as info:
        parse(text)
    assert isinstance(info.value, StreamHouseError)
    assert info.value.schema_type == "JSON"
    assert info.value.where == where
    assert reason in info.value.reason


def test_invalid_old_schema_raises_too() -> None:
    with pytest.raises(InvalidSchemaError, match="line 1"):
        check(json.dumps(S), "{")


def test_enum_values_with_ref_keys_are_data() -> None:
    assert parse(json.dumps({"enum": [{"$ref": "not-a-reference"}]})).root["enum"]


ADDRESS_V1 = json.dumps(obj({"street": S, "zip": S}, additionalProperties=False))
ADDRESS_V2 = json.dumps(obj({"street": S, "zip": INT}, additionalProperties=False))


def test_references_resolve_by_name() -> None:
    person = json.dumps(obj({"home": {"$ref": "address.json"}}))
    assert check(person, person, {"address.json": ADDRESS_V1}) == []
    messages = check(person, person, {"address.json": ADDRESS_V2}, old_references={"address.json": ADDRESS_V1})
    assert messages == ["TYPE_CHANGED at #/properties/home/properties/zip: type string became integer"]


def test_references_resolve_by_id_and_pointer() -> None:
    address = json.dumps({"$id": "https://example.com/schemas/address.json", **obj({"zip": S}), "$defs": {"z": S}})
    person = json.dumps(obj({"zip": {"$ref": "address.json#/$defs/z"}}))
    schema = parse(person, {"addr": address})
    assert schema.references["addr"]["$id"].endswith("address.json")
    assert check(person, person, {"addr": address}) == []


def test_invalid_reference_is_named() -> None:
    with pytest.raises(InvalidSchemaError) as info:
        parse(json.dumps(obj({"a": {"$ref": "r.json"}})), {"r.json": '{"type": 5}'})
    assert info.value.where == "reference 'r.json'#/type"
