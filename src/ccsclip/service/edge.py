"""The HTTP edge: an ASGI middleware in front of the BentoML API routes.

It does what BentoML's request handling does not, in one place:

* caps the body at CCSCLIP_MAX_REQUEST_BYTES (413 before BentoML buffers it);
* parses every JSON body itself, so malformed JSON is a 400 on every route (BentoML parses a
  batchable route's body before its own validation and answers 500 for it);
* turns multipart/form-data and url-encoded forms into the JSON body of the same request (files
  become base64 images), so BentoML's own multipart handling, which downloads a URL given in a
  file field, never runs and both forms share one validation path;
* writes the `x-ccsclip-profile` header into the payload (the object, or each item of a batch
  list) where no profile is given: a batched item then carries its profile into the batch;
* rewrites BentoML's 400 for a validation error into this service's error body (`error`, `kind`,
  `field`) and status (413 for a limit), and a batch item's error into its request's 4xx;
* counts requests and latency by endpoint, serving profile, transport and code;
* serves the OpenAPI document (`/docs.json`) built from the endpoint table (openapi.py) in place
  of BentoML's, which cannot state the schemas' constraints, nullability and error statuses.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser

from ccsclip.service.core import (
    NO_PROFILE,
    PROFILE_HEADER,
    ServiceError,
    apply_header_profile,
    error_from_details,
)
from ccsclip.service.endpoints import BY_ROUTE, Endpoint
from ccsclip.service.metrics import get_metrics
from ccsclip.service.openapi import DOCS_PATH, openapi_json
from ccsclip.service.parts import ServiceParts
from ccsclip.service.settings import get_settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

IMAGE_FIELDS = {"images", "image"}
LIST_FIELDS = {"images", "labels", "templates", "texts"}
INT_FIELDS = {"top_k", "k"}
_OFFLOAD_BYTES = 256 * 1024  # parse bigger JSON bodies in a thread, not on the event loop

_parts: ServiceParts | None = None


def set_parts(parts: ServiceParts | None) -> None:
    """The worker's served parts (set by the service), for profile labels."""
    global _parts
    _parts = parts


def error_body(error: ServiceError) -> bytes:
    return error.info().model_dump_json().encode("utf-8")


