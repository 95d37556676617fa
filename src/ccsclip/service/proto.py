"""Proto <-> schema conversions of every RPC, in one place (each endpoint of endpoints.py names
its pair; the servicer in grpc_server.py runs them).

`<endpoint>_in` turns a request message into the dict its pydantic schema validates (proto3
`optional` fields left unset are left out, so the schema's default applies); `<endpoint>_out`
turns the response model into its message. Metadata, filters and params are
`google.protobuf.Struct`s, read with `plain` rather than json_format (which raises on NaN and
±Infinity before any validation could name the field); an integral number arrives as an integer,
so `{"n": 3}` means the same over both transports.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.struct_pb2 import Struct, Value

from ccsclip.service import gallery_schemas as g
from ccsclip.service import schemas as s
from ccsclip.v1 import ccsclip_pb2 as pb


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


def _present(model: Any) -> dict[str, Any]:
    """A response model's fields without its Nones: proto3 `optional` fields stay unset."""
    return {k: v for k, v in model.model_dump().items() if v is not None}


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
            maxskew=[pb.MaxSkew(**_present(m)) for m in p.maxskew],
            last_success_at=p.last_success_at or 0.0,
            source=p.source or "",
        )
        if p.accuracy is not None:
            message.accuracy = p.accuracy
        if p.chance is not None:
            message.chance = p.chance
        if p.canary is not None:
            message.canary.CopyFrom(pb.CanaryDrift(**_present(p.canary)))
        results.append(message)
    reply = pb.GetProbeResultsResponse(results=results, interval_s=r.interval_s, runs=r.runs)
    if r.budget is not None:
        reply.budget.CopyFrom(pb.ProbeBudget(**_present(r.budget)))
    return reply


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


def create_in(m: pb.CreateGalleryRequest) -> dict[str, Any]:
    return {
        "gallery": m.gallery,
        **_opt(m, "profile"),
        **_opt(m, "backend"),
        **_struct_in(m, "params"),
        **({"bias_attributes": list(m.bias_attributes)} if m.bias_attributes else {}),
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
        bias_attributes=r.bias_attributes,
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


def empty_in(m: Any) -> dict[str, Any]:
    """A request message without fields (ListProfiles, GetProbeResults, ListGalleries)."""
    return {}
