"""The three schema types behind one face: validate + normalise a text, and the compatibility
checker `check(new, old, references, old_references) -> list[str]` (why a reader using `new`
cannot read what `old` wrote; empty = it can). Avro's is avro.py; JSON Schema's and Protobuf's
are compat/ (written by their own module owners). The registry derives FORWARD as
check(old, new), FULL as both, and *_TRANSITIVE by checking every live version (service.py).

JSON Schema is stored as compact JSON (key order kept); Protobuf in compat/protobuf.py's
canonical layout (comments dropped), so two spellings of one .proto share an id.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from streamhouse.registry import avro
from streamhouse.registry.compat import json_schema, protobuf
from streamhouse.registry.proto_descriptor import proto_text

Refs = Mapping[str, str]
Checker = Callable[[str, str, Refs | None, Refs | None], list[str]]


@dataclass(frozen=True)
class Kind:
    name: str
    normalise: Callable[[str, Refs], str]
    checker: Checker

    def check(self, new: str, old: str, references: Refs, old_references: Refs) -> list[str]:
        return self.checker(new, old, references, old_references)


def _json_normalise(text: str, references: Refs) -> str:
    json_schema.parse(text, references)  # raises compat.InvalidSchemaError (42201)
    return json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)


KINDS: dict[str, Kind] = {
    "AVRO": Kind("AVRO", avro.normalise, avro.check),
    "JSON": Kind("JSON", _json_normalise, json_schema.check),
    # A base64 FileDescriptorProto (what confluent-kafka's ProtobufSerializer registers) as .proto text.
    "PROTOBUF": Kind("PROTOBUF", lambda text, refs: protobuf.normalise(proto_text(text), refs), protobuf.check),
}
