"""The BentoML 1.4 service (new-style `@bentoml.service`): `bentoml serve service:CCSClip`.

Thin: the routes are the endpoint table's (endpoints.py); each validates with the shared schemas
(BentoML parses the body into them), runs the endpoint's call and returns its response model,
or the error body with its 4xx (503 with retry-after when Milvus is down). The edge
middleware (edge.py) handles body limits, JSON parsing, forms, the profile header, error bodies,
metrics and the OpenAPI document (openapi.py, in place of BentoML's).

`/v1/embed_images` is batchable: BentoML merges concurrent requests' item lists (adaptive
batching) and the Core runs one image-tower call per profile of the merged batch. Its items carry
their profile because a batch function sees no per-request headers.

Every worker builds the served parts once (parts.py: core, galleries, probes); only worker 1 runs
the background probes (see `parts.probe_runner`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import bentoml
from pydantic import ValidationError
from starlette.responses import JSONResponse

from ccsclip.errors import CcsclipError
from ccsclip.service.batching import http_batching
from ccsclip.service.core import ServiceError, engine_error
from ccsclip.service.edge import EdgeMiddleware, set_parts
from ccsclip.service.endpoints import ENDPOINTS, Endpoint
from ccsclip.service.gate import GateMiddleware, observe_http_refusal
from ccsclip.service.metrics import get_metrics
from ccsclip.service.metrics_dir import isolate
from ccsclip.service.parent_watch import watch_parent
from ccsclip.service.parts import ServiceParts, build_parts
from ccsclip.service.schemas import Embedding, ImageItems
from ccsclip.service.settings import get_settings
from ccsclip.service.tls import bentoml_ssl

log = logging.getLogger(__name__)
# this server's own Prometheus folder (before any metric exists); no orphaned workers
isolate(bentoml.server_context.worker_index)
watch_parent(bentoml.server_context.worker_index)
settings = get_settings()


def _answer(handler: Callable[[Any], Any], request: Any) -> Any:
    """The handler's response model, or a JSON error response with its 4xx status."""
    try:
        return handler(request)
    except CcsclipError as exc:  # an engine check the schemas did not anticipate
        return _error_response(engine_error(exc))
    except ServiceError as exc:
        return _error_response(exc)


def _error_response(error: ServiceError) -> JSONResponse:
    headers = {"retry-after": str(error.retry_after_s)} if error.retry_after_s else None
    return JSONResponse(error.info().model_dump(), status_code=error.http_status, headers=headers)


class _QuietValidationErrors(logging.Filter):
    """BentoML logs every body that fails validation as an ERROR with a traceback. It is the
    client's mistake, answered with a 4xx: keep one WARNING line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ValidationError):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg = "invalid request on %s [%s] (answered with a 4xx)"
            record.exc_info, record.exc_text = None, None
        return True


def _route(endpoint: Endpoint) -> Any:
    """A BentoML API for one endpoint of the table: the schema BentoML validates the body with,
    the handler, the route; its docstring is the OpenAPI description."""

    def api(self: Any, request: Any, /) -> Any:
        return _answer(lambda r: endpoint.call(self.parts, r), request)

    api.__name__ = api.__qualname__ = endpoint.name
    api.__doc__ = endpoint.doc
    api.__annotations__ = {"request": endpoint.request, "return": endpoint.response}
    return bentoml.api(route=endpoint.route)(api)


class CCSClip:
    """Zero-shot classification, retrieval and embeddings with per-request pruning profiles."""

    def __init__(self) -> None:
        worker = bentoml.server_context.worker_index
        self.parts: ServiceParts = build_parts(
            settings, transport="http", worker=worker, metrics=get_metrics()
        )  # a bad bundle or gallery store fails here
        self.parts.start()
        set_parts(self.parts)
        logging.getLogger("bentoml._internal.server.http_app").addFilter(_QuietValidationErrors())
        log.info("ccsclip serving %r", self.parts.core.engine)

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        self.parts.stop()
        set_parts(None)

    @bentoml.api(
        route="/v1/embed_images",
        batchable=http_batching(settings.http_batching),  # per execution provider (batching.py)
        max_batch_size=settings.batch_max_size,
        max_latency_ms=settings.batch_max_latency_ms,
    )
    def embed_images(self, items: ImageItems, /) -> list[Embedding]:
        """Image embeddings; the body is a list of {image, profile?} items (batched)."""
        return self.parts.core.embed_items(items)


# every other endpoint of the table, as it stands (embed_images above: a batched list body)
for _endpoint in ENDPOINTS:
    if not _endpoint.batched:
        setattr(CCSClip, _endpoint.name, _route(_endpoint))

CCSClip = bentoml.service(
    name="ccsclip",
    workers=settings.http_workers,
    threads=settings.http_threads,
    traffic={"timeout": 120},
    ssl=bentoml_ssl(settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file),
    # BentoML 1.4.40 keeps every request's OpenTelemetry context alive (about 4.7 KB per request
    # in a hello-world service, so a worker grows without bound): no tracing unless asked for.
    tracing={} if settings.http_tracing else {"excluded_urls": ".*"},
)(CCSClip)


def _cache_root_schemas(api: Any) -> None:
    """BentoML 1.4.40 rebuilds the JSON schema of a list-typed (root) input and output on every
    request, only to read its "type" (about 1 ms each, half the cost of /v1/embed_images):
    answer the argument-less call from a cache. OpenAPI generation passes arguments and still
    gets a fresh schema."""
    for spec in (api.input_spec, api.output_spec):
        original = spec.model_json_schema
        cached = functools.cache(original)

        def schema(
            cls: Any, *args: Any, _original: Any = original, _cached: Any = cached, **kw: Any
        ):
            return _original(*args, **kw) if args or kw else dict(_cached())

        spec.model_json_schema = classmethod(schema)


_cache_root_schemas(CCSClip.apis["embed_images"])
# The gate (keys, shedding) is added first, so it is the outer one: refusals skip the edge.
CCSClip.add_asgi_middleware(GateMiddleware, settings=settings, observe=observe_http_refusal)
CCSClip.add_asgi_middleware(EdgeMiddleware)
