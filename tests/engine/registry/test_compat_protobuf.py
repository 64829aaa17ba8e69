"""Protobuf compatibility: a case table run in both directions, plus parsing and references.

Each case is (name, old, new, BACKWARD codes, FORWARD codes): BACKWARD is check(new, old) (a
reader compiled from `new` decodes bytes written with `old`), FORWARD is check(old, new). Codes
are the difference names the messages start with; an empty set means compatible.
"""

from __future__ import annotations

import pytest

from streamhouse.registry.compat import InvalidSchemaError
from streamhouse.registry.compat.protobuf import check, normalise, parse
from streamhouse.storage.errors import StreamHouseError


def p3(body: str, package: str = "shop") -> str:
    head = f"package {package};\n" if package else ""
    return f'syntax = "proto3";\n{head}{body}'


def p2(body: str) -> str:
    return f'syntax = "proto2";\npackage shop;\n{body}'


def one(field: str) -> str:
    return p3(f"message Order {{ {field} }}")


TYPES = "message A { string x = 1; } message B { string x = 1; } enum Color { RED = 0; GREEN = 1; }"


def typed(field: str) -> str:
    return p3(f"{TYPES} message Order {{ {field} }}")


CASES: list[tuple[str, str, str, set[str], set[str]]] = [
    ("identical", one("string id = 1;"), one("string id = 1;"), set(), set()),
    ("field added", one("string id = 1;"), one("string id = 1; int64 qty = 2;"), set(), set()),
    ("field renamed, same number", one("string id = 1;"), one("string order_id = 1;"), set(), set()),
    ("int32 to int64", one("int32 n = 1;"), one("int64 n = 1;"), set(), set()),
    ("uint32 to bool (varint group)", one("uint32 n = 1;"), one("bool n = 1;"), set(), set()),
    ("sint32 to sint64", one("sint32 n = 1;"), one("sint64 n = 1;"), set(), set()),
    ("string to bytes", one("string s = 1;"), one("bytes s = 1;"), set(), set()),
    ("fixed32 to sfixed32", one("fixed32 n = 1;"), one("sfixed32 n = 1;"), set(), set()),
    ("fixed64 to sfixed64", one("fixed64 n = 1;"), one("sfixed64 n = 1;"), set(), set()),
    (
        "uint64 to sint64 (zigzag)",
        one("uint64 n = 1;"),
        one("sint64 n = 1;"),
        {"FIELD_SCALAR_KIND_CHANGED"},
        {"FIELD_SCALAR_KIND_CHANGED"},
    ),
    (
        "fixed32 to fixed64",
        one("fixed32 n = 1;"),
        one("fixed64 n = 1;"),
        {"FIELD_SCALAR_KIND_CHANGED"},
        {"FIELD_SCALAR_KIND_CHANGED"},
    ),
    (
        "float to double",
        one("float n = 1;"),
        one("double n = 1;"),
        {"FIELD_SCALAR_KIND_CHANGED"},
        {"FIELD_SCALAR_KIND_CHANGED"},
    ),
    (
        "int32 to string",
        one("int32 n = 1;"),
        one("string n = 1;"),
        {"FIELD_SCALAR_KIND_CHANGED"},
        {"FIELD_SCALAR_KIND_CHANGED"},
    ),
    (
        "number reused with another type",
        one("string id = 1; string note = 2;"),
        one("string id = 1; int32 count = 2;"),
        {"FIELD_SCALAR_KIND_CHANGED"},
        {"FIELD_SCALAR_KIND_CHANGED"},
    ),
    ("scalar to message", typed("string a = 1;"), typed("A a = 1;"), {"FIELD_KIND_CHANGED"}, {"FIELD_KIND_CHANGED"}),
    (
        "message type changed",
        typed("A a = 1;"),
        typed("B a = 1;"),
        {"FIELD_NAMED_TYPE_CHANGED"},
        {"FIELD_NAMED_TYPE_CHANGED"},
    ),
    ("enum to int32", typed("Color c = 1;"), typed("int32 c = 1;"), {"FIELD_KIND_CHANGED"}, {"FIELD_KIND_CHANGED"}),
    ("enum to message", typed("Color c = 1;"), typed("A c = 1;"), {"FIELD_KIND_CHANGED"}, {"FIELD_KIND_CHANGED"}),
    ("relative and qualified names", typed("A a = 1;"), typed(".shop.A a = 1;"), set(), set()),
    ("field removed", one("string id = 1; int64 qty = 2;"), one("string id = 1;"), set(), set()),
    (
        "field removed and reserved",
        one("string id = 1; int64 qty = 2;"),
        one('string id = 1; reserved 2; reserved "qty";'),
        set(),
        set(),
    ),
    (
        "field added on a number the old reserved",
        one("string id = 1; reserved 2;"),
        one("string id = 1; int32 n = 2;"),
        set(),
        set(),
    ),
    ("message removed", p3("message A {} message B {}"), p3("message A {}"), {"MESSAGE_REMOVED"}, set()),
    (
        "message renamed",
        p3("message A { int32 x = 1; }"),
        p3("message Z { int32 x = 1; }"),
        {"MESSAGE_REMOVED"},
        {"MESSAGE_REMOVED"},
    ),
    ("messages reordered", p3("message A {} message B {}"), p3("message B {} message A {}"), set(), set()),
    (
        "nested message removed",
        p3("message Outer { message Inner { int32 x = 1; } }"),
        p3("message Outer { }"),
        {"MESSAGE_REMOVED"},
        set(),
    ),
    (
        "nested message field changed",
        p3("message Outer { message Inner { int32 x = 1; } Inner i = 1; }"),
        p3("message Outer { message Inner { string x = 1; } Inner i = 1; }"),
        {"FIELD_SCALAR_KIND_CHANGED"},
        {"FIELD_SCALAR_KIND_CHANGED"},
    ),
    (
        "package changed",
        p3("message A {}", "shop"),
        p3("message A {}", "store"),
        {"PACKAGE_CHANGED"},
        {"PACKAGE_CHANGED"},
    ),
    (
        "syntax proto2 to proto3",
        p2("message A { optional int32 x = 1; }"),
        p3("message A { int32 x = 1; }"),
        set(),
        set(),
    ),
    (
        "required field added",
        p2("message A { optional int32 x = 1; }"),
        p2("message A { optional int32 x = 1; required int32 y = 2; }"),
        {"REQUIRED_FIELD_ADDED"},
        {"REQUIRED_FIELD_REMOVED"},
    ),
    (
        "optional made required",
        p2("message A { optional int32 x = 1; }"),
        p2("message A { required int32 x = 1; }"),
        {"REQUIRED_FIELD_ADDED"},
        {"REQUIRED_FIELD_REMOVED"},
    ),
    (
        "required field removed",
        p2("message A { required int32 x = 1; }"),
        p2("message A { }"),
        {"REQUIRED_FIELD_REMOVED"},
        {"REQUIRED_FIELD_ADDED"},
    ),
    ("enum value added", p3("enum E { A = 0; }"), p3("enum E { A = 0; B = 1; }"), set(), set()),
    ("enum value removed", p3("enum E { A = 0; B = 1; }"), p3("enum E { A = 0; }"), set(), set()),
    ("enum value renamed", p3("enum E { A = 0; B = 1; }"), p3("enum E { A = 0; C = 1; }"), set(), set()),
    ("unused enum removed", p3("enum E { A = 0; } message M {}"), p3("message M {}"), set(), set()),
    (
        "oneof field added",
        one("oneof pay { string card = 1; }"),
        one("oneof pay { string card = 1; string iban = 2; }"),
        set(),
        {"ONEOF_FIELD_REMOVED"},
    ),
    (
        "oneof field removed",
        one("oneof pay { string card = 1; string iban = 2; }"),
        one("oneof pay { string card = 1; }"),
        {"ONEOF_FIELD_REMOVED"},
        set(),
    ),
    ("one field moved into a new oneof", one("string card = 1;"), one("oneof pay { string card = 1; }"), set(), set()),
    (
        "two fields moved into a new oneof",
        one("string card = 1; string iban = 2;"),
        one("oneof pay { string card = 1; string iban = 2; }"),
        {"MULTIPLE_FIELDS_MOVED_TO_ONEOF"},
        set(),
    ),
    (
        "field moved into an existing oneof",
        one("oneof pay { string card = 1; } string iban = 2;"),
        one("oneof pay { string card = 1; string iban = 2; }"),
        {"FIELD_MOVED_TO_EXISTING_ONEOF"},
        set(),
    ),
    (
        "oneof renamed",
        one("oneof pay { string a = 1; string b = 2; }"),
        one("oneof means { string a = 1; string b = 2; }"),
        set(),
        set(),
    ),
    ("map value int32 to int64", one("map<string, int32> m = 1;"), one("map<string, int64> m = 1;"), set(), set()),
    (
        "map value int32 to string",
        one("map<string, int32> m = 1;"),
        one("map<string, string> m = 1;"),
        {"FIELD_SCALAR_KIND_CHANGED"},
        {"FIELD_SCALAR_KIND_CHANGED"},
    ),
    (
        "map key string to int32",
        one("map<string, int32> m = 1;"),
        one("map<int32, int32> m = 1;"),
        {"FIELD_SCALAR_KIND_CHANGED"},
        {"FIELD_SCALAR_KIND_CHANGED"},
    ),
    (
        "map value message changed",
        typed("map<string, A> m = 1;"),
        typed("map<string, B> m = 1;"),
        {"FIELD_NAMED_TYPE_CHANGED"},
        {"FIELD_NAMED_TYPE_CHANGED"},
    ),
    (
        "map to repeated message",
        typed("map<string, A> m = 1;"),
        typed("repeated A m = 1;"),
        {"FIELD_KIND_CHANGED"},
        {"FIELD_KIND_CHANGED"},
    ),
    (
        "repeated int32 to singular (packed)",
        one("repeated int32 n = 1;"),
        one("int32 n = 1;"),
        {"FIELD_CARDINALITY_CHANGED"},
        {"FIELD_CARDINALITY_CHANGED"},
    ),
    ("repeated string to singular", one("repeated string s = 1;"), one("string s = 1;"), set(), set()),
    (
        "group to message (proto2)",
        p2("message A { optional group G = 1 { optional int32 x = 2; } }"),
        p2("message A { message G { optional int32 x = 2; } optional G g = 1; }"),
        {"FIELD_KIND_CHANGED"},
        {"FIELD_KIND_CHANGED"},
    ),
    (
        "well-known type changed",
        p3('import "google/protobuf/timestamp.proto"; message A { google.protobuf.Timestamp t = 1; }'),
        p3('import "google/protobuf/duration.proto"; message A { google.protobuf.Duration t = 1; }'),
        {"FIELD_NAMED_TYPE_CHANGED"},
        {"FIELD_NAMED_TYPE_CHANGED"},
    ),
]


