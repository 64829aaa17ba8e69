"""JSON data → Confluent's JSON Schema wire format for a whole batch (REST produce by subject with
`"type": "JSONSCHEMA"`, issue 13): magic byte 0, the 4-byte schema id, the value as compact JSON,
what confluent-kafka's JSONSerializer writes.

Validation is the storage layer's columnar check, per batch: the schema's top-level properties
that have a column type (storage/values/json_schema_decode.py `json_schema_columns`) are read
from all values at once by the JSON topics' vectorised reader (json_decode.py `check_values`),
which names the first record and property whose value does not fit its type. It is the check a
JSON Schema topic applies on produce, so what REST accepts a typed topic accepts too. Keywords
beyond types (required, enum, patterns, ranges, additionalProperties) are not checked, as in
the produce path; a value must be a JSON object (or null: a tombstone).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as _pc

from streamhouse.storage.errors import InvalidInputError, InvalidValueError
from streamhouse.storage.values.json_decode import check_values
from streamhouse.storage.values.json_schema_decode import json_schema_columns
from streamhouse.storage.values.schema import ValueSchema

pc: Any = _pc  # pyarrow-stubs type the variadic kernels too narrowly
_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


class JsonSchemaDataError(InvalidInputError):
    """A record's JSON data does not fit the JSON Schema; `index` is the record's position in the
    batch and `field` the property ("" for the value as a whole)."""

    def __init__(self, message: str, *, index: int, field: str) -> None:
        super().__init__(message)
        self.index = index
        self.field = field


def _columns(schema_text: str, subject: str) -> ValueSchema | None:
    try:
        return json_schema_columns(schema_text, subject)
    except InvalidInputError:  # no property with a column type: nothing to check but JSON-ness
        return None


def encode(schema_text: str, subject: str, data: Sequence[Any], *, where: str = "values") -> pa.Array[Any]:
    """One compact JSON payload per item (binary; None stays null: a tombstone), checked against
    the schema's typed properties as one batch. JsonSchemaDataError names the first bad record."""
    is_object = np.fromiter((isinstance(x, dict) for x in data), dtype=bool, count=len(data))
    is_null = np.fromiter((x is None for x in data), dtype=bool, count=len(data))
    wrong = ~(is_object | is_null)
    if wrong.any():
        i = int(np.argmax(wrong))
        raise JsonSchemaDataError(
            f"{where}[{i}]: must be a JSON object, not {type(data[i]).__name__}", index=i, field=""
        )
    try:
        text = pa.array(list(map(_encode_json, data)), pa.string())
    except ValueError as exc:  # NaN / Infinity cannot come from a JSON body; kept for other callers
        raise JsonSchemaDataError(f"{where}: {exc}", index=0, field="") from None
    payloads = cast(
        "pa.Array[Any]", pc.if_else(pa.array(is_null), pa.scalar(None, pa.string()), text).cast(pa.binary())
    )
    columns = _columns(schema_text, subject)
    if columns is not None and len(payloads):
        try:
            check_values(payloads, columns)  # None: it took several runs, and every value fits
        except InvalidValueError as exc:
            field = exc.column or ""
            label = f" field {field!r}" if field else ""
            raise JsonSchemaDataError(
                f"{where}[{exc.index}]{label}: does not fit the JSON Schema: {exc.reason}", index=exc.index, field=field
            ) from None
    return payloads
