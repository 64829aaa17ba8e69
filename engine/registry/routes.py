"""The Confluent Schema Registry REST API as a FastAPI router on the agent's HTTP face.

Mounted under PREFIX (`/registry`): clients take `http://agent:8080/registry` as the registry
URL (confluent-kafka's SchemaRegistryClient and Java's RestService join the base URL's path
with theirs). At the root the registry's catch-all for unserved routes (clients probe
`/contexts`, `/subjects/{s}/metadata`, `/dek-registry/…`) would take every 404 of the agent,
and `/config` or `/mode` could clash with the REST API's names; under a prefix the registry owns
its space whole. Bodies are read as JSON whatever the content type (`application/vnd.
schemaregistry.v1+json`, `application/json`…), answers carry the registry's media type, and
errors are Confluent's (errors.py).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from starlette.convertors import Convertor, register_url_convertor
from starlette.responses import Response

from streamhouse.registry.errors import MEDIA_TYPE, RegistryErrorBody, RegistryResponse, RegistryRoute, error_response
from streamhouse.registry.proto_descriptor import serialized
from streamhouse.registry.service import Found, RegistryService, check_subject
from streamhouse.storage import access
from streamhouse.storage import namespace as ns
from streamhouse.storage.errors import AuthorizationError
from streamhouse.storage.schemas.errors import InvalidSchemaError, SchemaNotFoundError
from streamhouse.storage.schemas.registry import SCHEMA_TYPES, Reference, SchemaText

PREFIX = "/registry"


class _SubjectConvertor(Convertor[str]):
    """A subject path segment that may hold '/': Confluent clients send it as %2F, and the
    server hands routing the decoded path, so "team/orders-value" arrives as two segments.
    Like Starlette's `path` converter, but never empty (`/config/` is not the global config).
    The routes that continue after the subject (`/versions/…`) are declared before the ones
    that end with it, so a subject never swallows them."""

    regex = r"[\s\S]+"  # not ".+": a subject may hold a newline (%0A), which "." does not match

    # Subjects are named in the request's org (issue 15, storage/namespace.py): every route gets
    # the stored subject `<org>~<subject>`, and answers are mapped back (_shown).
    def convert(self, value: str) -> str:
        return _stored(value)

    def to_string(self, value: str) -> str:
        return _shown(value) or value


def _stored(subject: str) -> str:
    org = ns.current()
    return subject if org is None else f"{org}{ns.SEPARATOR}{subject}"


def _shown(stored: str) -> str | None:
    """The org's name of a stored subject; None when it is another org's."""
    return ns.outer(stored, ns.current())


register_url_convertor("subject", _SubjectConvertor())
# Confluent's ids are 32-bit; a path outside that is refused before the store sees it.
SchemaId = Annotated[int, Path(ge=0, le=2**31 - 1)]


def _flag(request: Request, name: str) -> bool:
    # Python clients send str(bool) ("True"), Java "true".
    return request.query_params.get(name, "").strip().lower() in ("true", "1", "yes")


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidSchemaError(f"the request body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidSchemaError("the request body must be a JSON object")
    return body


def _number(body: dict[str, Any], name: str) -> int | None:
    """An optional integer field (`id`, `version` of an IMPORT registration); Confluent sends -1
    or leaves it out for "none"."""
    value = body.get(name)
    if value is None or value == -1:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidSchemaError(f"{name} must be an integer")
    return value


def _references(body: dict[str, Any]) -> tuple[Reference, ...]:
    refs = body.get("references") or []
    if not isinstance(refs, list):
        raise InvalidSchemaError("references must be a list of {name, subject, version}")
    out = []
    for i, ref in enumerate(refs):
        try:
            version = int(ref["version"])
            if not 1 <= version <= 2**31 - 1:
                raise ValueError(version)
            out.append(Reference(str(ref["name"]), check_subject(_stored(str(ref["subject"]))), version))
        except (KeyError, TypeError, ValueError):
            raise InvalidSchemaError(f"references[{i}] must be {{name, subject, version}}") from None
    return tuple(out)


async def _schema_in(service: RegistryService, request: Request) -> SchemaText:
    body = await _body(request)
    text = body.get("schema")
    if not isinstance(text, str) or not text.strip():
        raise InvalidSchemaError("the body needs a non-empty string field 'schema'")
    schema_type = body.get("schemaType") or "AVRO"
    if not isinstance(schema_type, str):
        raise InvalidSchemaError("schemaType must be AVRO, JSON or PROTOBUF")
    return await service.normalise(schema_type, text, _references(body))


def _schema_fields(schema: SchemaText, fmt: str | None = None) -> dict[str, Any]:
    # `?format=serialized`: Protobuf as a base64 FileDescriptorProto, as Confluent serves it.
    text = serialized(schema.text) if fmt == "serialized" and schema.schema_type == "PROTOBUF" else schema.text
    out: dict[str, Any] = {"schema": text}
    if schema.schema_type != "AVRO":  # Confluent leaves it out for Avro, and clients default to it
        out["schemaType"] = schema.schema_type
    if schema.references:
        out["references"] = [
            {"name": r.name, "subject": _shown(r.subject) or r.subject, "version": r.version} for r in schema.references
        ]
    return out


def _found(found: Found, fmt: str | None = None) -> dict[str, Any]:
    fields = _schema_fields(found.schema, fmt)
    subject = _shown(found.subject) or found.subject
    return {"subject": subject, "version": found.version, "id": found.schema_id, **fields}


# ACLs (issue 15, storage/access.py): per subject, register = write, reading schemas = read,
# listing = describe, deletes = delete, compatibility/mode changes = alter. The global config
# and mode are changed only by a principal allowed to alter every subject (literal '*').
ALL_SUBJECTS = "*"


async def _readable(service: RegistryService, schema_id: int) -> None:
    """A schema by id is readable by whoever may read one subject that uses it (Confluent's
    rule); with no ACLs in force (auth off) there is nothing to look up."""
    if access.CURRENT.get() is None:
        return
    stored = {v.subject for v in await service.schema_versions(schema_id, True)}
    subjects = {name for name in map(_shown, stored) if name is not None}
    if stored and not subjects:  # only other orgs' subjects use it: for this org it does not exist
        raise SchemaNotFoundError(f"schema {schema_id} not found")
    if subjects and not any(access.allows("read", "subject", name) for name in subjects):
        access.require("read", "subject", min(subjects))  # raises: no subject of it is readable


def _require_global_alter() -> None:
    """The global config and mode are every org's: only the global namespace (admins, the
    agents, auth off) changes them, and there only a principal that may alter every subject."""
    if ns.current() is not None:
        raise AuthorizationError("the registry's global config and mode are shared by every org: an admin changes them")
    access.require("alter", "subject", ALL_SUBJECTS)


def registry_router(service: RegistryService) -> APIRouter:
    router = APIRouter(
        prefix=PREFIX,
        route_class=RegistryRoute,
        default_response_class=RegistryResponse,
        tags=["schema registry"],
        responses={"default": {"model": RegistryErrorBody, "description": "Confluent's error_code and message"}},
    )

    @router.get("", summary="Registry root (clients probe it)")
    async def root() -> dict[str, Any]:
        return {}

    # -- schemas by id ------------------------------------------------------------------------
    @router.get("/schemas/types", summary="Schema types served")
    async def schema_types() -> list[str]:
        return list(SCHEMA_TYPES)

    @router.get("/schemas/ids/{schema_id}", summary="A schema by its global id")
    async def schema_by_id(schema_id: SchemaId, request: Request) -> dict[str, Any]:
        await _readable(service, schema_id)
        return _schema_fields((await service.schema(schema_id)).schema, request.query_params.get("format"))

    @router.get("/schemas/ids/{schema_id}/schema", summary="A schema's raw text by id")
    async def raw_schema_by_id(schema_id: SchemaId) -> Response:
        await _readable(service, schema_id)
        return Response((await service.schema(schema_id)).schema.text, media_type=MEDIA_TYPE)

    @router.get("/schemas/ids/{schema_id}/subjects", summary="Subjects using a schema")
    async def schema_subjects(schema_id: SchemaId, request: Request) -> list[str]:
        versions = await service.schema_versions(schema_id, _flag(request, "deleted"))
        shown = (_shown(v.subject) for v in versions)
        return sorted({name for name in shown if name is not None and access.allows("describe", "subject", name)})

    @router.get("/schemas/ids/{schema_id}/versions", summary="Subject versions using a schema")
    async def schema_versions(schema_id: SchemaId, request: Request) -> list[dict[str, Any]]:
        versions = await service.schema_versions(schema_id, _flag(request, "deleted"))
        seen = [(name, v) for v in versions if (name := _shown(v.subject)) is not None]
        return [{"subject": n, "version": v.version} for n, v in seen if access.allows("describe", "subject", n)]

    # -- subjects -------------------------------------------------------------------------------
    @router.get("/subjects", summary="Subjects")
    async def subjects(request: Request) -> list[str]:
        prefix = request.query_params.get("subjectPrefix", "")
        listed = await service.subjects(_flag(request, "deleted"), _stored(prefix))
        shown = (_shown(name) for name in listed)
        return [name for name in shown if name is not None and access.allows("describe", "subject", name)]

    @router.post("/subjects/{subject:subject}/versions", summary="Register a schema under a subject")
    async def register(subject: str, request: Request) -> dict[str, Any]:
        access.require("write", "subject", subject)
        schema = await _schema_in(service, request)
        body = await _body(request)  # IMPORT mode: the id (and version) the schema keeps
        registered = await service.register(
            check_subject(subject), schema, _number(body, "id"), _number(body, "version")
        )
        return {"id": registered.schema_id, "subject": _shown(subject) or subject, "version": registered.version}

    @router.post("/subjects/{subject:subject}", summary="Look a schema up under a subject")
    async def lookup(subject: str, request: Request) -> dict[str, Any]:
        access.require("read", "subject", subject)
        schema = await _schema_in(service, request)
        found = await service.lookup(check_subject(subject), schema, _flag(request, "deleted"))
        return _found(Found(subject, found.version, found.schema_id, schema), request.query_params.get("format"))

    @router.get("/subjects/{subject:subject}/versions", summary="A subject's versions")
    async def versions(subject: str, request: Request) -> list[int]:
        access.require("describe", "subject", subject)
        return await service.versions(subject, _flag(request, "deleted"))

    @router.get("/subjects/{subject:subject}/versions/{version}", summary="A subject version (or 'latest')")
    async def version(subject: str, version: str, request: Request) -> dict[str, Any]:
        access.require("read", "subject", subject)
        found = await service.version(subject, version, _flag(request, "deleted"))
        return _found(found, request.query_params.get("format"))

    @router.get("/subjects/{subject:subject}/versions/{version}/schema", summary="A subject version's raw schema")
    async def version_schema(subject: str, version: str, request: Request) -> Response:
        access.require("read", "subject", subject)
        found = await service.version(subject, version, _flag(request, "deleted"))
        return Response(found.schema.text, media_type=MEDIA_TYPE)

    @router.get("/subjects/{subject:subject}/versions/{version}/referencedby", summary="Schemas referencing a version")
    async def referenced_by(subject: str, version: str) -> list[int]:
        access.require("read", "subject", subject)
        return await service.referenced_by(subject, version)

    @router.delete(
        "/subjects/{subject:subject}/versions/{version}", summary="Delete a version (soft, or permanent=true)"
    )
    async def delete_version(subject: str, version: str, request: Request) -> int:
        access.require("delete", "subject", subject)
        return await service.delete_version(subject, version, _flag(request, "permanent"))

    # After the routes below /subjects/{s}/…: a subject may hold '/' (sent as %2F), so the
    # subject converter would otherwise take "s/versions/1" for a subject.
    @router.delete("/subjects/{subject:subject}", summary="Delete a subject (soft, or permanent=true)")
    async def delete_subject(subject: str, request: Request) -> list[int]:
        access.require("delete", "subject", subject)
        return await service.delete_subject(subject, _flag(request, "permanent"))

    # -- compatibility --------------------------------------------------------------------------
    @router.post("/compatibility/subjects/{subject:subject}/versions/{version}", summary="Test against one version")
    async def compatible_with(subject: str, version: str, request: Request) -> dict[str, Any]:
        access.require("read", "subject", subject)
        schema = await _schema_in(service, request)
        problems = await service.test_compatibility(subject, version, schema)
        return _verdict(problems, _flag(request, "verbose"))

    @router.post("/compatibility/subjects/{subject:subject}/versions", summary="Test as a registration would")
    async def compatible(subject: str, request: Request) -> dict[str, Any]:
        access.require("read", "subject", subject)
        schema = await _schema_in(service, request)
        return _verdict(await service.test_compatibility(subject, None, schema), _flag(request, "verbose"))

    # -- config and mode ------------------------------------------------------------------------
    @router.get("/config", summary="Global compatibility level")
    async def get_config() -> dict[str, Any]:
        return {"compatibilityLevel": await service.compatibility(None)}

    @router.put("/config", summary="Set the global compatibility level")
    async def put_config(request: Request) -> dict[str, Any]:
        _require_global_alter()
        return {"compatibility": await service.set_compatibility(None, (await _body(request)).get("compatibility", ""))}

    @router.delete("/config", summary="Reset the global compatibility level")
    async def delete_config() -> dict[str, Any]:
        _require_global_alter()
        return {"compatibilityLevel": await service.delete_compatibility(None)}

    @router.get("/config/{subject:subject}", summary="A subject's compatibility level")
    async def get_subject_config(subject: str, request: Request) -> dict[str, Any]:
        access.require("describe", "subject", subject)
        level = await service.compatibility(subject, _flag(request, "defaultToGlobal"))
        return {"compatibilityLevel": level}

    @router.put("/config/{subject:subject}", summary="Set a subject's compatibility level")
    async def put_subject_config(subject: str, request: Request) -> dict[str, Any]:
        access.require("alter", "subject", subject)
        level = (await _body(request)).get("compatibility", "")
        return {"compatibility": await service.set_compatibility(check_subject(subject), level)}

    @router.delete("/config/{subject:subject}", summary="Remove a subject's compatibility level")
    async def delete_subject_config(subject: str) -> dict[str, Any]:
        access.require("alter", "subject", subject)
        return {"compatibilityLevel": await service.delete_compatibility(subject)}

    @router.get("/mode", summary="Global mode")
    async def get_mode() -> dict[str, Any]:
        return {"mode": await service.mode(None)}

    @router.put("/mode", summary="Set the global mode")
    async def put_mode(request: Request) -> dict[str, Any]:
        _require_global_alter()
        mode = (await _body(request)).get("mode", "")
        return {"mode": await service.set_mode(None, mode, _flag(request, "force"))}

    @router.get("/mode/{subject:subject}", summary="A subject's mode")
    async def get_subject_mode(subject: str, request: Request) -> dict[str, Any]:
        access.require("describe", "subject", subject)
        return {"mode": await service.mode(subject, _flag(request, "defaultToGlobal"))}

    @router.put("/mode/{subject:subject}", summary="Set a subject's mode")
    async def put_subject_mode(subject: str, request: Request) -> dict[str, Any]:
        access.require("alter", "subject", subject)
        mode = (await _body(request)).get("mode", "")
        return {"mode": await service.set_mode(check_subject(subject), mode, _flag(request, "force"))}

    @router.delete("/mode/{subject:subject}", summary="Remove a subject's mode")
    async def delete_subject_mode(subject: str) -> dict[str, Any]:
        access.require("alter", "subject", subject)
        return {"mode": await service.delete_mode(subject)}

    # Last: whatever else a client probes under the prefix gets Confluent's 404 body.
    @router.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"], include_in_schema=False)
    async def not_served(rest: str, request: Request) -> Response:
        return error_response(404, f"HTTP 404 Not Found: {request.method} {PREFIX}/{rest} is not served")

    return router


def _verdict(problems: list[str], verbose: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"is_compatible": not problems}
    if verbose:
        out["messages"] = problems
    return out
