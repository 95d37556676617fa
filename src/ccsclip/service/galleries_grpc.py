"""The gallery RPCs (CreateGallery ... SearchGallery): proto <-> the gallery schemas' dicts.

The servicer in grpc_server.py runs them like every other RPC (validate with the same pydantic
schemas, call the same GalleryService, map the same errors). Metadata, filters and params are
`google.protobuf.Struct`s, whose numbers are doubles: an integral number is turned back into an
integer, so `{"n": 3}` means the same over both transports.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.struct_pb2 import Struct, Value

from ccsclip.service import gallery_schemas as g
from ccsclip.v1 import ccsclip_pb2 as pb


def plain(value: Value) -> Any:
    """A protobuf Value as plain Python, without json_format (which refuses NaN and ±Infinity
    before any validation could name the field): the schemas refuse non-finite numbers with the
    field named, as they do over HTTP. An integral number becomes an int."""
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        number = value.number_value
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    if kind == "struct_value":
        return {k: plain(v) for k, v in value.struct_value.fields.items()}
    if kind == "list_value":
        return [plain(v) for v in value.list_value.values]
    if kind in ("string_value", "bool_value"):
        return getattr(value, kind)
    return None  # null_value, or unset


def _struct_in(message: Any, name: str) -> dict[str, Any]:
    """{name: dict} when the Struct field is set and not empty, else {} (the schema default)."""
    if not message.HasField(name):
        return {}
    fields = getattr(message, name).fields
    return {name: {k: plain(v) for k, v in fields.items()}} if fields else {}


def _struct(data: dict[str, Any] | None) -> Struct:
    out = Struct()
    if data:
        out.update(data)
    return out


def _opt(message: Any, name: str) -> dict[str, Any]:
    return {name: getattr(message, name)} if message.HasField(name) else {}


def _model(ref: Any) -> pb.ModelRef:
    return pb.ModelRef(
        name=ref.name, pretrained=ref.pretrained or "", weights_sha256=ref.weights_sha256
    )


def create_in(m: pb.CreateGalleryRequest) -> dict[str, Any]:
    return {
        "gallery": m.gallery,
        **_opt(m, "profile"),
        **_opt(m, "backend"),
        **_struct_in(m, "params"),
    }


def upsert_in(m: pb.UpsertItemsRequest) -> dict[str, Any]:
    items = [{"id": i.id, "image": i.image, **_struct_in(i, "metadata")} for i in m.items]
    return {"gallery": m.gallery, "items": items, **_opt(m, "profile")}


def delete_in(m: pb.DeleteItemsRequest) -> dict[str, Any]:
    return {"gallery": m.gallery, "ids": list(m.ids)}


def name_in(m: Any) -> dict[str, Any]:
    return {"gallery": m.gallery}


def search_in(m: pb.SearchGalleryRequest) -> dict[str, Any]:
    out: dict[str, Any] = {"gallery": m.gallery}
    query = m.WhichOneof("query")
    if query is not None:
        out[query] = getattr(m, query)
    return {**out, **_opt(m, "k"), **_opt(m, "ef"), **_opt(m, "profile"), **_struct_in(m, "filter")}


def info_out(r: g.GalleryInfo) -> pb.GalleryInfoResponse:
    message = pb.GalleryInfoResponse(
        gallery=r.gallery,
        backend=r.backend,
        profile=r.profile,
        profile_sha256=r.profile_sha256,
        model=_model(r.model),
        params=_struct(r.params),
        count=r.count,
        created_at=r.created_at,
        details=_struct(r.details),
    )
    if r.last_write_at is not None:
        message.last_write_at = r.last_write_at
    return message


def list_out(r: g.GalleryListResponse) -> pb.ListGalleriesResponse:
    return pb.ListGalleriesResponse(galleries=[info_out(i) for i in r.galleries])


def write_out(r: g.GalleryWriteResponse) -> pb.GalleryWriteResponse:
    return pb.GalleryWriteResponse(gallery=r.gallery, changed=r.changed, count=r.count)


def drop_out(r: g.GalleryDropResponse) -> pb.DropGalleryResponse:
    return pb.DropGalleryResponse(gallery=r.gallery, dropped=r.dropped)


def search_out(r: g.GallerySearchResponse) -> pb.SearchGalleryResponse:
    return pb.SearchGalleryResponse(
        gallery=r.gallery,
        backend=r.backend,
        profile=r.profile,
        model=_model(r.model),
        query=r.query,
        hits=[
            pb.SearchGalleryHit(id=h.id, score=h.score, metadata=_struct(h.metadata))
            for h in r.hits
        ],
    )


def gallery_methods(core: Any) -> dict[str, tuple[str, Any, Any, Any, Any, Any]]:
    """method: (endpoint, request class, to dict, schema, call, to proto), as Servicer uses."""
    return {
        "CreateGallery": (
            "galleries_create",
            pb.CreateGalleryRequest,
            create_in,
            g.GalleryCreateRequest,
            lambda r: core.live.create(r),
            info_out,
        ),
        "UpsertItems": (
            "galleries_upsert",
            pb.UpsertItemsRequest,
            upsert_in,
            g.GalleryUpsertRequest,
            lambda r: core.live.upsert(r),
            write_out,
        ),
        "DeleteItems": (
            "galleries_delete",
            pb.DeleteItemsRequest,
            delete_in,
            g.GalleryDeleteRequest,
            lambda r: core.live.delete(r),
            write_out,
        ),
        "DropGallery": (
            "galleries_drop",
            pb.DropGalleryRequest,
            name_in,
            g.GalleryNameRequest,
            lambda r: core.live.drop(r),
            drop_out,
        ),
        "GalleryInfo": (
            "galleries_info",
            pb.GalleryInfoRequest,
            name_in,
            g.GalleryNameRequest,
            lambda r: core.live.info(r),
            info_out,
        ),
        "ListGalleries": (
            "galleries_list",
            pb.ListGalleriesRequest,
            lambda m: {},
            g.GalleryListRequest,
            lambda r: core.live.list(r),
            list_out,
        ),
        "SearchGallery": (
            "galleries_search",
            pb.SearchGalleryRequest,
            search_in,
            g.GallerySearchRequest,
            lambda r: core.live.search(r),
            search_out,
        ),
    }
