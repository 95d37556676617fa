"""The gRPC transport: `ccsclip serve-grpc` (BentoML 1.4 cannot serve gRPC for new-style services).

The same Core and pydantic schemas as the HTTP service: each RPC turns its proto message into the
schema's dict (the `x-ccsclip-profile` metadata key fills missing profiles, as the HTTP header
does), validates it, calls the Core and converts the response model back. Errors map to
INVALID_ARGUMENT / NOT_FOUND / RESOURCE_EXHAUSTED with a JSON details string naming the field;
a message that does not even parse is INVALID_ARGUMENT too (the request deserialisers are ours).

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
from ccsclip.service import schemas as s
from ccsclip.service.core import (
    NO_PROFILE,
    PROFILE_HEADER,
    WITHOUT_PROFILE,
    Core,
    ServiceError,
    apply_header_profile,
    validate,
)
from ccsclip.service.galleries_grpc import gallery_methods
from ccsclip.service.gate import GateInterceptor, start_metrics_server
from ccsclip.service.metrics import get_metrics
from ccsclip.service.probes import ProbeRunner, probe_options
from ccsclip.service.settings import ServiceSettings, get_settings
from ccsclip.service.tls import credentials_of, health_only_server
from ccsclip.v1 import ccsclip_pb2 as pb

log = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["CCSClip"].full_name
STATUS = {
    "invalid": grpc.StatusCode.INVALID_ARGUMENT,
    "not_found": grpc.StatusCode.NOT_FOUND,
    "too_large": grpc.StatusCode.RESOURCE_EXHAUSTED,
}


# --------------------------------------------------------------------------- conversions


def _opt(message: Any, name: str) -> dict[str, Any]:
    """{name: value} when a proto3 `optional` field is set, else {} (the schema default)."""
    return {name: getattr(message, name)} if message.HasField(name) else {}


def _model(ref: s.ModelRef) -> pb.ModelRef:
    return pb.ModelRef(
        name=ref.name, pretrained=ref.pretrained or "", weights_sha256=ref.weights_sha256
    )


def _embedding(e: s.Embedding) -> pb.Embedding:
    return pb.Embedding(profile=e.profile, model=_model(e.model), values=e.values)


def zero_shot_in(m: pb.ZeroShotRequest) -> dict[str, Any]:
    out: dict[str, Any] = {"images": list(m.images), "labels": list(m.labels)}
    if m.templates:
        out["templates"] = list(m.templates)
    return {**out, **_opt(m, "top_k"), **_opt(m, "profile")}


def zero_shot_out(r: s.ZeroShotResponse) -> pb.ZeroShotResponse:
    return pb.ZeroShotResponse(
        profile=r.profile,
        model=_model(r.model),
        results=[
            pb.Classification(top=[pb.LabelScore(label=x.label, score=x.score) for x in c.top])
            for c in r.results
        ],
    )


def retrieve_in(m: pb.RetrieveRequest) -> dict[str, Any]:
    out: dict[str, Any] = {"gallery": m.gallery}
    query = m.WhichOneof("query")
    if query is not None:
        out[query] = getattr(m, query)
    return {**out, **_opt(m, "k"), **_opt(m, "profile")}


def retrieve_out(r: s.RetrieveResponse) -> pb.RetrieveResponse:
    return pb.RetrieveResponse(
        profile=r.profile,
        model=_model(r.model),
        gallery=r.gallery,
        query=r.query,
        hits=[pb.GalleryHit(id=h.id, score=h.score) for h in r.hits],
    )


def embed_images_in(m: pb.EmbedImagesRequest) -> list[dict[str, Any]]:
    return [{"image": item.image, **_opt(item, "profile")} for item in m.items]


def embed_images_out(r: s.EmbedImagesResponse) -> pb.EmbedImagesResponse:
    return pb.EmbedImagesResponse(embeddings=[_embedding(e) for e in r.embeddings])


def embed_texts_in(m: pb.EmbedTextsRequest) -> dict[str, Any]:
    return {"texts": list(m.texts), **_opt(m, "profile")}


def embed_texts_out(r: s.EmbedTextsResponse) -> pb.EmbedTextsResponse:
    return pb.EmbedTextsResponse(
        profile=r.profile, model=_model(r.model), embeddings=[_embedding(e) for e in r.embeddings]
    )


def profiles_out(r: s.ProfilesResponse) -> pb.ListProfilesResponse:
    profiles = []
    for p in r.profiles:
        data = p.model_dump()
        profiles.append(
            pb.ProfileInfo(
                **{k: ("" if v is None else v) for k, v in data.items() if k != "accuracy_delta"}
            )
        )
        if p.accuracy_delta is not None:
            profiles[-1].accuracy_delta = p.accuracy_delta
    return pb.ListProfilesResponse(
        model=_model(r.model),
        default_profile=r.default_profile,
        profiles=profiles,
        galleries=r.galleries,
        probes=r.probes,
    )


def probes_out(r: s.ProbesResponse) -> pb.GetProbeResultsResponse:
    results = []
    for p in r.results:
        message = pb.ProbeResult(
            profile=p.profile,
            probe=p.probe,
            kind=p.kind,
            ok=p.ok,
            error=p.error or "",
            finished_at=p.finished_at,
            duration_s=p.duration_s,
            n_images=p.n_images,
            maxskew=[pb.MaxSkew(**m.model_dump()) for m in p.maxskew],
            last_success_at=p.last_success_at or 0.0,
        )
        if p.accuracy is not None:
            message.accuracy = p.accuracy
        if p.chance is not None:
            message.chance = p.chance
        results.append(message)
    return pb.GetProbeResultsResponse(results=results, interval_s=r.interval_s, runs=r.runs)


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
    """The RPC handlers: proto -> dict (+ metadata profile) -> schema -> Core -> proto."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.metrics = core.metrics
        self.limit = core.settings.max_request_bytes

        def embed(items: list[dict[str, Any]]) -> s.EmbedImagesResponse:
            # the payload is the item list (so the metadata profile fills each item)
            return core.embed_images(validate(s.EmbedImagesRequest, {"items": items}))

        # method: (endpoint, request class, to dict, schema (None: done in call), call, to proto)
        self.methods: dict[str, tuple[str, Any, Any, Any, Any, Any]] = {
            "ZeroShot": (
                "zero_shot",
                pb.ZeroShotRequest,
                zero_shot_in,
                s.ZeroShotRequest,
                core.zero_shot,
                zero_shot_out,
            ),
            "Retrieve": (
                "retrieve",
                pb.RetrieveRequest,
                retrieve_in,
                s.RetrieveRequest,
                core.retrieve,
                retrieve_out,
            ),
            "EmbedImages": (
                "embed_images",
                pb.EmbedImagesRequest,
                embed_images_in,
                None,
                embed,
                embed_images_out,
            ),
            "EmbedTexts": (
                "embed_texts",
                pb.EmbedTextsRequest,
                embed_texts_in,
                s.EmbedTextsRequest,
                core.embed_texts,
                embed_texts_out,
            ),
            "ListProfiles": (
                "profiles",
                pb.ListProfilesRequest,
                lambda m: {},
                s.EmptyRequest,
                lambda _: core.list_profiles(),
                profiles_out,
            ),
            "GetProbeResults": (
                "probes",
                pb.GetProbeResultsRequest,
                lambda m: {},
                s.EmptyRequest,
                lambda _: core.probe_results(),
                probes_out,
            ),
            **gallery_methods(core),
        }

    def handler(self) -> grpc.GenericRpcHandler:
        handlers = {}
        for method, (
            endpoint,
            request_cls,
            to_dict,
            schema,
            call,
            to_proto,
        ) in self.methods.items():
            handlers[method] = grpc.unary_unary_rpc_method_handler(
                self._rpc(endpoint, to_dict, schema, call, to_proto),
                request_deserializer=_deserializer(request_cls, self.limit),
                response_serializer=lambda r: r.SerializeToString(),
            )
        return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)

    def _rpc(self, endpoint: str, to_dict: Any, schema: Any, call: Any, to_proto: Any) -> Any:
        def rpc(request: Any, context: grpc.ServicerContext) -> Any:
            started = time.perf_counter()
            label, code = NO_PROFILE, grpc.StatusCode.OK
            try:
                if isinstance(request, _Refused):
                    raise request.error
                header = dict(context.invocation_metadata()).get(PROFILE_HEADER)
                payload = to_dict(request)
                if endpoint not in WITHOUT_PROFILE:
                    payload = apply_header_profile(payload, header)
                label = self.core.profile_label(endpoint, payload)
                model = payload if schema is None else validate(schema, payload)
                return to_proto(call(model))
            except ServiceError as exc:
                code = STATUS[exc.kind]
                context.abort(code, exc.info().model_dump_json())
            except CcsclipError as exc:
                code = grpc.StatusCode.INVALID_ARGUMENT
                error = ServiceError("invalid", None, str(exc))
                context.abort(code, error.info().model_dump_json())
            except Exception:
                code = grpc.StatusCode.INTERNAL
                log.exception("%s failed", endpoint)
                context.abort(code, '{"error": "internal error; see the server log"}')
            finally:
                elapsed = time.perf_counter() - started
                self.metrics.observe_request(endpoint, label, "grpc", code.name, elapsed)

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
        entry = servicer.methods.get(method.rpartition("/")[2])
        endpoint = entry[0] if entry else "other"
        servicer.metrics.requests.labels(endpoint, NO_PROFILE, "grpc", code).inc()  # not timed

    return observe


class GrpcServer:
    """The gRPC server, its health service, probes and metrics endpoint, started together."""

    def __init__(self, settings: ServiceSettings, core: Core | None = None) -> None:
        self.settings = settings
        self.core = core or Core.load(settings, get_metrics())
        if self.core.probes is None:
            self.core.probes = ProbeRunner(
                self.core.engine,
                settings.probe_dirs(),
                self.core.metrics,
                **probe_options(settings),  # issue 19: probe cache and canary
            )
        self.health = health.HealthServicer()
        servicer = Servicer(self.core)
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
        log.info("live galleries: %s", self.core.live.warm())  # a bad store fails here
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
        self.core.probes.start()  # type: ignore[union-attr]
        log.info(
            "ccsclip gRPC on port %d (metrics on %d): %r",
            self.port,
            self.metrics_port,
            self.core.engine,
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
        if self.core.probes is not None:
            self.core.probes.stop()
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