def codes(messages: list[str]) -> set[str]:
    return {m.split(" at ", 1)[0] for m in messages}


@pytest.mark.parametrize(("name", "old", "new", "backward", "forward"), CASES, ids=[c[0] for c in CASES])
def test_case_table(name: str, old: str, new: str, backward: set[str], forward: set[str]) -> None:
    assert codes(check(new, old)) == backward, "BACKWARD"
    assert codes(check(old, new)) == forward, "FORWARD"


def test_messages_name_message_field_and_number() -> None:
    assert check(one("string n = 7;"), one("int32 n = 7;")) == [
        "FIELD_SCALAR_KIND_CHANGED at Order.n (field 7): int32 became string (not wire-compatible)"
    ]
    assert check(p3("message A {}"), p3("message A {} message Gone {}")) == [
        "MESSAGE_REMOVED at Gone: the new schema has no message 'Gone'"
    ]


def test_require_reserved_is_bufs_stricter_field_removal() -> None:
    old = one("string id = 1; int64 qty = 2;")
    assert check(one("string id = 1;"), old) == []
    [message] = check(one("string id = 1;"), old, require_reserved=True)
    assert message.startswith("FIELD_REMOVED_WITHOUT_RESERVE at Order.qty (field 2)")
    assert check(one("string id = 1; reserved 2;"), old, require_reserved=True) == []


