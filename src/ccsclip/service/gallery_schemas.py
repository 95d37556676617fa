"""Request and response models of the gallery API (`/v1/galleries/*`, the gallery RPCs).

Shared by both transports like `schemas.py`: strict requests whose errors name the field
(`items[2].id`, `filter.colour`, `k`). Gallery names are checked against a strict pattern (no
'/', '.', spaces) and only ever looked up in the configured store, never used as a path.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ccsclip.engine.galleries.base import (
    KEY_PATTERN,
    MAX_FILTER_VALUES,
    MAX_ID_CHARS,
    MAX_METADATA_KEYS,
    MAX_STRING_CHARS,
    check_filter,
    check_id,
    check_metadata,
)
from ccsclip.engine.galleries.hnsw import HnswParams
from ccsclip.engine.galleries.milvus import MilvusParams
from ccsclip.errors import InvalidInputError
from ccsclip.service.schemas import (
    ONE_QUERY,
    TOO_LARGE,
    GalleryName,
    ImageData,
    JsonInt,
    K,
    ModelRef,
    ProfileName,
    RequestModel,
    ResponseModel,
    Stated,
    Text,
    count_limit,
    integral,
)
from ccsclip.service.settings import ServiceSettings, get_settings

BackendName = Literal["exact", "hnsw", "milvus"]


def _checked(check: Any) -> Any:
    """A base.check_* function as a pydantic validator (its message names the key)."""

    def run(value: Any) -> Any:
        try:
            return check(value, "value")
        except InvalidInputError as exc:
            message = str(exc).removeprefix("value: ").removeprefix("value.")
            raise PydanticCustomError("invalid", "{message}", {"message": message}) from None

    return run


def _ef_limit(value: int) -> int:
    limit = get_settings().gallery_max_ef
    if value > limit:
        raise PydanticCustomError(
            TOO_LARGE,
            "{value} is above the limit {limit} (CCSCLIP_GALLERY_MAX_EF)",
            {"value": value, "limit": limit},
        )
    return value


def _ids_limit(value: Any) -> Any:
    limit = get_settings().gallery_max_ids
    if isinstance(value, list) and len(value) > limit:
        raise PydanticCustomError(
            TOO_LARGE,
            "ids has {count} entries; the limit is {limit} (CCSCLIP_GALLERY_MAX_IDS)",
            {"count": len(value), "limit": limit},
        )
    return value


# what base.check_id, check_metadata and check_filter accept, as a schema states it
_SCALAR: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "maxLength": MAX_STRING_CHARS},
        {"type": "integer", "minimum": -(2**63) + 1, "maximum": 2**63 - 1},
        {"type": "number"},
        {"type": "boolean"},
    ]
}
_KEYS = {"propertyNames": {"pattern": KEY_PATTERN}}
ItemId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_ID_CHARS),
    AfterValidator(_checked(check_id)),
    Stated({"pattern": "^[^\\x00-\\x1f\\x7f]*$"}),  # no control characters
]
MetadataIn = Annotated[
    dict[str, Any] | None,
    AfterValidator(_checked(check_metadata)),
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "object",
                    **_KEYS,
                    "maxProperties": MAX_METADATA_KEYS,
                    "additionalProperties": _SCALAR,
                },
                {"type": "null"},
            ],
            "description": "flat metadata: identifier keys, string, number or boolean values",
        }
    ),
]
FilterIn = Annotated[
    dict[str, Any] | None,
    AfterValidator(_checked(check_filter)),
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "object",
                    **_KEYS,
                    "additionalProperties": {
                        "anyOf": [
                            _SCALAR,
                            {
                                "type": "array",
                                "items": _SCALAR,
                                "minItems": 1,
                                "maxItems": MAX_FILTER_VALUES,
                            },
                        ]
                    },
                },
                {"type": "null"},
            ],
            "description": '{"key": value} or {"key": [values]}, keys ANDed',
        }
    ),
]
Ef = Annotated[
    int,
    Field(ge=1),
    BeforeValidator(integral),
    AfterValidator(_ef_limit),
    Stated(lambda: {"maximum": get_settings().gallery_max_ef}),
]


def _unique_ids(ids: list[str], what: str) -> None:
    repeated = sorted(i for i, n in Counter(ids).items() if n > 1)
    if repeated:
        raise PydanticCustomError(
            "duplicate",
            "{what} must be unique within a request; repeated: {repeated}",
            {"what": what, "repeated": repeated[:5]},
        )


# --------------------------------------------------------------------------- requests


BiasAttributes = Annotated[
    list[Annotated[str, StringConstraints(pattern=KEY_PATTERN)]] | None,
    Field(max_length=8),
]


def creatable_backends(settings: ServiceSettings) -> list[str]:
    """The backends a server can create galleries with: exact and hnsw in the gallery root
    (CCSCLIP_GALLERY_ROOT), milvus with a Milvus server (CCSCLIP_MILVUS_URI)."""
    local = ["exact", "hnsw"] if settings.gallery_root else []
    return local + (["milvus"] if settings.milvus_uri else [])


def _backend_params(schema: dict[str, Any]) -> None:
    """The backends this server can create and the `params` each takes (store.check_params), as
    the schema states them: exact takes none."""
    backends = creatable_backends(get_settings())
    if not backends:  # no create route is served (openapi.py leaves it out): nothing to narrow,
        return  # and BentoML's own schema walk (`bentoml build`) fails on an empty anyOf
    schema["properties"]["backend"]["enum"] = backends

    def branch(backend: str, params: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "properties": {
                "backend": {"const": backend},
                "params": {"anyOf": [params, {"type": "null"}]},
            }
        }
        if backend != "hnsw":  # the default: a request without `backend` is an hnsw one
            out["required"] = ["backend"]
        return out

    def params_of(model: type) -> dict[str, Any]:
        found = model.model_json_schema()
        return {"type": "object", "properties": found["properties"], "additionalProperties": False}

    branches = {
        "exact": lambda: branch("exact", {"type": "object", "maxProperties": 0}),
        "hnsw": lambda: branch("hnsw", params_of(HnswParams)),
        "milvus": lambda: branch("milvus", params_of(MilvusParams)),
    }
    schema["anyOf"] = [branches[name]() for name in backends]
    if "hnsw" not in backends:  # the default backend: `backend` must be named
        schema["required"] = [*schema.get("required", []), "backend"]


class GalleryCreateRequest(RequestModel):
    model_config = ConfigDict(json_schema_extra=_backend_params)

    gallery: GalleryName
    profile: ProfileName | None = None  # the image tower its items are embedded with
    backend: BackendName = "hnsw"
    # hnsw/milvus: connectivity, ef_construction, ef_search; hnsw also dtype ("f32" | "f16")
    params: dict[str, JsonInt | str] | None = None
    # metadata keys whose distribution in search results is measured (live_bias.py)
    bias_attributes: BiasAttributes = None


class GalleryItem(RequestModel):
    id: ItemId
    image: ImageData
    metadata: MetadataIn = None


class GalleryUpsertRequest(RequestModel):
    gallery: GalleryName
    items: Annotated[
        list[GalleryItem],
        BeforeValidator(count_limit),
        Field(min_length=1, description="item ids must be unique within a request"),
        Stated({"uniqueItems": True}),  # what a schema can say of it: no item twice
        Stated(lambda: {"maxItems": get_settings().max_images_per_request}),
    ]
    profile: ProfileName | None = None  # if given, must be the gallery's profile

    @field_validator("items")
    @classmethod
    def _unique(cls, items: list[GalleryItem]) -> list[GalleryItem]:
        _unique_ids([item.id for item in items], "item ids")
        return items


class GalleryDeleteRequest(RequestModel):
    gallery: GalleryName
    ids: Annotated[
        list[ItemId],
        BeforeValidator(_ids_limit),
        Field(min_length=1),
        Stated(lambda: {"maxItems": get_settings().gallery_max_ids}),
    ]


class GalleryNameRequest(RequestModel):
    """For info and drop."""

    gallery: GalleryName


class GalleryListRequest(RequestModel):
    """No fields."""


class GallerySearchRequest(RequestModel):
    model_config = ConfigDict(json_schema_extra=ONE_QUERY)

    gallery: GalleryName
    text: Text | None = None
    image: ImageData | None = None
    k: K = 10
    filter: FilterIn = None  # {"key": value} or {"key": [values]}, keys ANDed
    ef: Ef | None = None  # search effort (hnsw, milvus); unset: the gallery's ef_search
    profile: ProfileName | None = None  # image queries: must be the gallery's profile

    @model_validator(mode="after")
    def _one_query(self) -> GallerySearchRequest:
        if (self.text is None) == (self.image is None):
            raise PydanticCustomError("query", "give exactly one of 'text' and 'image'")
        return self


# --------------------------------------------------------------------------- responses


class GalleryInfo(ResponseModel):
    gallery: str
    backend: BackendName
    profile: str
    profile_sha256: str
    model: ModelRef
    params: dict[str, Any]
    count: int
    created_at: float
    last_write_at: float | None = None  # unix time of the last write (None: never written)
    details: dict[str, Any] = Field(default_factory=dict)  # backend facts (memory, uri)
    bias_attributes: list[str] = Field(default_factory=list)  # declared at create (live bias)


class GalleryListResponse(ResponseModel):
    galleries: list[GalleryInfo]


class GalleryWriteResponse(ResponseModel):
    gallery: str
    changed: int  # items upserted, or removed by a delete
    count: int  # items in the gallery after the write


class GalleryDropResponse(ResponseModel):
    gallery: str
    dropped: bool


class GallerySearchHit(ResponseModel):
    id: str
    score: float  # cosine similarity
    metadata: dict[str, Any] = Field(default_factory=dict)


class GallerySearchResponse(ResponseModel):
    gallery: str
    backend: str
    profile: str
    model: ModelRef
    query: Literal["text", "image"]
    hits: list[GallerySearchHit]  # best first
