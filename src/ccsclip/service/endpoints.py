"""The service's endpoints, each once: name, HTTP route, RPC, schemas, scope, profile, handler.

Everything that lists endpoints derives from this table: the BentoML routes (`http.py`), the gRPC
servicer (`grpc_server.py`, with the conversions of `proto.py`), access control's scope table
(`auth.py`), and the edge's metric labels and profile-header handling (`edge.py`). An endpoint
added here is served over both transports, protected (deny by default: `scope="write"` unless
it only reads), and counted.

`call` takes the core and the validated request: galleries and probes are reached through the
attributes the serving process attaches to the core (`core.galleries`, `core.probes`), so this
module (like the core) imports neither.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ccsclip.service import gallery_schemas as g
from ccsclip.service import schemas as s


@dataclass(frozen=True)
class Endpoint:
    name: str  # metrics label and handler name
    route: str  # HTTP POST path
    rpc: str  # gRPC method of ccsclip.v1.CCSClip
    request: Any  # the pydantic request model (validated by both transports)
    response: Any
    scope: Literal["read", "write"]  # what an API key must allow (auth.py)
    takes_profile: bool  # whether the x-ccsclip-profile header fills the request's `profile`
    call: Callable[[Any, Any], Any]  # (core, request) -> response model
    doc: str


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "zero_shot",
        "/v1/zero_shot",
        "ZeroShot",
        s.ZeroShotRequest,
        s.ZeroShotResponse,
        "read",
        True,
        lambda core, r: core.zero_shot(r),
        "Classify images (base64) against labels; top_k labels with probabilities per image.",
    ),
    Endpoint(
        "retrieve",
        "/v1/retrieve",
        "Retrieve",
        s.RetrieveRequest,
        s.RetrieveResponse,
        "read",
        True,
        lambda core, r: core.galleries.retrieve(r),
        "Nearest items of a gallery to a text or image: /v1/galleries/search's hits, no more.",
    ),
    Endpoint(
        "embed_images",
        "/v1/embed_images",
        "EmbedImages",
        s.EmbedImagesRequest,
        s.EmbedImagesResponse,
        "read",
        True,
        lambda core, r: core.embed_images(r),
        "Image embeddings; the body is a list of {image, profile?} items (batched).",
    ),
    Endpoint(
        "embed_texts",
        "/v1/embed_texts",
        "EmbedTexts",
        s.EmbedTextsRequest,
        s.EmbedTextsResponse,
        "read",
        True,
        lambda core, r: core.embed_texts(r),
        "Text embeddings (the text tower is shared by every profile).",
    ),
    Endpoint(
        "profiles",
        "/v1/profiles",
        "ListProfiles",
        s.EmptyRequest,
        s.ProfilesResponse,
        "read",
        False,
        lambda core, r: core.list_profiles(),
        "The bundle's profiles with their metadata, the galleries and the probes.",
    ),
    Endpoint(
        "probes",
        "/v1/probes",
        "GetProbeResults",
        s.EmptyRequest,
        s.ProbesResponse,
        "read",
        False,
        lambda core, r: core.probe_results(),
        "The latest background probe results (accuracy, MaxSkew@k) per profile and probe.",
    ),
    Endpoint(
        "galleries_create",
        "/v1/galleries/create",
        "CreateGallery",
        g.GalleryCreateRequest,
        g.GalleryInfo,
        "write",
        True,
        lambda core, r: core.galleries.create(r),
        "Create a gallery bound to a profile, with a backend (exact, hnsw, milvus).",
    ),
    Endpoint(
        "galleries_upsert",
        "/v1/galleries/upsert",
        "UpsertItems",
        g.GalleryUpsertRequest,
        g.GalleryWriteResponse,
        "write",
        True,
        lambda core, r: core.galleries.upsert(r),
        "Add or replace items (image, id, flat metadata); durable when answered.",
    ),
    Endpoint(
        "galleries_delete",
        "/v1/galleries/delete",
        "DeleteItems",
        g.GalleryDeleteRequest,
        g.GalleryWriteResponse,
        "write",
        False,
        lambda core, r: core.galleries.delete(r),
        "Remove items by id (unknown ids are ignored; `changed` counts the removed ones).",
    ),
    Endpoint(
        "galleries_drop",
        "/v1/galleries/drop",
        "DropGallery",
        g.GalleryNameRequest,
        g.GalleryDropResponse,
        "write",
        False,
        lambda core, r: core.galleries.drop(r),
        "Delete a gallery and all its items.",
    ),
    Endpoint(
        "galleries_info",
        "/v1/galleries/info",
        "GalleryInfo",
        g.GalleryNameRequest,
        g.GalleryInfo,
        "read",
        False,
        lambda core, r: core.galleries.info(r),
        "Count, profile, backend and last write of a gallery.",
    ),
    Endpoint(
        "galleries_list",
        "/v1/galleries/list",
        "ListGalleries",
        g.GalleryListRequest,
        g.GalleryListResponse,
        "read",
        False,
        lambda core, r: core.galleries.list(r),
        "Every gallery, with its info.",
    ),
    Endpoint(
        "galleries_search",
        "/v1/galleries/search",
        "SearchGallery",
        g.GallerySearchRequest,
        g.GallerySearchResponse,
        "read",
        True,
        lambda core, r: core.galleries.search(r),
        "Nearest items to a text or image, with k, an optional filter and search effort.",
    ),
)

BY_NAME = {e.name: e for e in ENDPOINTS}
BY_ROUTE = {e.route: e for e in ENDPOINTS}
BY_RPC = {e.rpc: e for e in ENDPOINTS}
WITHOUT_PROFILE = frozenset(e.name for e in ENDPOINTS if not e.takes_profile)