def test_message_indexes_follow_declaration_order() -> None:
    schema = parse(p3("message A { message B {} message C { message D {} } } message E {}"))
    assert schema.indexes == {
        "shop.A": (0,),
        "shop.A.B": (0, 0),
        "shop.A.C": (0, 1),
        "shop.A.C.D": (0, 1, 0),
        "shop.E": (1,),
    }
    assert schema.message_at(()) == "shop.A"  # Confluent's single 0 byte: the first message
    assert schema.message_at((0, 1, 0)) == "shop.A.C.D"
    with pytest.raises(KeyError):
        schema.message_at((5,))


def test_model_resolves_types_by_scope() -> None:
    schema = parse(p3("message Outer { message Inner {} Inner a = 1; Outer.Inner b = 2; .shop.Outer.Inner c = 3; }"))
    assert {f.type for f in schema.messages["shop.Outer"].fields} == {"shop.Outer.Inner"}
    assert schema.syntax == "proto3" and schema.package == "shop"
    assert parse("message A { optional int32 x = 1; }").syntax == "proto2"  # protoc's default


ADDRESS = 'syntax = "proto3"; package geo; message Address { string street = 1; }'


def test_references_supply_imported_types() -> None:
    person = p3('import "geo/address.proto"; message Person { geo.Address home = 1; }')
    schema = parse(person, {"geo/address.proto": ADDRESS})
    [field] = schema.messages["shop.Person"].fields
    assert (field.type, field.kind) == ("geo.Address", "message")
    moved = p3('import "geo/address.proto"; message Person { string home = 1; }')
    assert codes(check(moved, person, {"geo/address.proto": ADDRESS})) == {"FIELD_KIND_CHANGED"}


