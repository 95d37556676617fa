"""The service's endpoints, each once: name, HTTP route, RPC, schemas, scope, profile source,
handler and proto conversions.

Everything that lists endpoints derives from this table: the BentoML routes (`http.py`), the
OpenAPI document (`openapi.py`), the gRPC servicer (`grpc_server.py`, with the conversions of
`proto.py` named here), access control's scope table (`auth.py`), and the edge's metric labels
and profile-header handling (`edge.py`). An endpoint added here is served over both transports,
documented, protected (deny by default: `scope="write"` unless it only reads), and counted.

`call` takes the served parts (`parts.py`: core, galleries, probes) and the validated request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from ccsclip.service import gallery_schemas as g
from ccsclip.service import proto as p
from ccsclip.service import schemas as s
from ccsclip.service.core import NO_PROFILE
from ccsclip.service.parts import ServiceParts

# Where a request's serving profile (its metrics label) is found:
# "request": its `profile` field, else the x-ccsclip-profile header, else the default;
# "gallery": the profile of the gallery it names (the header still fills `profile`);
# "none": nowhere (the header is ignored, the label is `none`).
ProfileSource = Literal["request", "gallery", "none"]


@dataclass(frozen=True, kw_only=True)
class Endpoint:
    name: str  # metrics label and handler name
    route: str  # HTTP POST path
    rpc: str  # gRPC method of ccsclip.v1.CCSClip
    request: type[BaseModel]  # the pydantic request model (validated by both transports)
    response: type[BaseModel]
    scope: Literal["read", "write"]  # what an API key must allow (auth.py)
    profile: ProfileSource
    call: Callable[[ServiceParts, Any], BaseModel]  # (parts, request) -> response model
    proto_in: Callable[[Any], Any]  # request message -> the payload `request` validates
    proto_out: Callable[[Any], Any]  # response model -> response message
    doc: str
    errors: tuple[int, ...] = ()  # statuses beside 400/413 this endpoint answers (OpenAPI)
    # Over HTTP the body is the request model's one list field itself, and so is the answer
    # (the response model's): BentoML batches such a route (adaptive batching, http.py).
    batched: bool = False

    @property
    def takes_profile(self) -> bool:
        """Whether the x-ccsclip-profile header fills the request's `profile`."""
        return self.profile != "none"

    def profile_label(self, parts: ServiceParts, payload: Any) -> str:
        """The profile a payload will be served by, for metrics labels; only served names
        (never opens a gallery for a label)."""
        if isinstance(payload, list):
            names = {self.profile_label(parts, item) for item in payload}
            return names.pop() if len(names) == 1 else ("mixed" if names else NO_PROFILE)
        if not isinstance(payload, dict) or self.profile == "none":
            return NO_PROFILE
        if self.profile == "gallery":
            return parts.galleries.profile_label(payload) or NO_PROFILE
        return parts.core.served_label(payload.get("profile"))


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        name="zero_shot",
        route="/v1/zero_shot",
        rpc="ZeroShot",
        request=s.ZeroShotRequest,
        response=s.ZeroShotResponse,
        scope="read",
        profile="request",
        call=lambda parts, r: parts.core.zero_shot(r),
        proto_in=p.zero_shot_in,
        proto_out=p.zero_shot_out,
        doc="Classify images (base64) against labels; top_k labels with probabilities per image.",
        errors=(404,),
    ),
    Endpoint(
        name="retrieve",
        route="/v1/retrieve",
        rpc="Retrieve",
        request=s.RetrieveRequest,
        response=s.RetrieveResponse,
        scope="read",
        profile="gallery",
        call=lambda parts, r: parts.galleries.retrieve(r),
        proto_in=p.retrieve_in,
        proto_out=p.retrieve_out,
        doc="Nearest items of a gallery to a text or image: /v1/galleries/search's hits, no more.",
        errors=(404, 409, 503),
    ),
    Endpoint(
        name="embed_images",
        route="/v1/embed_images",
        rpc="EmbedImages",
        request=s.EmbedImagesRequest,
        response=s.EmbedImagesResponse,
        scope="read",
        profile="request",
        call=lambda parts, r: parts.core.embed_images(r),
        proto_in=p.embed_images_in,
        proto_out=p.embed_images_out,
        doc="Image embeddings; the body is a list of {image, profile?} items (batched).",
        errors=(404,),
        batched=True,
    ),
    Endpoint(
        name="embed_texts",
        route="/v1/embed_texts",
        rpc="EmbedTexts",
        request=s.EmbedTextsRequest,
        response=s.EmbedTextsResponse,
        scope="read",
        profile="request",
        call=lambda parts, r: parts.core.embed_texts(r),
        proto_in=p.embed_texts_in,
        proto_out=p.embed_texts_out,
        doc="Text embeddings (the text tower is shared by every profile).",
        errors=(404,),
    ),
    Endpoint(
        name="profiles",
        route="/v1/profiles",
        rpc="ListProfiles",
        request=s.EmptyRequest,
        response=s.ProfilesResponse,
        scope="read",
        profile="none",
        call=lambda parts, r: parts.list_profiles(),
        proto_in=p.empty_in,
        proto_out=p.profiles_out,
        doc="The bundle's profiles with their metadata, the galleries and the probes.",
    ),
    Endpoint(
        name="probes",
        route="/v1/probes",
        rpc="GetProbeResults",
        request=s.EmptyRequest,
        response=s.ProbesResponse,
        scope="read",
        profile="none",
        call=lambda parts, r: parts.probe_results(),
        proto_in=p.empty_in,
        proto_out=p.probes_out,
        doc="The latest background probe results (accuracy, MaxSkew@k) per profile and probe.",
    ),
    Endpoint(
        name="galleries_create",
        route="/v1/galleries/create",
        rpc="CreateGallery",
        request=g.GalleryCreateRequest,
        response=g.GalleryInfo,
        scope="write",
        profile="gallery",
        call=lambda parts, r: parts.galleries.create(r),
        proto_in=p.create_in,
        proto_out=p.info_out,
        doc="Create a gallery bound to a profile, with a backend (exact, hnsw, milvus).",
        errors=(404, 409, 503),
    ),
    Endpoint(
        name="galleries_upsert",
        route="/v1/galleries/upsert",
        rpc="UpsertItems",
        request=g.GalleryUpsertRequest,
        response=g.GalleryWriteResponse,
        scope="write",
        profile="gallery",
        call=lambda parts, r: parts.galleries.upsert(r),
        proto_in=p.upsert_in,
        proto_out=p.write_out,
        doc="Add or replace items (image, id, flat metadata); durable when answered. Item ids "
        "must be unique within a request.",
        errors=(404, 409, 503),
    ),
    Endpoint(
        name="galleries_delete",
        route="/v1/galleries/delete",
        rpc="DeleteItems",
        request=g.GalleryDeleteRequest,
        response=g.GalleryWriteResponse,
        scope="write",
        profile="none",
        call=lambda parts, r: parts.galleries.delete(r),
        proto_in=p.delete_in,
        proto_out=p.write_out,
        doc="Remove items by id (unknown ids are ignored; `changed` counts the removed ones).",
        errors=(404, 409, 503),
    ),
    Endpoint(
        name="galleries_drop",
        route="/v1/galleries/drop",
        rpc="DropGallery",
        request=g.GalleryNameRequest,
        response=g.GalleryDropResponse,
        scope="write",
        profile="none",
        call=lambda parts, r: parts.galleries.drop(r),
        proto_in=p.name_in,
        proto_out=p.drop_out,
        doc="Delete a gallery and all its items.",
        errors=(404, 409, 503),
    ),
    Endpoint(
        name="galleries_info",
        route="/v1/galleries/info",
        rpc="GalleryInfo",
        request=g.GalleryNameRequest,
        response=g.GalleryInfo,
        scope="read",
        profile="none",
        call=lambda parts, r: parts.galleries.info(r),
        proto_in=p.name_in,
        proto_out=p.info_out,
        doc="Count, profile, backend and last write of a gallery.",
        errors=(404, 503),
    ),
    Endpoint(
        name="galleries_list",
        route="/v1/galleries/list",
        rpc="ListGalleries",
        request=g.GalleryListRequest,
        response=g.GalleryListResponse,
        scope="read",
        profile="none",
        call=lambda parts, r: parts.galleries.list(r),
        proto_in=p.empty_in,
        proto_out=p.list_out,
        doc="Every gallery, with its info.",
        errors=(503,),
    ),
    Endpoint(
        name="galleries_search",
        route="/v1/galleries/search",
        rpc="SearchGallery",
        request=g.GallerySearchRequest,
        response=g.GallerySearchResponse,
        scope="read",
        profile="gallery",
        call=lambda parts, r: parts.galleries.search(r),
        proto_in=p.search_in,
        proto_out=p.search_out,
        doc="Nearest items to a text or image, with k, an optional filter and search effort.",
        errors=(404, 409, 503),
    ),
)

BY_NAME = {e.name: e for e in ENDPOINTS}
BY_ROUTE = {e.route: e for e in ENDPOINTS}
BY_RPC = {e.rpc: e for e in ENDPOINTS}
