"""The registry's pure parts: the schema cache's bound and TTL, Avro normalisation (one id for
one schema however it is spelled) and a case table for the Avro checker as the registry calls
it (reader = new, writer = old; FORWARD = swapped)."""

from __future__ import annotations

import json

import pytest

from streamhouse.registry import avro
from streamhouse.registry.cache import TtlCache
from streamhouse.registry.produce_check import record_name
from streamhouse.registry.service import parse_version
from streamhouse.storage.schemas.errors import InvalidSchemaError, InvalidVersionError
from streamhouse.storage.schemas.registry import SchemaText


def test_cache_bound_and_ttl() -> None:
    now = [0.0]
    cache: TtlCache[int, str] = TtlCache(max_entries=2, ttl_s=10, clock=lambda: now[0])
    cache.put(1, "a")
    cache.put(2, "b")
    assert cache.get(1) == "a"  # 1 is now the most recently used
    cache.put(3, "c")
    assert cache.get(2) is None and cache.get(1) == "a" and cache.get(3) == "c"
    now[0] = 10.5
    assert cache.get(1) is None and len(cache) == 1
    with pytest.raises(ValueError):
        TtlCache(max_entries=0)


def test_avro_normalisation() -> None:
    spellings = ['"string"', '{"type": "string"}', ' {\n  "type" :"string" } ']
    assert {avro.normalise(s) for s in spellings} == {'"string"'}
    r1 = '{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}'
    r2 = json.dumps(json.loads(r1), indent=2)
    assert avro.normalise(r1) == avro.normalise(r2)
    # A default is part of the schema: it changes what readers do.
    with_default = '{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":1}]}'
    assert avro.normalise(with_default) != avro.normalise(r1)
    for bad in ("{not json", '{"type":"record","name":"R"}', '"nosuchtype"', '{"type":"enum","name":"E"}'):
        with pytest.raises(InvalidSchemaError):
            avro.normalise(bad)


def _rec(*fields: str) -> str:
    return json.dumps({"type": "record", "name": "R", "fields": [json.loads(f) for f in fields]})


A = '{"name":"a","type":"int"}'
A_LONG = '{"name":"a","type":"long"}'
B = '{"name":"b","type":"string"}'
B_DEF = '{"name":"b","type":"string","default":""}'
CASES = [
    # (reader, writer, compatible)
    (_rec(A, B), _rec(A), False),  # reader field without default missing from old data
    (_rec(A, B_DEF), _rec(A), True),
    (_rec(A), _rec(A, B), True),  # a removed field is skipped
    (_rec(A_LONG), _rec(A), True),  # int promotes to long
    (_rec(A), _rec(A_LONG), False),  # long does not narrow to int
    ('{"type":"enum","name":"E","symbols":["X","Y"]}', '{"type":"enum","name":"E","symbols":["X"]}', True),
    ('{"type":"enum","name":"E","symbols":["X"]}', '{"type":"enum","name":"E","symbols":["X","Y"]}', False),
    ('["null","string"]', '"string"', True),  # a union reader accepts a member
    ('"string"', '["null","string"]', False),
    ('{"type":"record","name":"Other","fields":[]}', _rec(), False),  # names must match
]


@pytest.mark.parametrize(("reader", "writer", "compatible"), CASES)
def test_avro_check_cases(reader: str, writer: str, compatible: bool) -> None:
    problems = avro.check(reader, writer)
    assert (problems == []) == compatible, problems


def test_versions() -> None:
    assert parse_version("latest") is None and parse_version("-1") is None and parse_version("3") == 3
    for bad in ("0", "abc", "2147483648", "1.5", "+"):
        with pytest.raises(InvalidVersionError):
            parse_version(bad)


def test_record_names_for_the_record_strategies() -> None:
    avro_text = '{"type":"record","name":"Click","namespace":"demo","fields":[]}'
    assert record_name(SchemaText("AVRO", avro_text)) == "demo.Click"
    assert record_name(SchemaText("AVRO", '{"type":"record","name":"x.Y","namespace":"z","fields":[]}')) == "x.Y"
    assert record_name(SchemaText("AVRO", '"string"')) is None
    assert record_name(SchemaText("JSON", '{"title":"Order","type":"object"}')) == "Order"
    proto = 'syntax = "proto3";\npackage shop.v1;\nmessage Order {\n  int64 id = 1;\n}\nmessage Line {}\n'
    assert record_name(SchemaText("PROTOBUF", proto)) == "shop.v1.Order"