async def _send_json(send: Send, status: int, body: bytes, extra: list | None = None) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _drain(receive: Receive, received: int, cap: int) -> None:
    """Read and drop the rest of a refused body (up to `cap` bytes), so the client, still
    sending, reads the 413 instead of a reset connection."""
    while received <= cap:
        message = await receive()
        if message["type"] != "http.request":
            return
        received += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    too_large = ServiceError(
        "too_large", None, f"the request body exceeds {limit} bytes (CCSCLIP_MAX_REQUEST_BYTES)"
    )
    cap = 4 * limit
    declared = Headers(scope=scope).get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        if int(declared) <= cap:
            await _drain(receive, 0, cap)
        raise too_large
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ServiceError("invalid", None, "the client disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        more = message.get("more_body", False)
        if size > limit:
            if more:
                await _drain(receive, size, cap)
            raise too_large
        chunks.append(chunk)
        if not more:
            return b"".join(chunks)


def _form_value(name: str, values: list[Any]) -> Any:
    """Form values of one field -> the JSON value the schema expects."""
    out: list[Any] = []
    for value in values:
        if isinstance(value, bytes):  # an uploaded file
            if name not in IMAGE_FIELDS:
                raise ServiceError("invalid", name, f"{name}: a file was sent; send text")
            out.append(base64.b64encode(value).decode("ascii"))
        elif name in LIST_FIELDS and value.lstrip().startswith("["):
            try:
                parsed = json.loads(value)
            except (ValueError, RecursionError):
                parsed = [value]
            out.extend(parsed if isinstance(parsed, list) else [parsed])
        elif name in INT_FIELDS:
            try:
                out.append(int(value))
            except ValueError:
                out.append(value)  # refused by the schema, which names the field
        else:
            out.append(value)
    if name in LIST_FIELDS:
        return out
    return out[0] if len(out) == 1 else out


async def _parse_form(endpoint: Endpoint, scope: Scope, body: bytes, media: str) -> Any:
    settings = get_settings()
    headers = Headers(scope=scope)

    async def stream() -> Any:
        yield body

    try:
        if media == "multipart/form-data":
            parser = MultiPartParser(
                headers,
                stream(),
                max_files=settings.max_images_per_request,
                max_fields=settings.max_labels + 16,
                max_part_size=settings.max_request_bytes,
            )
        else:
            parser = FormParser(
                headers, stream(), max_fields=settings.max_labels + 16, max_part_size=len(body) + 1
            )
        form = await parser.parse()
    except MultiPartException as exc:
        kind = "too_large" if "Too many" in exc.message else "invalid"
        raise ServiceError(kind, None, f"the form cannot be read: {exc.message}") from None
    fields: dict[str, list[Any]] = {}
    try:
        for key, value in form.multi_items():
            data = await value.read() if isinstance(value, UploadFile) else value
            fields.setdefault(key, []).append(data)
    finally:
        await form.close()
    payload = {name: _form_value(name, values) for name, values in fields.items()}
    if endpoint.batched:  # the item list itself: each file one item
        unknown = sorted(set(payload) - IMAGE_FIELDS - {"profile"})
        if unknown:
            raise ServiceError("invalid", unknown[0], f"{unknown[0]}: unknown field")
        images = [*fields.get("images", []), *fields.get("image", [])]
        files = _form_value("images", images)
        profile = payload.get("profile")
        return [{"image": f, **({"profile": profile} if profile else {})} for f in files]
    return payload


async def _prepare(endpoint: Endpoint, scope: Scope, body: bytes) -> tuple[Any, bytes, bool]:
    """(payload, body to forward, whether the body was rewritten as JSON)."""
    headers = Headers(scope=scope)
    media = headers.get("content-type", "application/json").split(";")[0].strip().lower()
    header_profile = headers.get(PROFILE_HEADER) or None
    rewritten = False
    if media in ("multipart/form-data", "application/x-www-form-urlencoded"):
        payload: Any = await _parse_form(endpoint, scope, body, media)
        rewritten = True
    else:
        try:
            if len(body) > _OFFLOAD_BYTES:
                payload = await anyio.to_thread.run_sync(json.loads, body or b"{}")
            else:
                payload = json.loads(body or b"{}")
        except (ValueError, RecursionError) as exc:
            raise ServiceError(
                "invalid", None, f"request: the body is not valid JSON: {exc}"
            ) from None
    if header_profile and endpoint.takes_profile:
        updated = apply_header_profile(payload, header_profile)
        rewritten = rewritten or updated is not payload
        payload = updated
    if rewritten:
        body = json.dumps(payload).encode("utf-8")
    return payload, body, rewritten


def _batch_error(body: bytes) -> ServiceError | None:
    """The first failed item of a batch endpoint's 200 response, as its request's error."""
    if b'"error":' not in body:
        return None
    try:
        items = json.loads(body)
    except ValueError:
        return None
    for index, item in enumerate(items if isinstance(items, list) else []):
        error = item.get("error") if isinstance(item, dict) else None
        if error:
            exc = ServiceError(error["kind"], error.get("field"), error["error"])
            return exc.prefixed(f"[{index}]")
    return None


def _validation_error(body: bytes) -> ServiceError | None:
    """BentoML's 400 body for a pydantic ValidationError -> this service's error."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get("detail"), list) and "kind" not in data:
        return error_from_details(data["detail"])
    return None


class EdgeMiddleware:
    """ASGI middleware for the API routes (see the module doc); other paths pass through."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path == DOCS_PATH and scope.get("method") == "GET":
            await _send_json(send, 200, openapi_json())
            return
        if scope["type"] != "http" or scope.get("method") != "POST" or path not in BY_ROUTE:
            await self.app(scope, receive, send)
            return
        endpoint = BY_ROUTE[path]
        started = time.perf_counter()
        label = NO_PROFILE
        try:
            body = await _read_body(scope, receive, get_settings().max_request_bytes)
            payload, body, rewritten = await _prepare(endpoint, scope, body)
        except ServiceError as exc:
            await _send_json(send, exc.http_status, error_body(exc), [(b"connection", b"close")])
            self._record(endpoint.name, label, exc.http_status, started)
            return
        if _parts is not None:
            label = endpoint.profile_label(_parts, payload)
        if rewritten:
            headers = [
                (k, v)
                for k, v in scope["headers"]
                if k.lower() not in (b"content-length", b"content-type")
            ]
            headers += [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ]
            scope = {**scope, "headers": headers}
        status = await self._forward(endpoint, scope, receive, send, body)
        self._record(endpoint.name, label, status, started)

    async def _forward(
        self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send, body: bytes
    ) -> int:
        """Call BentoML with the buffered body; rewrite the responses named in the module doc."""
        sent_body = False
        state: dict[str, Any] = {"status": 500, "held": None, "chunks": []}

        async def replay() -> Message:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        async def intercept(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                if message["status"] == 400 or (endpoint.batched and message["status"] == 200):
                    state["held"] = message
                    return
                await send(message)
            elif message["type"] == "http.response.body" and state["held"] is not None:
                state["chunks"].append(message.get("body", b""))
                if not message.get("more_body", False):
                    await self._release(state, send)
            else:
                await send(message)

        await self.app(scope, replay, intercept)
        return int(state["status"])

    @staticmethod
    async def _release(state: dict[str, Any], send: Send) -> None:
        held, data = state["held"], b"".join(state["chunks"])
        error = _validation_error(data) if held["status"] == 400 else _batch_error(data)
        if error is None:
            headers = [(k, v) for k, v in held["headers"] if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(data)).encode()))
            await send({**held, "headers": headers})
            await send({"type": "http.response.body", "body": data, "more_body": False})
            return
        state["status"] = error.http_status
        await _send_json(send, error.http_status, error_body(error))

    @staticmethod
    def _record(endpoint: str, profile: str, status: int, started: float) -> None:
        get_metrics().observe_request(
            endpoint, profile, "http", str(status), time.perf_counter() - started
        )
