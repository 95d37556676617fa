"""The gRPC transport: `ccsclip serve-grpc` (BentoML 1.4 cannot serve gRPC for new-style services).

The same served parts (parts.py), endpoint table (endpoints.py) and pydantic schemas as the HTTP
service: each RPC turns its proto message into the schema's dict (the endpoint's `proto_in`; the
`x-ccsclip-profile` metadata key fills missing profiles, as the HTTP header does), validates it,
runs the endpoint's call and converts the response model back (`proto_out`). Errors map to
INVALID_ARGUMENT / NOT_FOUND / RESOURCE_EXHAUSTED / ALREADY_EXISTS / FAILED_PRECONDITION /
UNAVAILABLE with a JSON details
string naming the field; a message that does not even parse is INVALID_ARGUMENT too (the request
deserialisers are ours).

Also served: grpc.health.v1.Health (SERVING once the engine is loaded, NOT_SERVING while shutting
down), server reflection, and a Prometheus endpoint on CCSCLIP_GRPC_METRICS_PORT. The server is
one process, so its metrics live in memory: `ccsclip serve-grpc` drops PROMETHEUS_MULTIPROC_DIR
(set in the shared ConfigMap for BentoML) before prometheus_client is imported. SIGTERM (and
SIGINT) stop accepting calls and give in-flight ones CCSCLIP_GRPC_GRACE_S to finish.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ccsclip.errors import CcsclipError
from ccsclip.service.core import (
    NO_PROFILE,
    PROFILE_HEADER,
    ServiceError,
    apply_header_profile,
    engine_error,
    validate,
)
from ccsclip.service.endpoints import BY_RPC, ENDPOINTS, Endpoint
from ccsclip.service.gate import GateInterceptor, start_metrics_server
from ccsclip.service.metrics import get_metrics
from ccsclip.service.parts import ServiceParts, build_parts
from ccsclip.service.settings import ServiceSettings, get_settings
from ccsclip.service.tls import credentials_of, health_only_server
from ccsclip.v1 import ccsclip_pb2 as pb

log = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["CCSClip"].full_name
STATUS = {
    "invalid": grpc.StatusCode.INVALID_ARGUMENT,
    "not_found": grpc.StatusCode.NOT_FOUND,
    "too_large": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "conflict": grpc.StatusCode.ALREADY_EXISTS,
    "read_only": grpc.StatusCode.FAILED_PRECONDITION,
    "other_profile": grpc.StatusCode.FAILED_PRECONDITION,
    "unavailable": grpc.StatusCode.UNAVAILABLE,
}


# --------------------------------------------------------------------------- the servicer


class _Refused:
    """What our deserialiser returns for a message it will not parse (too big, or corrupt)."""

    def __init__(self, error: ServiceError) -> None:
        self.error = error


def _deserializer(cls: Any, limit: int) -> Callable[[bytes], Any]:
    """Parse a request; refusals become JSON errors in the handler instead of grpc-core's."""

    def parse(data: bytes) -> Any:
        if len(data) > limit:
            return _Refused(
                ServiceError(
                    "too_large",
                    None,
                    f"the request is {len(data)} bytes; the limit is {limit} "
                    "(CCSCLIP_MAX_REQUEST_BYTES)",
                )
            )
        try:
            return cls.FromString(data)
        except (DecodeError, ValueError) as exc:
            return _Refused(
                ServiceError(
                    "invalid", None, f"the request is not a valid {cls.DESCRIPTOR.full_name}: {exc}"
                )
            )

    return parse


class Servicer:
    """The RPC handlers, one per endpoint of endpoints.py: proto -> dict (+ metadata profile)
    -> schema -> the endpoint's call -> proto."""

    def __init__(self, parts: ServiceParts) -> None:
        self.parts = parts
        self.metrics = parts.core.metrics
        self.limit = parts.settings.max_request_bytes

    def handler(self) -> grpc.GenericRpcHandler:
        handlers = {}
        methods = pb.DESCRIPTOR.services_by_name["CCSClip"].methods_by_name
        for endpoint in ENDPOINTS:
            request_cls = getattr(pb, methods[endpoint.rpc].input_type.name)
            handlers[endpoint.rpc] = grpc.unary_unary_rpc_method_handler(
                self._rpc(endpoint),
                request_deserializer=_deserializer(request_cls, self.limit),
                response_serializer=lambda r: r.SerializeToString(),
            )
        return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)

    def _rpc(self, endpoint: Endpoint) -> Any:
        def rpc(request: Any, context: grpc.ServicerContext) -> Any:
            started = time.perf_counter()
            label, code = NO_PROFILE, grpc.StatusCode.OK
            try:
                if isinstance(request, _Refused):
                    raise request.error
                header = dict(context.invocation_metadata()).get(PROFILE_HEADER)
                payload = endpoint.proto_in(request)
                if endpoint.takes_profile:
                    payload = apply_header_profile(payload, header)
                label = endpoint.profile_label(self.parts, payload)
                if isinstance(payload, list):  # a batch's items carry their own profiles
                    payload = {"items": payload}
                model = validate(endpoint.request, payload)
                try:
                    return endpoint.proto_out(endpoint.call(self.parts, model))
                except CcsclipError as exc:
                    raise engine_error(exc) from None
            except ServiceError as exc:
                code = STATUS[exc.kind]
                if exc.retry_after_s:
                    context.set_trailing_metadata((("retry-after", str(exc.retry_after_s)),))
                context.abort(code, exc.info().model_dump_json())
            except Exception:
                code = grpc.StatusCode.INTERNAL
                log.exception("%s failed", endpoint.name)
                context.abort(code, '{"error": "internal error; see the server log"}')
            finally:
                elapsed = time.perf_counter() - started
                self.metrics.observe_request(endpoint.name, label, "grpc", code.name, elapsed)

        return rpc


