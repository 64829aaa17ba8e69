"""The schema registry's errors, each with the Confluent `error_code` a client acts on (the HTTP
status is its first three digits). Subclasses of the one tree in storage/errors.py, so every
other front end maps them as it maps the rest (NotFoundError, InvalidInputError)."""

from __future__ import annotations

from typing import ClassVar

from streamhouse.storage.errors import CorruptDataError, InvalidInputError, NotFoundError, StreamHouseError


class RegistryError(StreamHouseError):
    """A schema-registry failure; `error_code` is Confluent's (50001: the store failed)."""

    error_code: ClassVar[int] = 50001


class SubjectNotFoundError(RegistryError, NotFoundError):
    error_code = 40401


class VersionNotFoundError(RegistryError, NotFoundError):
    error_code = 40402


class SchemaNotFoundError(RegistryError, NotFoundError):
    error_code = 40403


class SubjectSoftDeletedError(RegistryError, NotFoundError):
    """A soft delete of a subject whose versions are all soft-deleted already."""

    error_code = 40404


class SubjectNotSoftDeletedError(RegistryError, NotFoundError):
    """A permanent delete of a subject that was not soft-deleted first."""

    error_code = 40405


class VersionSoftDeletedError(RegistryError, NotFoundError):
    error_code = 40406


class VersionNotSoftDeletedError(RegistryError, NotFoundError):
    error_code = 40407


class SubjectConfigNotFoundError(RegistryError, NotFoundError):
    error_code = 40408


class SubjectModeNotFoundError(RegistryError, NotFoundError):
    error_code = 40409


class IncompatibleSchemaError(RegistryError):
    """The schema breaks the subject's compatibility level; `messages` say where."""

    error_code = 409

    def __init__(self, message: str, messages: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.messages = messages


class InvalidSchemaError(RegistryError, InvalidInputError):
    error_code = 42201


class InvalidVersionError(RegistryError, InvalidInputError):
    error_code = 42202


class InvalidCompatibilityError(RegistryError, InvalidInputError):
    error_code = 42203


class InvalidModeError(RegistryError, InvalidInputError):
    error_code = 42204


class OperationNotPermittedError(RegistryError, InvalidInputError):
    """E.g. registering under a READONLY subject."""

    error_code = 42205


class ReferenceExistsError(RegistryError, InvalidInputError):
    """Deleting a subject version another schema references."""

    error_code = 42206


class RegistryConflictError(RegistryError):
    """The subject changed between the compatibility check and the write (another agent
    registered or deleted a version); nothing was written, the caller checks again."""

    error_code = 50001


class WireFormatError(CorruptDataError):
    """A serialised value does not start with the Confluent framing (magic byte 0 + 4-byte id);
    `index` is the record's position in its batch."""

    def __init__(self, message: str, *, index: int, source: str = "value column") -> None:
        super().__init__(message, source=source, position=None)
        self.index = index


class AvroDecodeError(WireFormatError):
    """An Avro payload does not decode with its writer's schema (runs short, a bad union branch or
    enum index, bytes left over); `index` is the record's position in its batch."""


class UnsupportedAvroSchemaError(InvalidInputError):
    """An Avro schema the columnar decoder cannot turn into columns (a recursive type, a decimal
    beyond DECIMAL(38)): its records stay bytes."""


class SchemaValidationError(InvalidInputError):
    """A produce to a topic with `confluent.value.schema.validation=true` whose value is not
    framed for the schema registry, or names a schema id the registry does not have; `index` is
    the record's position in its batch. Nothing of the batch was stored."""

    def __init__(self, message: str, *, index: int) -> None:
        super().__init__(message)
        self.index = index


class AvroValueError(SchemaValidationError):
    """A produced value of an Avro topic (`format = 'avro'`) that is not a framed Avro record
    decodable with its writer schema; `index` is the record's position in its batch. Nothing of
    the batch was stored."""
