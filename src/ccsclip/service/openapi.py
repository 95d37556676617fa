"""The OpenAPI document of the HTTP API (`/docs.json`), generated from the endpoint table and the
same pydantic models that validate: a client generated from it sends what the server accepts and
accepts what the server answers.

OpenAPI 3.1, whose schemas are JSON Schema, so pydantic's are used as they are: nullable fields
stay nullable, and the constraints that validator functions enforce are stated beside them
(`schemas.Stated`). Limits come from the settings, so the document is this deployment's. Every
status an endpoint can answer is listed with its body: 400 and 413 for every call, the
endpoint's own (`Endpoint.errors`: 404, 409, 503), 429 when load shedding is on, 401/403 with a
bearer security scheme when API keys are configured. The one rule a schema cannot state, item
ids unique within an upsert, is in the field's description. A server without a gallery root or
Milvus cannot create galleries: its document leaves the create route out.
"""

from __future__ import annotations

import functools
import json
from typing import Annotated, Any

from pydantic import BaseModel, TypeAdapter
from pydantic.fields import FieldInfo
from pydantic.json_schema import JsonSchemaMode

from ccsclip.service import schemas as s
from ccsclip.service.endpoints import ENDPOINTS, Endpoint
from ccsclip.service.gallery_schemas import creatable_backends
from ccsclip.service.keys import KeyRing
from ccsclip.service.settings import ServiceSettings, get_settings

DOCS_PATH = "/docs.json"
REF = "#/components/schemas/{model}"
STATUS_TEXT = {
    400: "The request is not valid: `field` names the culprit.",
    401: "No API key, or an unknown one.",
    403: "The API key is read-only; this call changes state.",
    404: "An unknown profile or gallery.",
    409: "A state conflict: the gallery name is taken (`conflict`), the gallery is shipped "
    "read-only (`read_only`), or an image names another profile than the gallery's "
    "(`other_profile`).",
    413: "Over a limit (body size, item count, image pixels, k, ef).",
    429: "Too many calls in flight; retry after `retry-after` seconds.",
    503: "Milvus is unavailable; retry after `retry-after` seconds.",
}
GATE = (401, 403, 429)
# BentoML's own routes (GET, plain text), listed so the document covers the whole server
INFRA = {
    "/livez": "200 while the server process is alive (Kubernetes liveness).",
    "/readyz": "200 once the service is ready for traffic, else 503 (Kubernetes readiness).",
    "/healthz": "The same as /livez (kept for older Kubernetes).",
    "/metrics": "Prometheus metrics of every worker (text exposition format).",
}


class _Components:
    """Component schemas collected while the operations refer to them."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def add(self, schema: dict[str, Any]) -> dict[str, Any]:
        self.schemas.update(schema.pop("$defs", {}))
        return schema

    def model(self, model: type[BaseModel], mode: JsonSchemaMode) -> dict[str, Any]:
        """A $ref to the model's schema (validation mode for requests, serialization for
        responses: what goes in and what comes out)."""
        schema = self.add(model.model_json_schema(mode=mode, ref_template=REF))
        self.schemas[model.__name__] = schema
        return {"$ref": REF.format(model=model.__name__)}

    def list_field(self, model: type[BaseModel], mode: JsonSchemaMode) -> dict[str, Any]:
        """The schema of a batched endpoint's model's one (list) field, constraints included."""
        (field,) = model.model_fields.values()
        kind = Annotated[field.annotation, FieldInfo.merge_field_infos(field), *field.metadata]
        return self.add(TypeAdapter(kind).json_schema(mode=mode, ref_template=REF))


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _operation(
    endpoint: Endpoint, parts: _Components, settings: ServiceSettings, keys: bool
) -> dict[str, Any]:
    if endpoint.batched:  # over HTTP, the item list itself
        body = parts.list_field(endpoint.request, "validation")
        answer = parts.list_field(endpoint.response, "serialization")
        required = True
    else:
        body = parts.model(endpoint.request, "validation")
        answer = parts.model(endpoint.response, "serialization")
        required = any(f.is_required() for f in endpoint.request.model_fields.values())
    error = {"$ref": REF.format(model="ErrorInfo")}
    refusal = {"$ref": REF.format(model="Refusal")}
    statuses = {400, 413, *endpoint.errors}
    if settings.http_max_concurrency:
        statuses.add(429)
    if keys:
        statuses |= {401, 403} if endpoint.scope == "write" else {401}
    responses: dict[str, Any] = {"200": _json(answer, "The answer.")}
    for status in sorted(statuses):
        responses[str(status)] = _json(refusal if status in GATE else error, STATUS_TEXT[status])
    operation: dict[str, Any] = {
        "operationId": endpoint.name,
        "summary": endpoint.doc,
        "requestBody": {"required": required, "content": {"application/json": {"schema": body}}},
        "responses": responses,
    }
    if keys:
        operation["security"] = [{"bearer": []}]
    return operation


def _infra(path: str, settings: ServiceSettings, keys: bool) -> dict[str, Any]:
    text = {"text/plain": {"schema": {"type": "string"}}}
    responses: dict[str, Any] = {"200": {"description": INFRA[path], "content": text}}
    if path == "/readyz":
        responses["503"] = {"description": "Not ready yet.", "content": text}
    operation: dict[str, Any] = {"operationId": path.strip("/"), "responses": responses}
    if path == "/metrics" and keys and settings.metrics_require_key:
        responses["401"] = _json({"$ref": REF.format(model="Refusal")}, STATUS_TEXT[401])
        operation["security"] = [{"bearer": []}]
    return {"get": operation}


def document(settings: ServiceSettings) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API routes (the endpoint table's) and BentoML's own,
    for these settings."""
    parts = _Components()
    parts.model(s.ErrorInfo, "serialization")
    parts.model(s.Refusal, "serialization")
    secret = settings.api_keys.get_secret_value() if settings.api_keys else None
    keys = KeyRing.load(settings.api_keys_file, secret).enabled
    can_create = bool(creatable_backends(settings))
    served = [e for e in ENDPOINTS if e.name != "galleries_create" or can_create]
    paths = {e.route: {"post": _operation(e, parts, settings, keys)} for e in served}
    paths |= {path: _infra(path, settings, keys) for path in INFRA}
    components: dict[str, Any] = {"schemas": dict(sorted(parts.schemas.items()))}
    if keys:
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ccsclip",
            "version": "1",
            "description": "Zero-shot classification, retrieval and embeddings with per-request "
            "pruning profiles (CLIP heads pruned by Concept Consistency).",
        },
        "paths": paths,
        "components": components,
    }


@functools.cache
def openapi_json() -> bytes:
    """The document for this process's settings, encoded once."""
    return json.dumps(document(get_settings())).encode("utf-8")
