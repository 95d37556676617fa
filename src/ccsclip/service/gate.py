"""The gate in front of both transports: access control (auth.py), then load shedding (limits.py).

HTTP: an ASGI middleware outside the edge middleware, so a refused call is answered before its
body is read or routed (401 with `www-authenticate: Bearer`, 403, or 429 with `retry-after`).
gRPC: a server interceptor (UNAUTHENTICATED, PERMISSION_DENIED, RESOURCE_EXHAUSTED). Error bodies
and details are JSON like every other refusal (`error`, `kind`, `field`) and never hold the key.
Open calls (health, readiness, reflection, metrics unless configured) are neither checked nor
counted.
"""

from __future__ import annotations

import json
import socketserver
import ssl
import threading
from collections.abc import Callable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import grpc

from ccsclip.service.auth import Denied, KeyRing, Scope, authorize, scope_for
from ccsclip.service.limits import RETRY_AFTER_S, ConcurrencyLimit
from ccsclip.service.settings import ServiceSettings

KIND = {401: "unauthenticated", 403: "permission_denied", 429: "overloaded"}
GRPC_CODE = {
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def refusal(status: int, message: str) -> bytes:
    return json.dumps({"error": message, "kind": KIND[status], "field": None}).encode()


def key_ring(settings: ServiceSettings) -> KeyRing:
    secret = settings.api_keys.get_secret_value() if settings.api_keys else None
    return KeyRing.load(settings.api_keys_file, secret)


# --------------------------------------------------------------------------- HTTP


class GateMiddleware:
    """ASGI: authorize by path and bearer key, then admit at most `http_max_concurrency` calls."""

    def __init__(
        self, app: Callable[..., Any], settings: ServiceSettings, observe: Callable | None = None
    ) -> None:
        self.app = app
        self.ring = key_ring(settings)
        self.metrics_require_key = settings.metrics_require_key
        self.limit = ConcurrencyLimit(settings.http_max_concurrency)
        self.observe = observe  # (path, status) for refused calls

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):  # lifespan
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        needed = scope_for(path, metrics_require_key=self.metrics_require_key)
        headers = dict(scope.get("headers") or [])
        try:
            authorize(self.ring, needed, _latin1(headers.get(b"authorization")))
        except Denied as exc:
            if scope["type"] == "websocket":  # no route uses one; refused like any call
                await send({"type": "websocket.close", "code": 1008})
                return
            extra = [(b"www-authenticate", b"Bearer")] if exc.status == 401 else []
            await self._refuse(send, path, exc.status, exc.message, extra)
            return
        if needed is Scope.OPEN or path == "/metrics" or scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        if not self.limit.try_acquire():
            extra = [(b"retry-after", str(RETRY_AFTER_S).encode())]
            await self._refuse(send, path, 429, self.limit.message(), extra)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.limit.release()

    async def _refuse(self, send: Any, path: str, status: int, message: str, extra: list) -> None:
        body = refusal(status, message)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *extra,
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
        if self.observe is not None:
            self.observe(path, str(status))


def _latin1(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None


# --------------------------------------------------------------------------- gRPC


def _refusing_handler(status: int, message: str) -> grpc.RpcMethodHandler:
    def refuse(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(GRPC_CODE[status], refusal(status, message).decode())

    return grpc.unary_unary_rpc_method_handler(refuse)


class GateInterceptor(grpc.ServerInterceptor):
    """Authorize by method and `authorization` metadata; shed past `grpc_max_concurrency`.

    The count is taken inside the handler (on a pool thread), so a call cancelled while queued
    never holds a slot; with the limit below the pool size a thread is always left for health
    checks and for refusing the surplus at once."""

    def __init__(self, settings: ServiceSettings, observe: Callable | None = None) -> None:
        self.ring = key_ring(settings)
        self.limit = ConcurrencyLimit(settings.grpc_max_concurrency)
        self.observe = observe  # (method, code name) for refused calls

    def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        method = details.method or ""
        needed = scope_for(method)
        metadata = {k.lower(): v for k, v in (details.invocation_metadata or ())}
        token = metadata.get("authorization")
        try:
            authorize(self.ring, needed, token if isinstance(token, str) else None)
        except Denied as exc:
            self._observe(method, GRPC_CODE[exc.status])
            return _refusing_handler(exc.status, exc.message)
        handler = continuation(details)
        if needed is Scope.OPEN or handler is None or handler.unary_unary is None:
            return handler
        return handler._replace(unary_unary=self._limited(method, handler.unary_unary))

    def _limited(self, method: str, behaviour: Callable) -> Callable:
        def call(request: Any, context: grpc.ServicerContext) -> Any:
            if not self.limit.try_acquire():
                self._observe(method, grpc.StatusCode.RESOURCE_EXHAUSTED)
                context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED, refusal(429, self.limit.message()).decode()
                )
            try:
                return behaviour(request, context)
            finally:
                self.limit.release()

        return call

    def _observe(self, method: str, code: grpc.StatusCode) -> None:
        if self.observe is not None:
            self.observe(method, code.name)


# --------------------------------------------------------------------------- metrics endpoint


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass


def start_metrics_server(settings: ServiceSettings, registry: Any) -> WSGIServer:
    """The gRPC process's Prometheus endpoint with the gate's key rule and the TLS settings."""
    from prometheus_client import make_wsgi_app

    ring, metrics_app = key_ring(settings), make_wsgi_app(registry)
    needed = scope_for("/metrics", metrics_require_key=settings.metrics_require_key)

    def app(environ: dict, start_response: Callable) -> Any:
        try:
            authorize(ring, needed, environ.get("HTTP_AUTHORIZATION"))
        except Denied as exc:
            start_response(
                f"{exc.status} {KIND[exc.status]}", [("content-type", "application/json")]
            )
            return [refusal(exc.status, exc.message)]
        return metrics_app(environ, start_response)

    server = make_server("0.0.0.0", settings.grpc_metrics_port, app, _Server, handler_class=_Quiet)
    if settings.tls_cert_file is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(settings.tls_cert_file), str(settings.tls_key_file))
        if settings.tls_client_ca_file is not None:
            context.load_verify_locations(str(settings.tls_client_ca_file))
            context.verify_mode = ssl.CERT_REQUIRED
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True, name="ccsclip-metrics").start()
    return server


def observe_http_refusal(path: str, status: str) -> None:
    """Count a refused HTTP call like any other (endpoint `other` for unknown paths)."""
    from ccsclip.service.core import NO_PROFILE
    from ccsclip.service.endpoints import BY_ROUTE
    from ccsclip.service.metrics import get_metrics

    endpoint = BY_ROUTE[path].name if path in BY_ROUTE else "other"
    # counted, not timed: a refusal's microseconds would drag the latency quantiles down
    get_metrics().requests.labels(endpoint, NO_PROFILE, "http", status).inc()