# --------------------------------------------------------------------------- the server


def _metrics_registry() -> Any:
    """The default registry, or a multiprocess one if prometheus_client was started that way."""
    from prometheus_client import REGISTRY, CollectorRegistry, values
    from prometheus_client.multiprocess import MultiProcessCollector

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR") and "Mmaped" in values.ValueClass.__name__:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return registry
    return REGISTRY


def _refusal_counter(servicer: Servicer) -> Any:
    """Count refused calls (keys, shedding) by endpoint like answered ones."""

    def observe(method: str, code: str) -> None:
        entry = BY_RPC.get(method.rpartition("/")[2])
        endpoint = entry.name if entry else "other"
        servicer.metrics.requests.labels(endpoint, NO_PROFILE, "grpc", code).inc()  # not timed

    return observe


class GrpcServer:
    """The gRPC server, its health service, probes and metrics endpoint, started together."""

    def __init__(self, settings: ServiceSettings, parts: ServiceParts | None = None) -> None:
        self.settings = settings
        # a bad bundle or gallery store fails here
        self.parts = parts or build_parts(settings, transport="grpc", metrics=get_metrics())
        self.health = health.HealthServicer()
        servicer = Servicer(self.parts)
        self.server = grpc.server(
            futures.ThreadPoolExecutor(settings.grpc_workers, thread_name_prefix="ccsclip-grpc"),
            interceptors=[GateInterceptor(settings, _refusal_counter(servicer))],
            options=[
                # grpc-core refuses beyond twice the limit; our deserialiser refuses (with a
                # JSON error naming the limit) between the limit and that
                ("grpc.max_receive_message_length", 2 * settings.max_request_bytes),
                ("grpc.so_reuseport", 0),
            ],
        )
        self.server.add_generic_rpc_handlers((servicer.handler(),))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server
        )
        self.port = 0
        self.metrics_port = 0
        self.health_port = 0
        self._metrics_http: Any = None
        self._health_server: Any = None

    def start(self) -> None:
        address = f"{self.settings.grpc_host}:{self.settings.grpc_port}"
        self.port = self._listen(address)
        self._metrics_http = start_metrics_server(self.settings, _metrics_registry())
        self.metrics_port = self._metrics_http.server_address[1]
        self.server.start()
        if self.settings.grpc_health_port and credentials_of(self.settings) is not None:
            self._health_server, self.health_port = health_only_server(
                self.health, f"{self.settings.grpc_host}:{self.settings.grpc_health_port}"
            )
        for name in ("", SERVICE_NAME):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.parts.start()
        log.info(
            "ccsclip gRPC on port %d (metrics on %d): %r",
            self.port,
            self.metrics_port,
            self.parts.core.engine,
        )

    def _listen(self, address: str) -> int:
        """Bind the API port: TLS (and mTLS) per the settings, else plaintext."""
        credentials = credentials_of(self.settings)
        if credentials is None:
            port = self.server.add_insecure_port(address)
        else:
            port = self.server.add_secure_port(address, credentials)
        if not port:
            raise OSError(f"cannot listen on {address}")
        return port

    def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING first (so load balancers drain), then finish in-flight calls."""
        self.health.enter_graceful_shutdown()
        self.server.stop(self.settings.grpc_grace_s if grace is None else grace).wait()
        if self._health_server is not None:
            self._health_server.stop(None)
        self.parts.stop()
        if self._metrics_http is not None:
            self._metrics_http.shutdown()


def serve(settings: ServiceSettings | None = None) -> None:
    """Run until SIGTERM or SIGINT, then stop gracefully."""
    from prometheus_client import disable_created_metrics

    disable_created_metrics()  # `_created` series double the exposition for nothing here
    server = GrpcServer(settings or get_settings())
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    print(f"ccsclip gRPC listening on {server.port}, metrics on {server.metrics_port}", flush=True)
    stop.wait()
    log.info("stopping: finishing in-flight calls")
    server.stop()