def test_import_without_reference_leaves_types_unresolved() -> None:
    schema = parse(p3('import "other.proto"; message P { other.Thing t = 1; }'))
    [field] = schema.messages["shop.P"].fields
    assert (field.type, field.kind) == ("other.Thing", "named")


@pytest.mark.parametrize(
    ("text", "where", "reason"),
    [
        (p3("message A { int32 = 1; }"), "line 3:19", "mismatched input '='"),
        (p3("message A { Missing m = 1; }"), "message shop.A field m", "unknown type 'Missing'"),
        (
            p3("message A { required int32 x = 1; }"),
            "message shop.A field x",
            "required fields are not allowed in proto3",
        ),
        (p3("message A { int32 x = 1; int32 y = 1; }"), "message shop.A field y = 1", "number already used by 'x'"),
        (p3("message A { int32 x = 1; string x = 2; }"), "message shop.A field x = 2", "field name used twice"),
        (p3("message A { int32 x = 0; }"), "message shop.A field x = 0", "field numbers are 1..536870911"),
        (p3("message A { int32 x = 19500; }"), "message shop.A field x = 19500", "not 19000..19999"),
        (p3("message A { reserved 2 to 5; int32 x = 3; }"), "message shop.A field x = 3", "reserved"),
        (p3('message A { reserved "x"; int32 x = 3; }'), "message shop.A field x = 3", "reserved"),
        (p3("enum E { A = 1; }"), "enum shop.E", "the first value of a proto3 enum must be 0"),
        (p3("enum E { A = 0; B = 0; }"), "enum shop.E", "two values share a number"),
        (p3("message A { map<float, int32> m = 1; }"), "line 3:17", "mismatched input 'float'"),
        (p3("message A { optional group G = 1 { } }"), "message shop.A field G", "groups are not allowed in proto3"),
        (p3("message A {} message A {}"), "shop.A", "type declared twice"),
        ('syntax = "proto4"; message A {}', "syntax", "unknown syntax 'proto4'"),
        ('syntax = "proto3"; package a; package b;', "package", "more than one package statement"),
    ],
)
def test_invalid_schemas_say_what_and_where(text: str, where: str, reason: str) -> None:
    with pytest.raises(InvalidSchemaError) as info:
        parse(text)
    assert isinstance(info.value, StreamHouseError)
    assert info.value.schema_type == "PROTOBUF"
    assert info.value.where == where
    assert reason in info.value.reason


def test_enum_aliases_are_allowed_when_declared() -> None:
    schema = parse(p3("enum E { option allow_alias = true; A = 0; B = 0; }"))
    assert schema.enums["shop.E"].values == (("A", 0), ("B", 0))


def test_invalid_reference_is_named() -> None:
    with pytest.raises(InvalidSchemaError) as info:
        parse(p3('import "bad.proto"; message A {}'), {"bad.proto": "message {"})
    assert info.value.where.startswith("reference 'bad.proto' line 1:")


def test_invalid_old_schema_raises_too() -> None:
    with pytest.raises(InvalidSchemaError, match="unknown type"):
        check(one("string id = 1;"), one("Nope id = 1;"))


def test_normalise_gives_two_spellings_one_text() -> None:
    spaced = '// order\nsyntax="proto3";package  shop;\n/* x */ message Order { int32   id=1; // id\n}'
    plain = 'syntax = "proto3"; package shop; message Order { int32 id = 1; }'
    assert (
        normalise(spaced)
        == normalise(plain)
        == 'syntax = "proto3";\npackage shop;\nmessage Order {\n  int32 id = 1;\n}'
    )
    assert normalise(one("int32 id = 1;")) != normalise(one("int64 id = 1;"))


def test_normalise_keeps_the_text_where_the_printer_would_lose_options() -> None:
    text = one("map<string, int32> m = 1 [deprecated = true];")
    assert normalise(text) == text.strip()
    with pytest.raises(InvalidSchemaError):
        normalise(one("Nope n = 1;"))
